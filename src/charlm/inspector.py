"""Look inside a trained LSTM: ``charlm inspect``.

For a short text the report shows, per character, how surprised the model was (bits) and
what it expected next (top 5), and for one layer the input, forget and output gates and
the cell state of a handful of units, as heatmaps over the text.  The gate activations
come from :class:`charlm.cells.ScratchLSTM` loaded with the checkpoint's weights: the
same parameters as ``nn.LSTM``, with every gate kept.  A few units are found
automatically by correlating their activations with things a reader can see (the
position in the line, line breaks, repeated lines), each held against what the units
of an untrained model of the same shape reach on the same text; and each unit's
forget gate gives how long its cell keeps what it holds.

The HTML page is one self-contained file (inline CSS, JS and data; no network), the PNG
a static version of the same heatmaps.  Both are written atomically.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import json
import math
import sys
import unicodedata
import warnings
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .cells import GATE_NAMES, ScratchLSTM
from .checkpoint import write_atomic
from .errors import CharlmError
from .vocab import UNK

MAX_CHARS = 2000  # longer texts make heatmaps nobody can read, and pages that load slowly
MAX_UNITS = 64
DEFAULT_UNITS = 16
TOP_K = 5
MIN_CHARS_FOR_UNITS = 20  # fewer characters make correlations meaningless
FOLLOWS = 0.4  # |r| from which a unit is said to follow a feature (if no unit of the untrained model does as well)
COPY_SOURCE = 0.1  # the share of the strongest key from which the page names the character it points at
IN_CONTEXT = -2  # Report.copy_from: the strongest key points into the context read first (-1: at nothing in particular)
MAX_CONTEXT = 2000  # characters of --context; the copy attention's shares grow with the square of all characters read
UNTRAINED_SEED = 0  # the untrained model the findings are held against: charlm's initialisation, this seed
PNG_COLS = 60
PNG_MAX_CHARS = 240
HTML_COLS = 60
# (key in the ScratchLSTM gate dict, label); the heatmaps, in this order
SHOWN = (("input", "input gate"), ("forget", "forget gate"), ("output", "output gate"), ("cell", "cell state"))
# every quantity of a step, as the page's hover shows them (the heatmaps draw SHOWN)
LABELS = {**dict(SHOWN), "candidate": "candidate", "hidden": "hidden state"}
CJK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans CJK TC", "Noto Sans CJK JP", "Source Han Sans SC", "Source Han Sans CN",
                "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "Droid Sans Fallback", "Noto Serif CJK SC", "AR PL UMing CN",
                "SimHei", "Microsoft YaHei", "PingFang SC", "Hiragino Sans GB", "Heiti SC", "Arial Unicode MS")
CJK_FILE_HINTS = ("notosanscjk", "notoserifcjk", "sourcehan", "wqy", "droidsansfallback", "uming", "ukai", "simhei", "msyh", "pingfang")


@dataclass
class FoundUnit:
    """A unit whose activation follows a visible feature of the text."""

    feature: str
    description: str
    unit: int
    quantity: str  # a key of SHOWN
    r: float
    untrained: float  # the largest |r| with the same feature among the units of an untrained model of the same shape


@dataclass
class Report:
    """Everything the HTML page and the PNG show."""

    checkpoint: str
    model: str
    layer: int
    num_layers: int
    hidden_size: int
    vocab_size: int
    raw: str  # the text as given, line endings normalised
    read_as: list[str | None]  # per character of raw: the token the model read, or None (skipped)
    positions: list[int]  # index into raw of each character read
    bits: np.ndarray  # (n,) surprisal of each character read; nan for the first
    rank: np.ndarray  # (n,) each character's place among the model's guesses before it (1: its first guess); 0 for the first
    top: list[list[tuple[str, float]]]  # (n,) the TOP_K most likely next characters after each
    acts: dict[str, np.ndarray]  # cells.GATE_NAMES' quantity -> (n, hidden)
    units: list[int]
    found: list[FoundUnit]
    notes: list[str] = field(default_factory=list)
    unit_notes: list[str] = field(default_factory=list)
    # with a copy attention, per character read (as bits): the LSTM's own surprisal, the share of the probability the
    # attention gave to copying, and the earlier character its strongest key pointed at (-1: none, or a key under
    # COPY_SOURCE: attention spread thin points nowhere in particular); else None
    lstm_bits: np.ndarray | None = None
    copied: np.ndarray | None = None
    copy_from: np.ndarray | None = None
    # with a context read first and not shown (inspect --context): how many of its characters the model read, what it
    # expected after them (for the first character shown), and the shown layer's cell state then (hidden,); else 0, None
    context_read: int = 0
    top_before: list[tuple[str, float]] | None = None
    cell_before: np.ndarray | None = None
    features: dict[str, tuple[str, np.ndarray]] = field(default_factory=dict)  # line_features over the characters shown
    # per unit, the share of its cell an untrained model of the same shape keeps per character over the same text (the
    # bar for memory_text: charlm's initialisation starts every forget gate near 0.5); None for a text too short for units
    untrained_kept: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.positions)

    def expected(self, k: int) -> list[tuple[str, float]] | None:
        """What the model expected in the place of the k-th character shown (None for the first of a text read from the
        zero state: nothing came before it)."""
        return self.top[k - 1] if k else self.top_before

    @property
    def mean_bits(self) -> float:
        b = self.bits[~np.isnan(self.bits)]
        return float(b.mean()) if b.size else float("nan")

    @property
    def mean_text(self) -> str:
        """The mean surprisal as the report writes it (a one-character text has none: nothing comes before it)."""
        return "no surprisal (one character: nothing before it)" if math.isnan(self.mean_bits) else f"mean surprisal {self.mean_bits:.2f} bits/char"

    @property
    def size_text(self) -> str:
        """The characters read, and those skipped beside them (eval's count: read = scored + skipped, as they differ)."""
        skipped = sum(t is None for t in self.read_as)
        return f"{_n_chars(self.n)} read" + (f", {skipped:,} skipped" if skipped else "")

    @property
    def copy_text(self) -> str:
        """What the copy attention did over the text, in words ('' without one)."""
        if self.copied is None or np.isnan(self.copied).all():
            return ""
        lstm = self.lstm_bits[~np.isnan(self.lstm_bits)].mean()
        return (f"the copy attention gave {np.nanmean(self.copied):.0%} of the probability to copying, on average; the LSTM alone "
                f"would have spent {lstm:.2f} bits/char against the whole model's {self.mean_bits:.2f}")

    @functools.cached_property
    def gates_text(self) -> str:
        """The layer's gates on average (over its units) at the line breaks read and at the other characters, in words;
        '' for a text without both."""
        at = self.features.get("line_break", ("", np.zeros(0)))[1] > 0.5
        if len(at) != self.n or not 0 < at.sum() < len(at):
            return ""
        means = ", ".join(f"{q} {self.acts[q][at].mean():.2f} against {self.acts[q][~at].mean():.2f}" for q in ("input", "forget", "output"))
        return f"each gate's mean over the layer's units, reading a line break against reading any other character: {means}"

    @functools.cached_property
    def memory(self) -> tuple[np.ndarray, np.ndarray]:
        """Per unit of the layer: the share of its cell kept per character, and the characters until half is gone."""
        return memory(self.acts["forget"])

    @property
    def memory_text(self) -> str:
        """How long the layer's cells keep what they hold, in words (the median unit and the longest-keeping one)."""
        kept, half = self.memory
        u = int(np.argmax(kept))
        return (f"the median unit keeps {np.median(kept):.2f} of its cell per character (half of it is gone after "
                f"{_chars(float(np.median(half)), self.n)}); the longest-keeping, unit {u}, keeps {kept[u]:.2f} ({_chars(float(half[u]), self.n)}"
                + ("" if u in self.units else f"; not among the units shown: --units {u} shows it") + ")"
                + ("" if self.untrained_kept is None else f"; an untrained model of this shape keeps {np.median(self.untrained_kept):.2f} "
                   f"(median unit) and at most {self.untrained_kept.max():.2f} on this text"))


def r_digits(fu: FoundUnit) -> int:
    """Decimals to write a unit's r and the untrained bar with: 2, or as many as tell them apart (r = -0.71 beside a bar
    of 0.71 read as no better than it)."""
    return next((d for d in (2, 3, 4) if f"{abs(fu.r):.{d}f}" != f"{fu.untrained:.{d}f}"), 5)


def found_line(fu: FoundUnit) -> str:
    """A unit found, as ``charlm inspect`` prints it (r < 0, "in reverse": low where the feature is high, as a gate that
    closes at a line break)."""
    d = r_digits(fu)
    return (f"unit {fu.unit} ({dict(SHOWN)[fu.quantity]}) follows {fu.description}"
            f"{', in reverse (low where that is high)' if fu.r < 0 else ''}: r = {fu.r:+.{d}f} (untrained model's best: |r| = {fu.untrained:.{d}f})")


def memory(forget: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per unit, from its forget gate over the text (n, hidden): the share of the cell kept per character (the geometric
    mean of f, as what is left after t characters with nothing written is f_1 * ... * f_t), and the characters after
    which half is left (ln 2 / -mean ln f; inf for a gate saturated at 1)."""
    if not len(forget):
        return np.ones(forget.shape[1]), np.full(forget.shape[1], np.inf)
    log_kept = np.log(np.clip(forget.astype(np.float64), 1e-30, 1.0)).mean(axis=0)
    with np.errstate(divide="ignore"):
        return np.exp(log_kept), np.where(log_kept < 0, math.log(2) / -log_kept, np.inf)


def _n_chars(n: int) -> str:
    return f"{n:,} character{'s' if n != 1 else ''}"


def _chars(x: float, n: int) -> str:
    """A half-life in words; one longer than the ``n`` characters it was measured on says it is extrapolated."""
    if math.isinf(x):
        return "never (f = 1)"
    return f"{x:.1f} character{'' if f'{x:.1f}' == '1.0' else 's'}" + (f", beyond the {n:,} of this text: extrapolated" if x > n else "")


# --- reading the input -------------------------------------------------------------


def read_input(text: str | None, file: str | None, encoding: str | None = None, trained: str = "utf-8") -> str:
    """The text to inspect, from ``--text`` (where ``\\n`` stands for a line break) or ``--file`` (in ``encoding``; else
    UTF-8, or where it is not, ``trained``, the model's training text's)."""
    if (text is None) == (not file):
        raise CharlmError("give the text to inspect with exactly one of --text or --file")
    return _read(text, file, encoding, "--text", trained)  # its length is analyse()'s to check


def read_context(text: str | None, file: str | None, encoding: str | None = None, trained: str = "utf-8") -> str:
    """The context read before the text and not shown, from ``--context`` or ``--context-file`` ('' without either)."""
    if text is not None and file:
        raise CharlmError("give the context with one of --context or --context-file, not both")
    if text is None and not file:
        return ""
    raw = _read(text, file, encoding, "--context", trained)
    if not raw:
        raise CharlmError(f"the context ({'--context' if text is not None else '--context-file ' + file}) is empty: leave it out to start from the zero state")
    return raw


def _read(text: str | None, file: str | None, encoding: str | None, flag: str, trained: str) -> str:
    from .data import read_scored, typed_line_breaks

    return typed_line_breaks(text, flag) if text is not None else read_scored(file, encoding, trained)


def _lines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def parse_units(spec: str | None, hidden_size: int) -> list[int] | None:
    """``"0,5,7"`` -> [0, 5, 7], checked against the layer's width; None for the automatic choice."""
    if spec is None:
        return None
    units = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            u = int(part)
        except ValueError:
            raise CharlmError(f"--units takes unit numbers separated by commas, like 0,5,7; got {spec!r}") from None
        units.append(u)
    if not units:
        raise CharlmError(f"--units names no unit: give unit numbers separated by commas, like 0,5,7 (got {spec!r})")
    return check_units(units, hidden_size)


def check_units(units, hidden_size: int) -> list[int]:
    """``units`` (unit numbers of a layer) without repeats, each checked against the layer's width; else a CharlmError."""
    given = units
    units = list(units) if not isinstance(units, (str, bytes)) and hasattr(units, "__iter__") else None
    if units is None or not all(isinstance(u, (int, np.integer)) and not isinstance(u, bool) for u in units):
        raise CharlmError(f"units must be unit numbers, like [0, 5, 7] (parse_units reads \"0,5,7\"); got {given!r}")
    units = list(dict.fromkeys(int(u) for u in units))
    for u in units:
        if not 0 <= u < hidden_size:
            raise CharlmError(f"unit {u} does not exist: the layer has units 0 to {hidden_size - 1}")
    if not units:
        raise CharlmError("no unit to show: give unit numbers, or none for the automatic choice")
    if len(units) > MAX_UNITS:
        raise CharlmError(f"{len(units)} units asked for; at most {MAX_UNITS} fit in a readable heatmap")
    return units


# --- running the model ---------------------------------------------------------------


@torch.no_grad()
def run_scratch(model, ids: torch.Tensor) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]], dict[str, torch.Tensor] | None]:
    """Logits (n, vocab) after each of ``ids`` (n,), every layer's gates (each (n, hidden)), and with a copy attention
    what it did after each character: ``lstm`` the LSTM's own logits (n, vocab), ``sentinel`` the LSTM's share g (n,),
    ``keys`` each earlier character's share (n, n - 1; column m: the key left after character m, pointing at m + 1).
    The gates are :func:`lstm_gates`'."""
    y, gates = lstm_gates(model, ids)
    logits = model.decoder(y)
    copy = None
    if model.copy is not None:  # the copy attention's mixture, from an empty memory as the model itself would start
        memory = model.split_state(model.init_state(1, ids.device))[1]
        share = model.copy.shares(y, ids[None], memory)[0][0]  # (n, 1 + window + n - 1): the sentinel, the memory, the text
        copy = {"lstm": logits[0], "sentinel": share[:, 0], "keys": share[:, 1 + model.copy.window :]}
        logits, _ = model.copy(logits, y, ids[None], memory)
    return logits[0], gates, copy


@torch.no_grad()
def lstm_gates(model, ids: torch.Tensor) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """The LSTM's output (1, n, hidden) over ``ids`` (n,), and every layer's gates (each (n, hidden)).

    The model's LSTM weights are copied into a :class:`ScratchLSTM`, which has the same
    parameter names as ``nn.LSTM``, computes the same outputs and keeps every gate.  (It is
    also faster than ``nn.LSTM`` on the CPU for one long sequence of batch 1.)
    """
    cfg = model.cfg
    with torch.random.fork_rng(devices=[]):  # its initial weights, replaced at once, leave the caller's random stream alone
        scratch = ScratchLSTM(model.embedding.weight.shape[1], cfg.hidden_size, cfg.num_layers)
    scratch.load_state_dict(model.rnn.state_dict())
    x = model.embedding(ids[None]).float()  # (1, n, width); eval mode: no dropout
    y, _, gates = scratch.to(x.device).eval()(x, return_gates=True)  # (1, n, hidden)
    return y, [{name: v[0] for name, v in layer.items()} for layer in gates]


def predictions(logits: torch.Tensor, ids: torch.Tensor, vocab, k: int = TOP_K) -> tuple[np.ndarray, np.ndarray, list[list[tuple[str, float]]]]:
    """Surprisal in bits of each character given the ones before (nan for the first), its rank among the model's
    guesses there (1: the most likely; 0 for the first), and the top k after each."""
    logp = F.log_softmax(logits.float(), dim=-1).cpu()  # (n, vocab)
    ids = ids.cpu()
    bits = torch.full((ids.numel(),), float("nan"))
    rank = torch.zeros(ids.numel(), dtype=torch.long)
    if ids.numel() > 1:
        actual = logp[:-1].gather(1, ids[1:, None])  # (n-1, 1)
        bits[1:] = -actual[:, 0] / math.log(2)
        rank[1:] = 1 + (logp[:-1] > actual).sum(dim=1)
    p, idx = logp.exp().topk(min(k, logp.shape[1]), dim=-1)
    top = [[(vocab.itos[j], float(q)) for j, q in zip(row_i.tolist(), row_p.tolist())] for row_i, row_p in zip(idx, p)]
    return bits.numpy(), rank.numpy(), top


# --- finding units ------------------------------------------------------------------------


def line_features(raw: str, positions: list[int], newlines: str = "keep", start: int = 0) -> dict[str, tuple[str, np.ndarray]]:
    """Things a reader sees at each character read: name -> (description, values (n - start,)), for the characters read
    from the ``start``-th on (those before it are a context read first and not shown: a line it began goes on, and a line
    it held is a repeat).

    Over the characters read only: one skipped (outside the vocabulary) is not part of any line,
    so the character before it can still be the last of its line.  The last, ``read_so_far``,
    is how far into the text a character is (left out when the characters shown lie in one line, where it is the
    position in the line up to a constant): a unit still drifting from the zero start state
    follows it, and any feature that grows along the text (as "repeated" does when the repeats
    come last) along with it.
    """
    raw = "".join(raw[p] for p in positions)
    positions = list(range(len(raw)))
    starts, lines, line_of = [], raw.split("\n"), []
    s = 0
    for i, line in enumerate(lines):
        starts.append(s)
        line_of += [i] * (len(line) + 1)  # the line break belongs to the line it ends
        s += len(line) + 1
    seen, repeated = set(), []
    for line in lines:
        key = line.strip()
        repeated.append(len(key) >= 2 and key in seen)
        seen.add(key)
    pos = np.array(positions[start:])
    ln = np.array([line_of[p] for p in pos], dtype=int)
    is_break = np.array([raw[p] == "\n" for p in pos], dtype=float)
    last = np.array([raw[p] != "\n" and p + 1 < len(raw) and raw[p + 1] == "\n" for p in pos], dtype=float)
    position = (pos - np.array(starts)[ln]).astype(float)
    features = {
        "position": ("position within the line (characters since it began)", position),
        "line_break": ("reading a line break" + (" (which this model reads as a space)" if newlines == "space" else ""), is_break),
        "line_end": ("the last character of a line (a line break comes next)", last),
        "repeated": ("inside a line that already appeared above (a repeated line or chorus)", np.array([repeated[i] for i in ln], dtype=float)),
    }
    if len(set((pos - position).tolist())) > 1:  # in one line the position in it is how far into the text: one feature, not two
        features["read_so_far"] = (("how far into the text shown (characters read after the context)" if start else
                                    "how far into the text (characters read so far: drift from the zero start state)"), pos.astype(float))
    return features


def correlations(acts: np.ndarray, feature: np.ndarray) -> np.ndarray:
    """Pearson correlation of each column of ``acts`` (n, H) with ``feature`` (n,); 0 where a unit is constant."""
    a = acts - acts.mean(axis=0)
    f = feature - feature.mean()
    denom = np.sqrt((a * a).sum(axis=0) * (f * f).sum())
    return np.where(denom > 1e-12, (a * f[:, None]).sum(axis=0) / np.maximum(denom, 1e-12), 0.0)


def _candidates(acts: dict[str, np.ndarray], f: np.ndarray, drift: dict[str, np.ndarray] | None) -> list[tuple[float, float, str, int]]:
    """(|r|, r, quantity, unit) of every shown quantity of every unit with the feature ``f``, largest |r| first; with
    ``drift`` (each quantity's |r| with how far into the text), leaving out the units that follow that at least as closely."""
    out = []
    for q, _ in SHOWN:
        rs = correlations(acts[q], f)
        out += [(abs(r), r, q, u) for u, r in enumerate(rs) if drift is None or drift[q][u] < abs(r)]
    return sorted(out, reverse=True)


def find_units(acts: dict[str, np.ndarray], features: dict[str, tuple[str, np.ndarray]], untrained: dict[str, np.ndarray] | None = None,
               per_feature: int = 2) -> tuple[list[FoundUnit], list[str]]:
    """Up to ``per_feature`` units per feature with |r| >= FOLLOWS and above the largest |r| any unit of ``untrained``
    (the same layer of an untrained model, on the same text) reaches, and a note for each feature that has none.

    A gate sees the character just read, so even an untrained unit can follow "reading a line break";
    only what goes beyond that is the training's.  A unit that follows ``read_so_far`` (drift from the
    zero start) at least as closely as another feature does not count for that feature.
    """
    n = next(iter(acts.values())).shape[0]
    if n < MIN_CHARS_FOR_UNITS:
        return [], [f"the text is too short to look for units (it has {_n_chars(n)}; give at least {MIN_CHARS_FOR_UNITS})"]
    found, notes = [], []
    drift = None  # each quantity's |r| with how far into the text, for the features that are not that
    if "read_so_far" in features:
        drift = {q: np.abs(correlations(acts[q], features["read_so_far"][1])) for q, _ in SHOWN}
    for name, (desc, f) in features.items():
        binary = set(np.unique(f)) <= {0.0, 1.0}
        if f.std() == 0:
            notes.append(f"not looked for: {desc} (the same at every character of this text)")
            continue
        if binary and min(f.sum(), n - f.sum()) < 2:
            notes.append(f"not looked for: {desc} (too few such places in this text)")
            continue
        against = None if name == "read_so_far" else drift
        cands = _candidates(acts, f, against)
        base = _candidates(untrained, f, None)[0][0] if untrained is not None else 0.0  # the largest |r| of any untrained unit
        picked: list[int] = []
        for a, r, q, u in cands:
            if a < FOLLOWS or a <= base or len(picked) == per_feature:
                break
            if u not in picked:
                picked.append(u)
                found.append(FoundUnit(name, desc, u, q, float(r), base))
        if picked:
            continue
        if not cands:
            notes.append(f"no unit follows {desc} more closely than how far into the text it is")
            continue
        _, r, q, u = cands[0]
        best = f"best: unit {u}, {dict(SHOWN)[q]}, r = {r:+.2f}"
        if abs(r) >= FOLLOWS:  # as close as FOLLOWS asks, but no closer than an untrained model's
            notes.append(f"no unit follows {desc} more closely than a unit of an untrained model does ({best}; untrained: |r| = {base:.2f})")
        else:
            notes.append(f"no unit follows {desc} closely ({best})")
    return found, notes


def untrained_like(model):
    """A model of the same configuration as ``model``, as charlm initialises one (seed UNTRAINED_SEED), in eval mode;
    the global random streams are left as they were."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(UNTRAINED_SEED)
        return type(model)(model.cfg).to(model.decoder.weight.device).eval()


def default_units(acts: dict[str, np.ndarray], found: list[FoundUnit], k: int = DEFAULT_UNITS) -> list[int]:
    """The units found automatically, then the ones whose output (hidden state) varies most over the text."""
    units = list(dict.fromkeys(f.unit for f in found))[:k]
    for u in np.argsort(-acts["hidden"].var(axis=0), kind="stable"):
        if len(units) >= k:
            break
        if int(u) not in units:
            units.append(int(u))
    return units


def analyse(model, vocab, checkpoint: str, raw: str, layer: int | None = None, units: list[int] | None = None, newlines: str = "keep",
            context: str | None = "") -> Report:
    """Run the model over ``raw`` and gather what the report shows; with a ``context``, the model reads it first
    (from the zero state, as the text would have been), and only the text is shown.  ``units``: a list of unit
    numbers, or None for the automatic choice; ``newlines``: the checkpoint's (``keep`` or ``space``)."""
    from .data import normalize
    from .sampling import FORM_NOTE, check_fits, vocab_form

    cfg = model.cfg
    check_fits(model, vocab)
    if model.decoder.weight.dtype != torch.float32:  # (a model turned to float64 or bf16): its gates are read in float32
        model = deepcopy(model).float()
    if not isinstance(raw, str) or not isinstance(context or "", str):
        raise CharlmError(f"the text and the context must be strings; got {type(raw).__name__} and {type(context).__name__}")
    raw, context = _lines(raw), _lines(context or "")  # what analyse's positions index: \r\n would shorten it
    if not raw:
        raise CharlmError("the text to inspect is empty")
    if len(raw) > MAX_CHARS:
        raise CharlmError(f"the text has {len(raw):,} characters; inspect reads at most {MAX_CHARS:,} (heatmaps of more are unreadable)")
    if len(context) > MAX_CONTEXT:
        raise CharlmError(f"the context has {len(context):,} characters; inspect reads at most {MAX_CONTEXT:,} of it: give its last part")
    # (é typed as one code point, or as e + U+0301, in the form the vocabulary holds: as eval and generate read it)
    formed = vocab_form(vocab, raw), vocab_form(vocab, context)
    reformed, (raw, context) = formed != (raw, context), formed
    if newlines not in ("keep", "space"):
        raise ValueError(f"newlines must be 'keep' or 'space' (the checkpoint's train_config.newlines), got {newlines!r}")
    if not model.is_lstm:
        raise CharlmError(f"inspect shows LSTM gates; this checkpoint's cell is {cfg.cell} (train with --cell lstm or scratch)")
    if layer is None:
        layer = cfg.num_layers - 1
    if not 0 <= layer < cfg.num_layers:
        raise CharlmError(f"--layer {layer} does not exist: the model has layers 0 to {cfg.num_layers - 1}")
    if units is not None:
        units = check_units(units, cfg.hidden_size)
    whole = context + raw
    text = normalize(whole, newlines)  # what the model reads: same length as whole
    read_as = [ch if ch in vocab else (UNK if vocab.unk else None) for ch in text]
    positions = [i for i, t in enumerate(read_as) if t is not None]
    c = sum(p < len(context) for p in positions)  # characters of the context read
    if c == len(positions):
        raise CharlmError("no character of the text is in the model's vocabulary")
    if context and not c:  # the text would start from the zero state all the same
        raise CharlmError("no character of the context is in the model's vocabulary")
    notes = [FORM_NOTE] if reformed else []
    for part, what in ((range(len(context)), " of the context"), (range(len(context), len(whole)), " of the text" if context else "")):
        outside = [whole[i] for i in part if text[i] not in vocab]
        if outside:
            unknown, count = list(dict.fromkeys(outside)), len(outside)
            shown = " ".join(show_char(ch) for ch in unknown[:20]) + ("…" if len(unknown) > 20 else "")
            how = "read as <unk>" if vocab.unk else "skipped" + ("" if what == " of the context" else " (shown struck through)")
            notes.append(f"{_n_chars(count)}{what} outside the model's vocabulary {how}: {shown}")
    if newlines == "space" and "\n" in whole:
        notes.append("this model was trained with line breaks replaced by spaces, so it reads them as spaces")
    if context:
        notes.append(f"the model read {_n_chars(c)} of context first (not shown): the text starts from "
                     f"the state {'it' if c == 1 else 'they'} left, not from the zero state")
    ids = torch.tensor([vocab.stoi[read_as[p]] for p in positions], dtype=torch.long, device=model.decoder.weight.device)
    logits, gates, copy = run_scratch(model, ids)
    bits, rank, top = predictions(logits, ids, vocab)
    lstm_bits = copied = copy_from = None
    if copy is not None:  # character k is predicted after k - 1: its shares are row k - 1's
        lstm_bits = predictions(copy["lstm"], ids, vocab)[0][c:]
        copied = np.full(len(ids), np.nan)
        copied[1:] = 1 - copy["sentinel"][:-1].double().cpu().numpy()
        copied = copied[c:]
        copy_from = np.full(len(ids), -1)
        if len(ids) > 2:
            keys = copy["keys"][:-1].cpu()  # (n - 1, n - 1)
            share, m = keys.max(dim=1)
            src = m + 1 - c  # in the characters shown; below 0: in the context
            copy_from[1:] = torch.where(share < COPY_SOURCE, -1, torch.where(src < 0, IN_CONTEXT, src)).numpy()
        copy_from = copy_from[c:]
    acts = {name: v[c:].cpu().numpy() for name, v in gates[layer].items()}
    cell_before = gates[layer]["cell"][c - 1].cpu().numpy() if c else None
    features = line_features(whole, positions, newlines, start=c)
    untrained = None
    if len(positions) - c >= MIN_CHARS_FOR_UNITS:  # the bar the findings must pass: the same layer, untrained, same text
        untrained = {name: v[c:].cpu().numpy() for name, v in lstm_gates(untrained_like(model), ids)[1][layer].items()}
    found, unit_notes = find_units(acts, features, untrained)
    if units is None:
        units = default_units(acts, found)
    desc = f"{cfg.cell} {cfg.num_layers}×{cfg.hidden_size}, vocabulary {cfg.vocab_size:,}"
    if model.copy is not None:
        desc += f", copy attention over {cfg.copy_window:,} characters"
        notes.append(f"this model has a copy attention over the last {cfg.copy_window:,} characters read: the surprisal and the "
                     f"top-5 are the whole model's (the LSTM's prediction mixed with what the attention copies from earlier in "
                     f"the text, so a repeated line can be cheap without the LSTM's help); the gates and cell state are the LSTM's alone. "
                     f"Per character, the page gives the share copied, where from, and what the LSTM alone would have spent")
    return Report(checkpoint, desc, layer, cfg.num_layers, cfg.hidden_size, cfg.vocab_size, raw, read_as[len(context):],
                  [p - len(context) for p in positions[c:]], bits[c:], rank[c:], top[c:], acts, units, found, notes=notes,
                  unit_notes=unit_notes, lstm_bits=lstm_bits, copied=copied, copy_from=copy_from, context_read=c,
                  top_before=top[c - 1] if c else None, cell_before=cell_before, features=features,
                  untrained_kept=None if untrained is None else memory(untrained["forget"])[0])


# --- drawing --------------------------------------------------------------------------------------

VIRIDIS = ("#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725")
RDBU = ("#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7", "#fddbc7", "#f4a582", "#d6604d", "#b2182b")


def show_char(ch: str) -> str:
    """A character as it can be seen: line breaks, spaces (also the full-width one) and tabs get a visible sign; an accent
    alone sits on a dotted circle (◌́), and a character with no glyph of its own (a joiner, a variation selector, a
    control, another space) shows its code point."""
    if sign := {"\n": "↵", " ": "␣", "\u3000": "⬚", "\t": "⇥"}.get(ch):
        return sign
    kind, selector = unicodedata.category(ch), unicodedata.name(ch, "").startswith("VARIATION SELECTOR")
    if kind in ("Mn", "Me") and not selector:
        return "◌" + ch
    return f"⟨{ord(ch):04X}⟩" if kind[0] in "CZ" or selector else ch


def shown_values(report: Report, q: str) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """What a heatmap draws: (values (units, n), the scale of each unit, the colour range).

    Gates are drawn as they are, in [0, 1].  Cell states are not bounded (a few units reach
    several units or more), and those few would wash out all others on a shared scale, so each
    unit's row is divided by its own largest |c| and drawn in [-1, 1].
    """
    a = report.acts[q][:, report.units].T  # (units, n)
    if q != "cell":
        return a, np.ones(len(report.units)), (0.0, 1.0)
    scale = np.maximum(np.abs(a).max(axis=1), 1e-6) if a.size else np.ones(len(report.units))
    return a / scale[:, None], scale, (-1.0, 1.0)


def _values(report: Report, q: str) -> dict:
    """One quantity of the shown units for the page: its values (units, n) exactly, as little-endian float32 in base64
    (hovers show them to three decimals), and each unit's largest |value|, which a cell state's colours are divided by."""
    a = np.ascontiguousarray(report.acts[q][:, report.units].T, dtype="<f4")
    scale = shown_values(report, "cell")[1] if q == "cell" else np.ones(len(report.units))
    return {"key": q, "label": LABELS[q], "scales": [round(float(x), 4) for x in scale], "b64": base64.b64encode(a.tobytes()).decode("ascii")}


def _top_for_script(top: list[tuple[str, float]]) -> list:
    return [[show_char(c) if len(c) == 1 else c, round(p, 4)] for c, p in top]


def _json_for_script(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")


def _fmt_top(top: list[tuple[str, float]]) -> str:
    def pct(p: float) -> str:  # 0.4% is not 0%
        return f"{p:.0%}" if p >= 0.095 else f"{p:.1%}"

    return "  ".join(f"{show_char(c) if len(c) == 1 else c} {pct(p)}" for c, p in top)


def _colour_button(fu: FoundUnit, shown: list[int]) -> str:
    if fu.unit not in shown:  # --units left it out of the heatmaps, so the page has no values to colour by
        return '<span class="help">not among --units</span>'
    return f'<button class="show" data-value="{fu.quantity}:{fu.unit}">colour the text by it</button>'


def _surprisal_style(bits: float) -> str:
    """The ``style`` of a character tinted by its surprisal: ``--s``, its share of 12 bits (the CSS makes the colour, for
    a light or a dark page); none for the first character, which has no surprisal."""
    return "" if math.isnan(bits) else f' style="--s:{min(bits, 12.0) / 12.0:.3f}"'


def _text_spans(report: Report, start: int = 0, stop: int | None = None, breaks: bool = True) -> str:
    """The raw text [start, stop) as spans; characters the model read carry data-k (their index in the read sequence)."""
    k_of = {p: k for k, p in enumerate(report.positions)}
    out = []
    for i in range(start, len(report.raw) if stop is None else stop):
        ch = report.raw[i]
        if i in k_of:
            k = k_of[i]
            cls = "ch ws" if ch in "\n \t\u3000" else "ch"
            if report.read_as[i] == UNK:
                cls += " unkread"
            out.append(f'<span class="{cls}" data-k="{k}"{_surprisal_style(report.bits[k])}>{html.escape(show_char(ch))}</span>')
        else:
            out.append(f'<span class="ch skip" title="not in the model\'s vocabulary: skipped">{html.escape(show_char(ch))}</span>')
        if ch == "\n" and breaks:
            out.append("<br>")
    return "".join(out)


def _sparkline(report: Report, fu: FoundUnit, features: dict, width: int = 900, height: int = 56) -> str:
    """An inline SVG: the feature (grey steps) and the unit's activation (line), each scaled to the box."""
    f = features[fu.feature][1]
    a = report.acts[fu.quantity][:, fu.unit]
    n = len(f)

    def scaled(v):
        lo, hi = float(v.min()), float(v.max())
        return (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)

    xs = np.linspace(2, width - 2, n) if n > 1 else np.array([width / 2])
    fy = height - 3 - scaled(f) * (height - 6)
    ay = height - 3 - scaled(a) * (height - 6)
    fpts = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, fy))
    apts = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ay))
    return (f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-label="unit {fu.unit} against {html.escape(fu.description)}">'
            f'<polyline class="feature" points="{fpts}"/>'
            f'<polyline class="unit" points="{apts}"/></svg>')


CSS = """
:root { --ink:#1f2328; --soft:#57606a; --line:#d8dee4; --bg:#fbfaf7; --card:#fff; --accent:#c2410c; --button:#f6f8fa;
  --note-bg:#fff8e6; --note-line:#f0d58a; --skip:#6e7781; --feature:#bbb;
  --tint:232,93,36; --tint-most:.85; }  /* a surprising character's background: rgba(tint, its share of 12 bits × tint-most) */
@media (prefers-color-scheme: dark) {  /* the colours of charlm serve's page; the heatmaps keep theirs */
  :root { color-scheme:dark; --ink:#ece5da; --soft:#a59a8c; --line:#3a3530; --bg:#1b1917; --card:#262320; --accent:#e0694f;
    --button:#2e2a26; --note-bg:#3a3020; --note-line:#6b5a2a; --skip:#9a9087; --feature:#6b645c;
    --tint:255,120,60; --tint-most:.5; }  /* the darkest still leaves the ink 4.5:1 */
  #tip { border:1px solid var(--line); }
}
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font-family: "Noto Sans CJK SC","Source Han Sans SC","PingFang SC","Hiragino Sans GB","Microsoft YaHei","WenQuanYi Micro Hei",system-ui,sans-serif;
  font-size:15px; line-height:1.55; }
main { max-width:1160px; margin:0 auto; padding:24px 20px 60px; }
h1 { font-size:24px; margin:0 0 4px; } h2 { font-size:18px; margin:0 0 10px; }
.meta { color:var(--soft); font-size:13px; }
section { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:16px 18px; margin:16px 0; overflow-x:auto; }  /* a narrow screen scrolls a wide table or heatmap, not the page */
.notes { background:var(--note-bg); border-color:var(--note-line); } .notes li { margin:2px 0; }
.help { color:var(--soft); font-size:13px; margin:6px 0 0; }
.text { font-size:22px; line-height:1.9; letter-spacing:1px; word-break:break-all; }
.text.many { font-size:18px; line-height:1.8; column-width:17em; column-gap:2.5em; column-rule:1px solid var(--line); }
.ch { border-radius:3px; padding:1px 1px; cursor:default; }
[data-k] { background:rgba(var(--tint), calc(var(--s, 0) * var(--tint-most))); }  /* --s: the surprisal's share of 12 bits */
.ch.ws { font-size:14px; }
.ch.skip { color:var(--skip); text-decoration:line-through; }
.ch.unkread { outline:1px dashed var(--skip); }
.ch:hover { outline:2px solid var(--ink); }
.ch:focus-visible { outline:2px solid var(--accent); outline-offset:1px; }
.controls { display:flex; gap:18px; align-items:center; flex-wrap:wrap; margin:0 0 10px; font-size:14px; }
select { font:inherit; padding:2px 6px; }
table { border-collapse:collapse; font-size:14px; }
th, td { text-align:left; padding:4px 10px; border-bottom:1px solid var(--line); vertical-align:top; }
th { color:var(--soft); font-weight:600; }
td.num { text-align:right; font-variant-numeric:tabular-nums; }
td.big { font-size:20px; }
button.show { font:inherit; font-size:12px; padding:1px 8px; border:1px solid var(--line); border-radius:12px; background:var(--button); color:var(--ink); cursor:pointer; }
svg.spark { display:block; max-width:100%; height:auto; margin:2px 0 6px; }
svg.spark polyline { fill:none; } .spark .feature { stroke:var(--feature); stroke-width:3; } .spark .unit { stroke:var(--accent); stroke-width:1.5; }
.seg { margin:0 0 22px; }
.row { display:flex; align-items:flex-start; }
.qlabel { width:104px; flex:none; font-size:12px; color:var(--soft); text-align:right; padding-right:6px; }
.ulabels { width:30px; flex:none; font-size:9px; color:var(--soft); text-align:right; padding-right:4px; }
.ulabels div { height:11px; line-height:11px; } .ulabels div.found { color:var(--accent); font-weight:700; }
.chars { display:flex; } .chars span { width:16px; flex:none; text-align:center; font-size:13px; line-height:20px; border-radius:2px; }
canvas.hm { display:block; margin:0 0 6px; image-rendering:pixelated; cursor:crosshair; }
.legend { display:flex; gap:28px; flex-wrap:wrap; font-size:12px; color:var(--soft); align-items:center; }
.bar { display:inline-block; width:140px; height:10px; border-radius:2px; vertical-align:middle; margin:0 6px; }
#tip { position:fixed; pointer-events:none; background:#1f2328; color:#fff; font-size:13px; line-height:1.45; padding:6px 9px;
  border-radius:6px; white-space:pre; display:none; z-index:10; box-shadow:0 2px 8px rgba(0,0,0,.25); }
.hidden-q { display:none; }
details summary { cursor:pointer; color:var(--soft); }
"""

JS = r"""
(function () {
  var D = JSON.parse(document.getElementById('report-data').textContent);
  var CW = 16, CH = 11;
  function hex(c) { return [parseInt(c.slice(1, 3), 16), parseInt(c.slice(3, 5), 16), parseInt(c.slice(5, 7), 16)]; }
  function lut(stops) {
    var s = stops.map(hex), out = [], ink = [];
    for (var b = 0; b < 256; b++) {
      var t = b / 255 * (s.length - 1), i = Math.min(Math.floor(t), s.length - 2), f = t - i, c = [];
      for (var j = 0; j < 3; j++) c.push(Math.round(s[i][j] + (s[i + 1][j] - s[i][j]) * f));
      out.push('rgb(' + c.join(',') + ')');
      ink.push(contrast(c, [255, 255, 255]) > contrast(c, [0, 0, 0]) ? '#fff' : '#000');  // the one that stands out more: 4.6:1 at least
    }
    out.ink = ink;
    return out;
  }
  function luminance(c) {
    var l = c.map(function (v) { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * l[0] + 0.7152 * l[1] + 0.0722 * l[2];
  }
  function contrast(a, b) { var x = luminance(a), y = luminance(b); return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05); }
  var LUT = { gate: lut(D.viridis), cell: lut(D.rdbu) };
  var n = D.n, U = D.units.length, Q = {};
  D.quantities.forEach(function (q) {  // float32, little-endian, (units, n)
    var bin = atob(q.b64), view = new DataView(new ArrayBuffer(bin.length)), v = new Float32Array(bin.length / 4);
    for (var i = 0; i < bin.length; i++) view.setUint8(i, bin.charCodeAt(i));
    for (var j = 0; j < v.length; j++) v[j] = view.getFloat32(4 * j, true);
    Q[q.key] = { v: v, scales: q.scales, label: q.label, lut: q.key === 'cell' ? LUT.cell : LUT.gate };
  });
  function value(q, u, k) { return Q[q].v[u * n + k]; }
  function level(q, u, k) {  // 0..255 along the colour scale: a gate as it is, a cell state divided by its unit's largest |c|
    var x = value(q, u, k), t = q === 'cell' ? (x / Q.cell.scales[u] + 1) / 2 : x;
    return Math.max(0, Math.min(255, Math.round(t * 255)));
  }
  function num(x) { return (x < 0 ? '\u2212' : '') + Math.abs(x).toFixed(3); }
  function par(x) { return x < 0 ? '(' + num(x) + ')' : num(x); }
  function step(u, k) {  // the LSTM's update of unit u at character k, with this text's numbers
    var i = value('input', u, k), f = value('forget', u, k), g = value('candidate', u, k), o = value('output', u, k);
    var c = value('cell', u, k), h = value('hidden', u, k);
    var before = k > 0 ? value('cell', u, k - 1) : D.cell_before ? D.cell_before[u] : 0;
    return ['i = ' + num(i) + '   f = ' + num(f) + '   g = ' + num(g) + '   o = ' + num(o),
            'c = f\u00b7c\u208b\u2081 + i\u00b7g = ' + num(f) + '\u00d7' + par(before) + ' + ' + num(i) + '\u00d7' + par(g) + ' = ' + num(c) +
              (k ? '' : D.cell_before ? '   (c\u208b\u2081: the state the context left)' : '   (c\u208b\u2081 = 0: the zero start)'),
            'h = o\u00b7tanh(c) = ' + num(o) + '\u00d7tanh(' + num(c) + ') = ' + num(h)].join('\n');
  }
  function guesses(t) { return t.map(function (g) { return '   ' + g[0] + '   ' + (g[1] * 100).toFixed(1) + '%'; }); }
  var sel = document.getElementById('colour-by');
  function charTip(k) {
    var b = D.bits[k], lines = ['\u201c' + D.chars[k] + '\u201d  #' + (k + 1)];
    if (b === null) lines.push('first character: nothing before it to predict it from');
    else {
      lines.push('surprisal ' + b.toFixed(2) + ' bits: rank ' + D.rank[k] + ' of ' + D.vocab + ' in what the model expected here' +
                 (D.unk.indexOf(k) >= 0 ? '\n(read as <unk>: the surprisal of <unk>, not of this character)' : ''));
      if (D.copied) lines.push('copied: ' + (D.copied[k] * 100).toFixed(1) + '% of the probability' +
                               (D.copy_from[k] >= 0 ? ', most for #' + (D.copy_from[k] + 1) + ' “' + D.chars[D.copy_from[k]] + '”, which followed a context like this one' :
                                D.copy_from[k] === D.in_context ? ', most for a character of the context read first' : '') +
                               '\nthe LSTM alone: ' + D.lstm_bits[k].toFixed(2) + ' bits');
      lines.push('it expected here:');
      lines = lines.concat(guesses(k ? D.top[k - 1] : D.top_before));
    }
    lines.push('after it, it expects:');
    lines = lines.concat(guesses(D.top[k]));
    var v = sel ? sel.value : 'surprisal';
    if (v !== 'surprisal') {
      var q = v.split(':')[0], unit = +v.split(':')[1];
      lines.push('', Q[q].label + ' of unit ' + unit + ': ' + num(value(q, D.units.indexOf(unit), k)), step(D.units.indexOf(unit), k));
    }
    return lines.join('\n');
  }
  window.charlm = { data: D, value: value, step: step, charTip: charTip };  // for the browser's console
  var tip = document.getElementById('tip');
  function showTip(e, text) {  // e: a mouse event, or an element's box (the tip goes below it)
    tip.textContent = text; tip.style.display = 'block';
    var ax = e.clientX !== undefined ? e.clientX : e.left, ay = e.clientY !== undefined ? e.clientY : e.bottom;
    var x = ax + 14, y = ay + 14, r = tip.getBoundingClientRect();
    if (x + r.width > window.innerWidth - 8) x = Math.max(8, ax - r.width - 14);
    if (y + r.height > window.innerHeight - 8) y = Math.max(8, (e.top !== undefined ? e.top : ay) - r.height - 14);
    tip.style.left = x + 'px'; tip.style.top = y + 'px';
  }
  function hideTip() { tip.style.display = 'none'; }
  function byKeys(el) {  // focused from the keyboard (a click focuses a character too, but shows no ring and keeps no tip)
    try { return el.matches(':focus-visible'); } catch (err) { return true; }
  }
  function leave() {  // the pointer left a character or a heatmap: the tip of a character the keys are on comes back
    var a = document.activeElement;
    if (keys.indexOf(a) >= 0 && byKeys(a)) showTip(a.getBoundingClientRect(), charTip(+a.dataset.k));
    else hideTip();
  }
  document.addEventListener('keydown', function (e) { if (e.key === 'Escape') hideTip(); });
  document.querySelectorAll('[data-k]').forEach(function (el) {
    el.addEventListener('mousemove', function (e) { showTip(e, charTip(+el.dataset.k)); });
    el.addEventListener('mouseleave', leave);
  });
  // The keyboard: the text is one stop of the Tab key, and the arrow keys (Home, End) move from character to character,
  // each showing its tip as a hover does and giving it to a screen reader as the character's description.
  var keys = Array.prototype.slice.call(document.querySelectorAll('#text [data-k]'));
  function tipFor(el) { tip.textContent = charTip(+el.dataset.k); }
  keys.forEach(function (el, i) {
    el.tabIndex = i ? -1 : 0;
    el.setAttribute('aria-describedby', 'tip');
    el.addEventListener('focus', function () {
      keys.forEach(function (o) { o.tabIndex = o === el ? 0 : -1; });
      if (byKeys(el)) showTip(el.getBoundingClientRect(), charTip(+el.dataset.k));
    });
    el.addEventListener('blur', hideTip);
    el.addEventListener('keydown', function (e) {
      var to = { ArrowRight: i + 1, ArrowDown: i + 1, ArrowLeft: i - 1, ArrowUp: i - 1, Home: 0, End: keys.length - 1 }[e.key];
      if (to === undefined) return;
      e.preventDefault();
      to = Math.max(0, Math.min(keys.length - 1, to));
      tipFor(keys[to]);  // before the focus moves, so the description read out is the new character's
      keys[to].focus();
    });
  });
  document.querySelectorAll('canvas.hm').forEach(function (cv) {
    var key = cv.dataset.q, q = Q[key], s0 = +cv.dataset.start, cols = +cv.dataset.cols;
    var dpr = window.devicePixelRatio || 1;
    cv.width = cols * CW * dpr; cv.height = U * CH * dpr;
    cv.style.width = cols * CW + 'px'; cv.style.height = U * CH + 'px';
    var ctx = cv.getContext('2d');
    ctx.scale(dpr, dpr);
    for (var u = 0; u < U; u++) for (var t = 0; t < cols; t++) {
      ctx.fillStyle = q.lut[level(key, u, s0 + t)];
      ctx.fillRect(t * CW, u * CH, CW, CH);
    }
    cv.addEventListener('mousemove', function (e) {
      var r = cv.getBoundingClientRect(), t = Math.floor((e.clientX - r.left) / CW), u = Math.floor((e.clientY - r.top) / CH);
      if (t < 0 || t >= cols || u < 0 || u >= U) return hideTip();
      var k = s0 + t;
      showTip(e, q.label + ', unit ' + D.units[u] + ', at \u201c' + D.chars[k] + '\u201d (#' + (k + 1) + '): ' + num(value(key, u, k)) + '\n' + step(u, k) +
                 (key === 'cell' ? '\n(the row is drawn \u00f7 this unit\'s largest |c| here, ' + Q.cell.scales[u].toFixed(2) + ')' : ''));
    });
    cv.addEventListener('mouseleave', leave);
  });
  var SURPRISAL = document.getElementById('text-legend').textContent;  // the page's own, for going back to it
  function colour() {
    var v = sel.value, spans = document.querySelectorAll('#text [data-k]');
    var legend = document.getElementById('text-legend');
    if (v === 'surprisal') {
      spans.forEach(function (el) { el.style.background = ''; el.style.color = ''; });  // back to the stylesheet's tint
      legend.textContent = SURPRISAL;
      return;
    }
    var parts = v.split(':'), q = parts[0], u = D.units.indexOf(+parts[1]);
    spans.forEach(function (el) {  // the heatmaps' colours, with light ink on the dark ones
      var b = level(q, u, +el.dataset.k);
      el.style.background = Q[q].lut[b];
      el.style.color = Q[q].lut.ink[b];
    });
    legend.textContent = (q === 'cell' ? 'cell state of unit ' + parts[1] + ' \u00f7 its largest |c| here (' + Q.cell.scales[u].toFixed(2) +
                                          '): blue negative, white near 0, red positive, as in the heatmap.'
                                        : Q[q].label + ' of unit ' + parts[1] + ': dark closed (0) \u2026 yellow open (1), as in the heatmaps.') +
                         ' Hover a character, or move to it with the arrow keys, for its value and the step that made it.';
  }
  sel.addEventListener('change', colour);
  document.querySelectorAll('button.show').forEach(function (b) {
    b.addEventListener('click', function () {  // the focus goes with the view (a keyboard's next Tab is from there)
      sel.value = b.dataset.value; colour(); sel.focus({ preventScroll: true });
      document.getElementById('text-card').scrollIntoView({ behavior: 'smooth' });
    });
  });
  document.querySelectorAll('input.qtoggle').forEach(function (box) {
    box.addEventListener('change', function () {
      document.querySelectorAll('.row[data-q="' + box.value + '"]').forEach(function (r) { r.classList.toggle('hidden-q', !box.checked); });
    });
  });
  document.body.dataset.drawn = 'yes';
})();
"""


def render_html(report: Report) -> str:
    """The whole report as one self-contained HTML page."""
    e = html.escape
    n = report.n
    label = dict(SHOWN)
    features = report.features or line_features(report.raw, report.positions)
    found_units = {f.unit for f in report.found}
    chars = [show_char(report.raw[p]) for p in report.positions]
    data = {
        "n": n, "units": report.units, "chars": chars,
        "bits": [None if math.isnan(b) else round(float(b), 3) for b in report.bits],
        "rank": report.rank.tolist(), "vocab": report.vocab_size,
        "unk": [k for k, p in enumerate(report.positions) if report.read_as[p] == UNK],
        **({} if report.copied is None else {
            "copied": [None if math.isnan(x) else round(float(x), 4) for x in report.copied],
            "lstm_bits": [None if math.isnan(b) else round(float(b), 3) for b in report.lstm_bits],
            "copy_from": report.copy_from.tolist(), "in_context": IN_CONTEXT}),
        "top": [_top_for_script(t) for t in report.top],
        "top_before": None if report.top_before is None else _top_for_script(report.top_before),
        "cell_before": None if report.cell_before is None else [round(float(report.cell_before[u]), 6) for u in report.units],
        "viridis": VIRIDIS, "rdbu": RDBU,
        "quantities": [_values(report, q) for q in GATE_NAMES],
    }
    # The page is English; the inspected text's characters carry their own language (a Chinese voice, Chinese glyphs).
    lang = "zh" if any("\u4e00" <= c <= "\u9fff" for c in report.raw) else "en"
    out = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>charlm inspect · {e(Path(report.checkpoint).name or report.checkpoint)}</title>",
           f"<style>{CSS}</style></head><body><main>",
           "<h1>Inside the LSTM</h1>",
           f'<div class="meta">checkpoint <code>{e(report.checkpoint)}</code> · {e(report.model)} · layer {report.layer} of {report.num_layers} · '
           f"{report.size_text}{f' after {report.context_read:,} of context' if report.context_read else ''} · {report.mean_text}</div>"]
    if report.notes:
        out.append('<section class="notes"><ul>' + "".join(f"<li>{e(x)}</li>" for x in report.notes) + "</ul></section>")

    # The text, coloured by surprisal or by a unit.
    options = ['<option value="surprisal">surprisal (bits)</option>']
    for q, lbl in SHOWN:
        options.append(f'<optgroup label="{e(lbl)}">' + "".join(
            f'<option value="{q}:{u}">{e(lbl)} · unit {u}{" ★" if u in found_units else ""}</option>' for u in report.units) + "</optgroup>")
    out += ['<section id="text-card"><h2>The text, as the model read it</h2>',
            f'<div class="controls"><label>colour by <select id="colour-by">{"".join(options)}</select></label>'
            '<span id="text-legend" class="help">untinted: expected; deep orange: surprising (12 bits or more). Hover a character, or Tab to the text and move with the arrow keys, for its rank and the guesses around it (the table at the end has them all).</span></div>',
            f'<div id="text" class="text{" many" if report.raw.count(chr(10)) > 12 else ""}" lang="{lang}">{_text_spans(report)}</div>',
            '<p class="help">Surprisal is −log₂ p(character | everything before it): 1 bit is a coin flip, '
            f"{math.log2(max(2, report.vocab_size)):.1f} bits a blind guess over the whole vocabulary. "
            + (f"The model first read {_n_chars(report.context_read)} of context, not shown here, and reads the text from the state "
               "they left, so the first character has a surprisal too." if report.top_before is not None else
               "The first character has no surprisal: nothing comes before it. The model reads the text from a fresh "
               "(zero) state, as at the start of a text, so its first few characters cost more than they would further in "
               "(<code>--context</code> gives it something to read first).")
            + "</p></section>"]

    # Heatmaps, wrapped like the text.
    out += ['<section><h2>Gates and cell state</h2>',
            f'<p class="help">Layer {report.layer}, {len(report.units)} units (rows; ★ found automatically, then the units whose output varies most) '
            "over the characters read (columns). A gate near 1 lets everything through, near 0 nothing: the input gate decides how much of the new "
            "candidate enters the cell, the forget gate how much of the old cell is kept, the output gate how much of the cell is shown. "
            "Hover a square for the whole step of that unit at that character: c = f·c₋₁ + i·g and h = o·tanh(c), with this text's numbers. "
            "A column is the step that reads its character: its gates come after that character is read, while the character's "
            "surprisal was the model's guess before it, from the column to its left.</p>",
            '<div class="controls">show ' + "".join(
                f'<label><input type="checkbox" class="qtoggle" value="{q}" checked> {e(lbl)}</label>' for q, lbl in SHOWN) + "</div>",
            '<div class="legend">'
            f'<span>gates <span class="bar" style="background:linear-gradient(to right,{",".join(VIRIDIS)})"></span> 0 … 1</span>'
            f'<span>cell state <span class="bar" style="background:linear-gradient(to right,{",".join(RDBU)})"></span> −1 … 0 … +1 × each unit&#39;s largest |c|</span>'
            "</div><div style=\"height:12px\"></div>"]
    ulabels = "".join(f'<div class="{"found" if u in found_units else ""}">{"★" if u in found_units else ""}{u}</div>' for u in report.units)
    for s in range(0, n, HTML_COLS):
        cols = min(HTML_COLS, n - s)
        head = "".join(f'<span data-k="{k}"{_surprisal_style(report.bits[k])}>{e(chars[k])}</span>' for k in range(s, s + cols))
        out.append(f'<div class="seg"><div class="row"><div class="qlabel">#{s + 1}–{s + cols}</div><div class="ulabels"></div><div class="chars" lang="{lang}">{head}</div></div>')
        for q, lbl in SHOWN:
            about = f"{lbl} of {len(report.units)} units (rows) at characters {s + 1} to {s + cols} (columns); each value is shown on hover"
            out.append(f'<div class="row" data-q="{q}"><div class="qlabel">{e(lbl)}</div><div class="ulabels">{ulabels}</div>'
                       f'<canvas class="hm" role="img" aria-label="{e(about)}" data-q="{q}" data-start="{s}" data-cols="{cols}" '
                       f'width="{cols * 16}" height="{len(report.units) * 11}"></canvas></div>')
        out.append("</div>")
    out.append("<noscript><p>The heatmaps are drawn by the page's inline script; allow scripts to see them (the PNG has them too).</p></noscript></section>")

    # How long each unit keeps its cell.
    kept, half = report.memory
    out += ['<section><h2>How long the cells remember</h2>',
            '<p class="help">The forget gate f is the share of a unit\'s cell kept from one character to the next: after t characters '
            "with nothing new written, f₁·f₂·…·f_t of it is left. Over this text, " + e(report.memory_text) + ". A unit that keeps "
            "0.5 per character has forgotten 99.9% of a line's start ten characters later; what the model carries further "
            "is rewritten as it goes, or lives in the few units that keep more. A half-life under 1 character means less "
            "than half is left after a single step (0.5 characters: a quarter)."
            + (f" The whole layer at line breaks and elsewhere: {e(report.gates_text)}." if report.gates_text else "") + "</p>",
            '<table><tr><th>unit</th><th>kept per character (geometric mean of f)</th><th>half of it gone after</th></tr>']
    for u in report.units:
        out.append(f'<tr><td class="num">{"★" if u in found_units else ""}{u}</td><td class="num">{kept[u]:.3f}</td><td class="num">{e(_chars(float(half[u]), report.n))}</td></tr>')
    out.append("</table></section>")

    # Units found automatically.
    out.append('<section><h2>Units that follow something you can see</h2>')
    bar = ("A unit is listed when |r| ≥ " f"{FOLLOWS} and above the largest |r| any unit of an untrained model of the same shape "
           "reaches on this text (charlm's initialisation, seed 0): a gate sees the character just read, so even untrained units "
           "react to line breaks, and only what goes beyond them is the training's. A unit that follows how far into the text it is "
           + ("(read after the context)" if report.context_read else "(drift from the zero start state)")
           + " at least as closely is not listed for another feature.")
    if report.found:
        out.append('<p class="help">Correlation r of a unit\'s activation with a feature of the text, over every character read '
                   f'(+1: it rises as the feature does, in lockstep; −1: it falls as the feature rises, a gate that closes there; 0: '
                   f'unrelated). {e(bar)} Grey: the feature; orange: the unit. ★ marks these units in the heatmaps.</p>')
        out.append("<table><tr><th>unit</th><th>signal</th><th>follows</th><th>r</th><th>untrained: best |r|</th><th></th></tr>")
        for fu in report.found:
            out.append(f'<tr><td class="num">{fu.unit}</td><td>{e(label[fu.quantity])}</td><td>{e(fu.description)}</td>'
                       f'<td class="num">{fu.r:+.{r_digits(fu)}f}</td><td class="num">{fu.untrained:.{r_digits(fu)}f}</td>'
                       f'<td>{_colour_button(fu, report.units)}</td></tr>'
                       f'<tr><td></td><td colspan="5">{_sparkline(report, fu, features)}</td></tr>')
        out.append("</table>")
    else:
        out.append('<p class="help">In this text no unit of this layer follows the position in the line, line breaks, repeated lines '
                   f"or how far into the text it is closely enough. {e(bar)}</p>")
    if report.unit_notes:
        out.append('<ul class="help">' + "".join(f"<li>{e(x)}</li>" for x in report.unit_notes) + "</ul>")
    out.append("</section>")

    # Per-character table.
    out.append(f'<section><details{" open" if n <= 120 else ""}><summary><h2 style="display:inline">Every character: its surprisal, '
               "and what the model expected in its place</h2></summary>")
    copy_cols = report.copied is not None
    out.append('<table style="margin-top:10px"><tr><th>#</th><th>character</th><th>surprisal</th><th>rank</th>'
               + ("<th>copied</th><th>the LSTM alone</th>" if copy_cols else "")
               + "<th>what the model expected here (its five most likely)</th></tr>")
    for k in range(n):
        b, first = report.bits[k], report.expected(k) is None
        unk = " (as &lt;unk&gt;)" if report.read_as[report.positions[k]] == UNK else ""
        extra = ""
        if copy_cols:
            src = report.copy_from[k]
            where = f" (most: #{src + 1} {e(chars[src])})" if src >= 0 else " (most: from the context)" if src == IN_CONTEXT else ""
            extra = (f'<td class="num">{"—" if first else f"{report.copied[k]:.0%}{where}"}</td>'
                     f'<td class="num">{"—" if first else f"{report.lstm_bits[k]:.2f} bits"}</td>')
        out.append(f'<tr><td class="num">{k + 1}</td><td class="big" lang="{lang}">{e(chars[k])}</td><td class="num">{"—" if math.isnan(b) else f"{b:.2f} bits{unk}"}</td>'
                   f'<td class="num">{"—" if first else f"{report.rank[k]:,}"}</td>{extra}<td lang="{lang}">{"—" if first else e(_fmt_top(report.expected(k)))}</td></tr>')
    out.append(f'</table><p class="help">Rank 1: the model\'s first guess; {report.vocab_size:,}: its last. After the last character '
               f"it expects {e(_fmt_top(report.top[-1]))}.</p></details></section>")
    out.append(f'<p class="help">Made by <code>charlm inspect</code>. ↵ is a line break, ␣ a space, ⬚ a full-width space, ⇥ a tab.</p></main><div id="tip" role="tooltip"></div>'
               f'<script type="application/json" id="report-data">{_json_for_script(data)}</script><script>{JS}</script></body></html>')
    return "\n".join(out)


def cjk_font(log=None) -> str | None:
    """The name of a font matplotlib can draw Chinese with, or None (after a warning) when there is none."""
    font = _find_cjk_font()
    if font is None and log is not None:
        log("charlm: warning: no CJK font found, so Chinese characters in the PNG show as boxes (install e.g. Debian's fonts-noto-cjk)")
    return font


@functools.lru_cache(maxsize=1)
def _find_cjk_font() -> str | None:
    from matplotlib import font_manager as fm

    names = {f.name for f in fm.fontManager.ttflist}
    for fam in CJK_FAMILIES:
        if fam in names:
            return fam
    # matplotlib caches its font list; fonts installed after the cache was built are not in it.
    added = set()
    for path in fm.findSystemFonts():
        if any(h in Path(path).name.lower().replace("-", "").replace("_", "") for h in CJK_FILE_HINTS):
            try:
                fm.fontManager.addfont(path)
                added.add(fm.FontProperties(fname=path).get_name())
            except Exception:  # noqa: BLE001 - an unreadable font file is simply not used
                continue
    for fam in CJK_FAMILIES:
        if fam in added:
            return fam
    return sorted(added)[0] if added else None


def png_key(report: Report, n: int) -> str:
    """The PNG's key to what the HTML page explains on hover: the ★ units, the grey first cell, the characters left out
    (struck through on the page; the picture has no column for them)."""
    key = ["★ a unit found to follow something (the HTML report says what)"] if {f.unit for f in report.found} & set(report.units) else []
    if np.isnan(report.bits[:n]).any():
        key.append("grey: a character nothing predicts (the first)")
    drawn = report.raw if n == report.n else report.raw[: report.positions[n - 1]]  # (up to the picture's last character)
    if skipped := list(dict.fromkeys(ch for ch, t in zip(drawn, report.read_as) if t is None)):
        key.append("left out, outside the vocabulary: " + " ".join(show_char(ch) for ch in skipped[:12]) + ("…" if len(skipped) > 12 else ""))
    return " · ".join(key)


# suffixes of pictures other than PNG: a --png named so would hold PNG bytes under the wrong name
OTHER_PICTURES = {".jpg", ".jpeg", ".jfif", ".gif", ".svg", ".svgz", ".pdf", ".ps", ".eps", ".webp", ".bmp", ".tif", ".tiff",
                  ".avif", ".heic", ".heif", ".ico", ".jxl", ".pgf", ".raw", ".rgba", ".html", ".htm", ".ppm",
                  ".pgm", ".pbm", ".pnm", ".tga", ".qoi", ".exr", ".icns", ".dds", ".xpm", ".xbm"}


def render_png(report: Report, log=None) -> bytes:
    """A static version of the heatmaps (the first PNG_MAX_CHARS characters) as PNG bytes."""
    import matplotlib
    from matplotlib import rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    font = cjk_font(log)
    n = min(report.n, PNG_MAX_CHARS)
    units = report.units
    U = len(units)
    found_units = {f.unit for f in report.found}
    chars = [show_char(report.raw[p]) for p in report.positions]
    cols = min(PNG_COLS, n)
    cw, uh = 0.2, 0.1  # inches per character column, per unit row
    left, right = 1.35, 0.35
    hm_h = max(U * uh, 0.5)
    seg_h = 0.3 + 0.2 + 0.1 + len(SHOWN) * (hm_h + 0.12) + 0.3  # labels, surprisal strip, heatmaps, labels
    top_h, bottom_h = 0.95, 0.75
    segs = list(range(0, n, cols))
    bar_w = 2.0  # each of the three colour bars; their titles need about that much room
    W = max(left + cols * cw, left + 3 * (bar_w + 0.8)) + right  # a short text still leaves room for the titles
    Hgt = top_h + len(segs) * seg_h + bottom_h
    family = [font, "DejaVu Sans"] if font else ["DejaVu Sans"]  # DejaVu draws ↵ and ␣, which CJK fonts lack
    with rc_context({"font.family": family, "axes.unicode_minus": False}), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*[Gg]lyph.*missing.*")
        fig = Figure(figsize=(W, Hgt), dpi=100)
        FigureCanvasAgg(fig)
        title = f"{'/'.join(Path(report.checkpoint).parts[-2:])} · {report.model} · layer {report.layer} · {report.mean_text}"
        if report.context_read:
            title += f" · after {_n_chars(report.context_read)} of context"
        if report.n > n:
            title += f"  (first {n} of {report.n} characters; the HTML report has all)"
        fig.text(left / W, 1 - 0.3 / Hgt, "Inside the LSTM: surprisal, gates and cell state", fontsize=13, weight="bold")
        fig.text(left / W, 1 - 0.55 / Hgt, title, fontsize=9, color="#57606a")
        fig.text(left / W, 1 - 0.75 / Hgt, png_key(report, n), fontsize=8, color="#57606a")
        gate_norm, cell_norm = Normalize(0, 1), Normalize(-1, 1)
        oranges = matplotlib.colormaps["Oranges"].with_extremes(bad="#d0d7de")
        shown = {q: shown_values(report, q)[0] for q, _ in SHOWN}  # (units, n)
        im_bits = im_gate = im_cell = None

        def axes(y_top: float, h: float, ncols: int):
            return fig.add_axes((left / W, 1 - (y_top + h) / Hgt, ncols * cw / W, h / Hgt))

        y = top_h
        for s in segs:
            c = min(cols, n - s)
            y += 0.3
            ax = axes(y, 0.2, c)
            b = np.ma.masked_invalid(report.bits[s : s + c])[None, :]  # the first character has none without a context: grey, not 0 bits
            im_bits = ax.imshow(b, aspect="auto", cmap=oranges, vmin=0, vmax=12, interpolation="nearest")
            ax.set_yticks([0], ["bits"], fontsize=7)
            ax.xaxis.tick_top()
            ax.set_xticks(range(c), chars[s : s + c], fontsize=9)
            ax.tick_params(length=0, pad=2)
            for sp in ax.spines.values():
                sp.set_visible(False)
            y += 0.3
            for i, (q, lbl) in enumerate(SHOWN):
                ax = axes(y, hm_h, c)
                a = shown[q][:, s : s + c]  # (units, c)
                im = ax.imshow(a, aspect="auto", interpolation="nearest",
                               cmap="RdBu_r" if q == "cell" else "viridis", norm=cell_norm if q == "cell" else gate_norm)
                if q == "cell":
                    im_cell = im
                else:
                    im_gate = im
                ax.set_yticks(range(U), [("★" if u in found_units else "") + str(u) for u in units], fontsize=5.5 if U > 20 else 6.5)
                for tick, u in zip(ax.get_yticklabels(), units):
                    if u in found_units:
                        tick.set_color("#c2410c")
                ax.set_ylabel(lbl, rotation=0, ha="right", va="center", fontsize=9, labelpad=22)
                if i == len(SHOWN) - 1:
                    ax.set_xticks(range(c), chars[s : s + c], fontsize=9)
                else:
                    ax.set_xticks([])
                ax.tick_params(length=0, pad=2)
                y += hm_h + 0.12
            y += 0.3
        for j, (im, name) in enumerate(((im_bits, "surprisal (bits)"), (im_gate, "gates: 0 closed … 1 open"), (im_cell, "cell state ÷ the unit's largest |c|"))):
            cax = fig.add_axes(((left + j * (bar_w + 0.8)) / W, 0.25 / Hgt, bar_w / W, 0.12 / Hgt))
            fig.colorbar(im, cax=cax, orientation="horizontal")
            cax.set_title(name, fontsize=8, loc="left")
            cax.tick_params(labelsize=7)
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    return buf.getvalue()


def inspect_checkpoint(checkpoint: str, text: str | None = None, file: str | None = None, encoding: str | None = None,
                       out: str = "inspect.html", png: str | None = None, layer: int | None = None, units: str | None = None,
                       context: str | None = None, context_file: str | None = None,
                       log=lambda msg: print(msg, file=sys.stderr)) -> str:
    """Write the HTML report (and the PNG, if asked) for ``checkpoint`` on a text; returns a summary to print.
    ``encoding``: of ``file`` and ``context_file`` (default: UTF-8, or where they are not, the one the model's training
    text was read in)."""
    from .checkpoint import check_writable, load_model

    if encoding is not None and text is not None and not (file or context_file):  # (not silently nothing: an unknown name was not even checked)
        raise CharlmError("--encoding is the encoding of --file and --context-file, and neither is given: --text and "
                          "--context are read as typed; leave --encoding out")
    check_writable(out, "--out")
    if Path(out).suffix.lower() == ".png":
        raise CharlmError(f"--out {out} is the HTML report; the picture is --png (e.g. --out report.html --png {out})")
    if Path(out).suffix.lower() in OTHER_PICTURES - {".html", ".htm"}:  # (a .pdf was written as HTML under that name)
        raise CharlmError(f"--out {out}: the report is written as HTML, and {Path(out).suffix} says otherwise; "
                          f"name it {Path(out).with_suffix('.html')}")
    if png:
        check_writable(png, "--png")
        if Path(png).resolve() == Path(out).resolve():
            raise CharlmError(f"--png and --out are the same file {png}; give the picture another name")
        if Path(png).suffix.lower() in OTHER_PICTURES:  # (other suffixes are a name's own: heat.v2)
            raise CharlmError(f"--png {png}: the picture is written as PNG, and {Path(png).suffix} says otherwise; "
                              f"name it {Path(png).with_suffix('.png')}")
    model, vocab, ckpt = load_model(checkpoint, "cpu")
    trained = ckpt.train_config.encoding  # files not in UTF-8 are read in the training text's encoding, unless told
    raw = read_input(text, file, encoding, trained)
    before = read_context(context, context_file, encoding, trained)
    report = analyse(model, vocab, str(ckpt.path), raw, layer, parse_units(units, model.cfg.hidden_size), ckpt.train_config.newlines, before)
    page = render_html(report).encode("utf-8")
    image = render_png(report, log) if png else None  # everything is made before anything is written
    write_atomic((Path(out), page), *([(Path(png), image)] if image is not None else []))
    lines = [f"report: {out}" + (f" and {png}" if png else "") +
             f" ({report.size_text}{f' after {report.context_read:,} of context' if report.context_read else ''}, layer {report.layer}, units {','.join(map(str, report.units))}; {report.mean_text})"]
    lines += [found_line(fu) for fu in report.found]
    if report.gates_text:
        lines.append(f"gates: {report.gates_text}")
    lines.append(f"memory: {report.memory_text}")
    if report.copy_text:
        lines.append(f"copy: {report.copy_text}")
    lines += [f"note: {x}" for x in report.notes + report.unit_notes]
    if png and report.n > PNG_MAX_CHARS:
        lines.append(f"note: the PNG shows the first {PNG_MAX_CHARS} of the {report.n:,} characters; the HTML report has all")
    return "\n".join(lines)
