"""Sampling: small functions from logits to logits, and one generator that yields characters.

The hidden state is carried one character at a time: the prefix is read once, then each
new character costs one step of the model, whatever came before.  The command line, the
trainer's samples and the server all use :func:`generate`.  One sample of an LSTM on the
CPU is stepped and drawn in numpy (:mod:`charlm.numpy_sampling`), with the same characters.
"""

from __future__ import annotations

import dataclasses
import unicodedata
import warnings
from collections.abc import Callable, Collection, Iterator

import regex
import torch
from torch import nn

from . import numpy_sampling
from .config import SampleConfig
from .errors import CharlmError
from .model import CharLM, CopyRing
from .vocab import UNK, Vocab


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide by ``temperature`` (> 0): below 1 sharpens the distribution, above 1 flattens it."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int | None) -> torch.Tensor:
    """Keep the ``k`` largest logits of each row, set the rest to -inf."""
    if k is None or k >= logits.shape[-1]:
        return logits
    if k < 1:
        raise ValueError(f"top_k must be >= 1, got {k}")
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of most likely characters whose probability reaches ``p`` (nucleus sampling)."""
    if not 0 < p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {p}")
    if p >= 1:
        return logits
    sorted_logits, order = torch.sort(logits, descending=True, stable=True, dim=-1)  # ties: the lower id first, as numpy_sampling
    cum = sorted_logits.softmax(-1).cumsum(-1)
    drop = cum - sorted_logits.softmax(-1) >= p  # the mass before this one already reaches p
    drop[..., 0] = False
    return logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))


def choose(logits: torch.Tensor, cfg: SampleConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """Next ids (batch,) from last-step logits (batch, vocab)."""
    if cfg.greedy:
        return logits.argmax(-1)
    logits = logits.float()
    if cfg.temperature != 1:  # x / 1 is x: skipping it changes nothing
        logits = apply_temperature(logits, cfg.temperature)
    probs = top_p_filter(top_k_filter(logits, cfg.top_k), cfg.top_p).softmax(-1)
    return draw(probs, generator)


def draw(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One id per row of ``probs`` (batch, vocab), drawn with probability proportional to its entry.

    Inverse-CDF sampling: one uniform number per row, placed in the running sum of the row.
    ``torch.multinomial`` draws an exponential for every entry of the vocabulary instead
    (the Gumbel-max trick), which at batch 1 costs more than the LSTM step itself, and
    checks that ``probs`` is finite, a read back to the host that would stall a GPU once per
    character.  An entry of probability zero (cut by top-k or top-p) is never drawn.
    """
    cdf = probs.cumsum(-1, dtype=torch.float64)
    r = torch.rand((probs.shape[0], 1), generator=generator, device=probs.device, dtype=torch.float64)  # [0, 1)
    v = (1 - r).mul_(cdf[:, -1:])  # in (0, total]
    # the first index whose running sum reaches v: the sum before it is below v, so its own probability is > 0
    return torch.searchsorted(cdf, v).squeeze(-1)


def known_prefixes(vocab: Vocab, prefixes) -> list[tuple[int, str]]:
    """Each of a run's ``prefixes`` the vocabulary knows whole, with its place among them; an empty one is none."""
    return [(i, p) for i, p in enumerate(prefixes) if p and not vocab.unknown(p)]


def default_prefix(vocab: Vocab, prefixes) -> str:
    """The first of a run's ``prefixes`` the vocabulary knows whole (分开 for the lyrics), else "": the start of a line."""
    return next((p for _, p in known_prefixes(vocab, prefixes)), "")


def check_known(vocab: Vocab, text: str, what: str, unknown: str = "error", exact: bool = False,
                hint: str = "check_known(..., unknown='skip') drops them") -> str:
    """``text`` itself, or without the characters ``vocab`` lacks when ``unknown='skip'``; else an :class:`InputError`.

    ``exact``: ``<unk>`` does not stand in for a character (an acrostic's lines start with real ones).  The text is read
    in the Unicode form the vocabulary knows best (:func:`vocab_form`).  ``hint`` ends the error: how to skip them.
    """
    text = vocab_form(vocab, text)
    missing = unknown_chars(vocab, text, exact)
    if not missing:
        return text
    if unknown == "skip":
        if exact:  # an acrostic's character (a keycap #️⃣, an accented letter) the model cannot write whole heads no line
            return "".join(g for g in acrostic_heads(text) if all(c in vocab for c in g))  # (dropped_chars: the rest)
        return "".join(c for c in text if c in vocab)
    raise InputError(what.replace(" ", "_"), f"the {what} has characters the model's vocabulary does not know: {show_chars(missing)}"
                                            + other_width(vocab, missing) + f" ({hint})")


def other_width(vocab: Vocab, unknown, most: int | None = None) -> str:
    """For an error naming ``unknown`` characters: "; it knows '，' for ',', in the other width" for those whose other
    width the vocabulary holds (the first ``most`` of them), else ""."""
    twins = [f"{show_chars([t])} for {show_chars([c])}" for c in unknown if (t := width_twin(c)) and t in vocab]
    return f"; it knows {', '.join(twins[:most])}, in the other width" if twins else ""


def width_twin(c: str) -> str | None:
    """The same character in the other width: the full-width ， for a typed ,, and the reverse (ASCII ! to ~ and
    U+FF01 to U+FF5E, and the two spaces); else None."""
    if "!" <= c <= "~":
        return chr(ord(c) + 0xFEE0)
    if "\uff01" <= c <= "\uff5e":
        return chr(ord(c) - 0xFEE0)
    return {" ": "\u3000", "\u3000": " "}.get(c)


# What eval and inspect say when they read a text in the other form (vocab_form changed it)
FORM_NOTE = ("read in the Unicode form the vocabulary holds (accented letters composed or decomposed as in its training "
             "text), as generate reads a prefix")


def vocab_form(vocab: Vocab, text: str) -> str:
    """``text`` in the Unicode normal form (NFC or NFD) in which the vocabulary can write the most of its characters: an
    é typed as one code point reads as the e + U+0301 a corpus may hold, and the reverse (the same text to a reader);
    else itself.  Counted per character as a reader sees it, not per distinct code point: that ぐ and げ are unknown
    does not turn a known で into て + U+3099 (one unknown mark in place of two unknown kana)."""
    if not unknown_chars(vocab, text, exact=True):  # (a character <unk> would stand for counts: not held)
        return text
    others = [other for form in ("NFC", "NFD") if (other := unicodedata.normalize(form, text)) != text]
    if not others:  # (most text: nothing to count)
        return text
    best, fewest = text, _unwritable(vocab, text)
    for other in others:
        if (n := _unwritable(vocab, other)) < fewest:
            best, fewest = other, n
    return best


def _unwritable(vocab: Vocab, text: str) -> int:
    """How many of ``text``'s characters (grapheme clusters) hold a code point the vocabulary does not."""
    return sum(1 for g in acrostic_heads(text) if any(c not in vocab for c in g))


def dropped_chars(vocab: Vocab, text: str, exact: bool = False) -> list[str]:
    """The distinct characters :func:`check_known` drops from ``text`` with ``unknown='skip'``; with ``exact``, an
    acrostic's, whole (e + U+0301 when the accent is unknown: the e goes too), its spaces and punctuation not counted,
    being nobody's head."""
    text = vocab_form(vocab, text)
    if not exact:
        return unknown_chars(vocab, text)
    return list(dict.fromkeys(g for g in acrostic_heads(text) if not all(c in vocab for c in g) and not NOT_A_HEAD.fullmatch(g)))


def unknown_chars(vocab: Vocab, text: str, exact: bool = False) -> list[str]:
    """The distinct characters of ``text`` the vocabulary cannot encode (with ``exact``, that it does not hold itself)."""
    return list(dict.fromkeys(c for c in text if c not in vocab)) if exact else vocab.unknown(text)


class InputError(CharlmError):
    """What generation was given and cannot take, and the field it was given in (``style_prefix``: the command line's
    ``--style-prefix``), for the server to name."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def check_options(cfg: SampleConfig, given: Collection[str], name: Callable[[str], str] = str, acrostic: str = "") -> None:
    """Refuse sampling options that would do nothing together.  ``given``: the fields the user set; ``name`` writes a
    field as the user did (``lambda f: "--" + f.replace("_", "-")`` on the command line); ``acrostic``: the one asked for."""
    if acrostic_letters(acrostic) and (length := "length" if "length" in given else "lines" if cfg.lines else None):  # (lines 0: off)
        raise InputError(length, f"{name(length)} and {name('acrostic')} do not go together: an acrostic writes one line "
                                 "per character it is given (give one of them)")
    ignored = [k for k in ("temperature", "top_k", "top_p") if k in given]
    if cfg.greedy and ignored:
        raise InputError(ignored[0], f"{name('greedy')} takes the most likely character every time, so "
                                     f"{' and '.join(map(name, ignored))} would do nothing; give one or the other")
    if cfg.greedy and cfg.num_samples > 1 and "num_samples" in given:  # (three copies of one text, unsaid; from Python, as asked)
        raise InputError("num_samples", f"{name('greedy')} writes the same text every time, so {name('num_samples')} "
                                        f"{cfg.num_samples} would write it {cfg.num_samples} times; give one or the other")
    if cfg.lines and "length" in given:
        raise InputError("lines", f"{name('length')} and {name('lines')} do not go together: {name('lines')} stops after "
                                  "that many lines (give one of them)")
    if "max_line_length" in given and not (cfg.lines or acrostic):  # (an acrostic of spaces gets its own error)
        raise InputError("max_line_length", f"{name('max_line_length')} ends the lines of {name('lines')} and "
                                            f"{name('acrostic')}, and neither is in use: it would do nothing")


@dataclasses.dataclass(frozen=True)
class Inputs:
    """The texts generation reads (:func:`read_inputs`), each in the model's vocabulary."""

    prefix: str
    style_prefix: str
    acrostic: str  # its spaces and punctuation taken out: no line starts with one
    skipped: dict[str, list[str]]  # field: the characters unknown="skip" dropped from it (a field with none left out)


def read_inputs(vocab: Vocab, prefix: str | None, style_prefix: str = "", acrostic: str = "", *, unknown: str = "error",
                default: str = "", newlines: str = "keep", name: Callable[[str], str] = str,
                hint: str = "unknown='skip' drops them") -> Inputs:
    """A prefix (None: ``default``, a run's first known prefix), style prefix and acrostic as :func:`generate` takes
    them, or an :class:`InputError` naming the field: the same checks for `charlm generate` and the server.

    Newlines are read as the model read them in training (``newlines``); ``unknown`` is ``"error"`` or ``"skip"``;
    ``name`` writes a field as the user did and ``hint`` says how to skip unknown characters (:func:`check_options`).
    """
    from .data import normalize

    if prefix and acrostic:
        raise InputError("prefix", f"{name('prefix')} and {name('acrostic')} do not go together: each line of an acrostic "
                                   f"starts with its own character ({name('style_prefix')} sets the mood without being printed)")
    given = normalize(prefix, newlines) if prefix is not None else "" if acrostic else default
    texts = {"prefix": (given, False), "style_prefix": (normalize(style_prefix, newlines), False),
             "acrostic": (acrostic_letters(acrostic), True)}
    known = {}
    for field, (text, exact) in texts.items():
        if field == "acrostic" and acrostic and not text:
            raise InputError("acrostic", ONLY_SPACES)
        known[field] = check_known(vocab, text, field.replace("_", " "), unknown, exact, hint)
    for field in ("prefix", "acrostic"):
        if texts[field][0] and not known[field]:
            raise InputError(field, f"no character of the {field} is in the model's vocabulary"
                                    + (" (whole: an accented letter or an emoji needs every part)" if field == "acrostic" else ""))
    if not (known["style_prefix"] + known["prefix"]) and "\n" not in vocab and " " not in vocab:
        heads = bool(known["acrostic"])
        raise InputError("acrostic" if heads else "prefix", START_NOWHERE.format(
            what="an acrostic's first line" if heads else "the text",
            give=name("style_prefix") if heads else f"{name('prefix')} or {name('style_prefix')}"))
    skipped = {} if unknown != "skip" else {
        field: d for field, (text, exact) in texts.items() if (d := dropped_chars(vocab, text, exact))}
    return Inputs(known["prefix"], known["style_prefix"], known["acrostic"], skipped)


# What heads no line of an acrostic: a character (grapheme cluster) made only of spaces, line breaks, a byte-order mark
# or punctuation (static/app.js counts heads with the same class); symbols such as ～ or ★ do head lines
NOT_A_HEAD = regex.compile(r"[\t\n\v\f\r\x1c-\x1f\x85\p{Z}\ufeff\p{P}]+")


ONLY_SPACES = "the acrostic is only whitespace or punctuation: give the characters its lines start with"


def acrostic_letters(acrostic: str) -> str:
    """An acrostic without its spaces and punctuation, which head no line: 春，夏 is two lines, not three.  Taken out
    as whole characters, so that a keycap emoji (#️⃣) stays one head and an accent stays on its own letter."""
    return "".join(g for g in acrostic_heads(acrostic) if not NOT_A_HEAD.fullmatch(g))


def acrostic_heads(acrostic: str) -> list[str]:
    """The heads of an acrostic's lines: its characters as a reader sees them (grapheme clusters), so that an emoji of
    several code points (👨‍👩‍👧) or a letter with a combining accent heads one line, not one line per code point."""
    return regex.findall(r"\X", acrostic)


CONTEXT_CHUNK = 512  # characters of a prefix read per model call: the copy attention's scores grow with its square

# A model trained without line breaks or spaces (one long line of characters) has nowhere to start a text or a line from.
START_NOWHERE = "nothing to start {what} after: the model has neither a newline nor a space; give {give}"


def show_chars(chars: list[str]) -> str:
    """Characters quoted for a message; an accent or other combining mark (invisible alone) with its code point too."""
    shown = (repr(c) + (f" ({' '.join(f'U+{ord(x):04X}' for x in c)})" if any(unicodedata.category(x).startswith("M") for x in c) else "")
             for c in chars[:20])
    return " ".join(shown) + (" ..." if len(chars) > 20 else "")


def _check_arguments(model, vocab, cfg, **texts) -> None:
    """A call from Python with an argument of the wrong kind (a model from elsewhere, a dict for the config, a number for
    the prefix) is a TypeError naming it, not one from deep inside."""
    for name, value, kind, hint in (("model", model, CharLM, " (charlm.load_model gives one)"), ("vocab", vocab, Vocab, ""),
                                    ("cfg", cfg, SampleConfig, " (e.g. SampleConfig(length=50))")):
        if not isinstance(value, kind):
            raise TypeError(f"{name} must be a {kind.__name__}{hint}, got {type(value).__name__}")
    for name, value in texts.items():
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a str, got {type(value).__name__}")


def check_fits(model, vocab: Vocab) -> None:
    """A model and a vocabulary that are not each other's (two checkpoints' parts mixed up) are refused."""
    if len(vocab) != model.cfg.vocab_size:
        raise CharlmError(f"the vocabulary has {len(vocab):,} entries but the model was made for {model.cfg.vocab_size:,}: "
                          f"they are not from the same checkpoint")


def make_generator(seed: int, device) -> torch.Generator:
    """A private random stream for sampling; ``seed < 0`` draws a fresh one."""
    g = torch.Generator(device=device)
    if seed >= 0:
        g.manual_seed(seed)
    else:
        g.seed()
    return g


@torch.no_grad()
def generate(
    model: CharLM,
    vocab: Vocab,
    prefix: str,
    cfg: SampleConfig,
    *,
    style_prefix: str = "",
    acrostic: str = "",
    generator: torch.Generator | None = None,
) -> Iterator[list[str]]:
    """Yield, step by step, one string per sample: first the prefix, then one character each (``""`` once a sample is done).

    Stops after ``cfg.length`` characters, or ``cfg.lines`` lines, or one line per character of ``acrostic``
    (藏头; its spaces and punctuation left out), each line starting with that character (``cfg.length`` does not
    apply then: each line ends at a line break or ``cfg.max_line_length``).  Characters
    outside the vocabulary are an error (:func:`check_known` with ``"skip"`` drops them first).
    Without a ``generator``, ``cfg.seed`` seeds one (the same seed gives the same text as
    ``charlm generate --seed``); with neither, torch's global random stream is used.
    """
    _check_arguments(model, vocab, cfg, prefix=prefix, style_prefix=style_prefix, acrostic=acrostic)
    if prefix and acrostic:  # (read_inputs refuses the pair too, naming the flags)
        raise InputError("prefix", "prefix and acrostic do not go together: each line of an acrostic starts with its own "
                                   "character (style_prefix sets the mood without being printed)")
    check_options(cfg, (), acrostic=acrostic)  # lines with an acrostic
    check_fits(model, vocab)
    if acrostic and not (acrostic := acrostic_letters(acrostic)):  # (as read_inputs leaves it: spaces and punctuation head no line)
        raise InputError("acrostic", ONLY_SPACES)
    prefix, style_prefix, acrostic = (check_known(vocab, text, what, exact=exact) for what, text, exact in  # (in the vocabulary's Unicode form)
                                      (("prefix", prefix, False), ("style prefix", style_prefix, False), ("acrostic", acrostic, True)))
    if generator is None and cfg.seed >= 0:
        generator = make_generator(cfg.seed, model.decoder.weight.device)
    was_training = model.training
    model.eval()
    try:
        yield from _generate(model, vocab, prefix, cfg, style_prefix, acrostic, generator)
    finally:
        model.train(was_training)


def _generate(model, vocab, prefix, cfg, style_prefix, acrostic, generator):
    device = model.decoder.weight.device
    n = cfg.num_samples
    newline = vocab.stoi.get("\n")
    heads = [[vocab.stoi[c] for c in head] for head in acrostic_heads(acrostic)]
    # The style prefix is the text before: what is written starts a line after it (a space, for a model that read its
    # line breaks as spaces), unless it ends with one already.
    brk = "\n" if newline is not None else " " if " " in vocab.stoi else ""
    lead = style_prefix + ("" if style_prefix.endswith(brk) or not style_prefix else brk)
    if heads:
        # An acrostic starts at the beginning of a line: its first head is the first character.
        context = lead  # (nothing: from the start of a line, as below)
        prefix = ""
    else:
        context = lead + prefix
    if not context:  # nothing given: start where a line starts, or a word (text trained with --newlines space)
        context = "\n" if newline is not None else " " if " " in vocab.stoi else ""
        if not context:
            raise CharlmError(START_NOWHERE.format(what="an acrostic's first line" if heads else "the text",
                                                   give="--style-prefix" if heads else "--prefix or --style-prefix"))

    ids = torch.tensor(vocab.encode(context), device=device).expand(n, -1)  # (n, len)
    state = None
    for s in range(0, ids.shape[1], CONTEXT_CHUNK):  # the context is read once, a piece at a time, its state carried
        logits, state = model(ids[:, s : s + CONTEXT_CHUNK], state)
    if heads:
        max_chars = sum(len(h) - 1 for h in heads) + len(heads) * (cfg.max_line_length + 1)  # a head's code points are written whole
    else:
        # a cut line adds its newline; a blank line before it, one more (blank lines do not count as lines)
        max_chars = cfg.lines * (cfg.max_line_length + 2) if cfg.lines else cfg.length
    step = one_step(model, state, n * max_chars)
    # a model trained with --unk never writes "<unk>": it stands for no one character (unless it is all there is)
    unk = vocab.stoi[UNK] if vocab.unk and len(vocab) > 1 else None
    if isinstance(step, _LeanStep) and numpy_sampling.fits(step, cfg):  # the CPU's fast path: the same characters
        sampler = numpy_sampling.Sampler(step, logits[:, -1], cfg, generator, max_chars, unk)
    else:
        sampler = _TorchSampler(step, logits[:, -1], cfg, generator, unk)
    if prefix:
        yield [prefix] * n
    itos = vocab.itos

    if not (cfg.lines or heads):
        # Plain --length: nothing to track but the characters; one read back per character, for streaming.
        for i in range(max_chars):
            ids = sampler.draw()
            yield [itos[t] for t in ids]
            if i < max_chars - 1:
                sampler.step(ids)
        return
    # --lines or --acrostic: per sample, its line's length, its lines so far, whether it is done.
    line_len, lines_done, done = [len(prefix.rsplit("\n", 1)[-1])] * n, [0] * n, [False] * n  # the prefix's last line counts
    forced = [list(heads[0]) if heads else [] for _ in range(n)]  # what a sample must write next: its line's head
    wanted = len(heads) if heads else cfg.lines
    space, wrap_from = vocab.stoi.get(" "), cfg.max_line_length * 3 // 4
    for i in range(max_chars):
        drawn = sampler.draw()
        ids = list(drawn)
        for j in range(n):
            if forced[j]:  # an acrostic line starts with its own character (an emoji of several code points: all of them)
                ids[j] = forced[j].pop(0)
            elif line_len[j] >= cfg.max_line_length and (newline if newline is not None else space) is not None:
                # a line that runs too long is ended, so that --lines and --acrostic always finish: with a line break
                # the model reads, or (no newlines in its vocabulary) a space, shown as the break
                ids[j] = newline if newline is not None else space
            elif newline is not None and ids[j] == space and line_len[j] >= max(wrap_from, 1):  # (never an empty line)
                # near the limit, a space the model drew ends the line instead (as a line break the model reads):
                # prose, whose paragraphs run past the limit, is ended between words rather than inside one
                ids[j] = newline
        if newline is not None:
            is_break = [t == newline for t in ids]
            yield ["" if d else itos[t] for t, d in zip(ids, done)]
        else:  # no newline to write: a line ends at a space once it is long enough (shown as the line break); cut, only without one
            is_break = [(t == space and x + 1 > wrap_from) or (space is None and x + 1 >= cfg.max_line_length)
                        for t, x in zip(ids, line_len)]
            yield ["" if d else "\n" if b and t == space else itos[t] + "\n" if b else itos[t] for t, d, b in zip(ids, done, is_break)]
        for j in range(n):
            # a line break (or the space shown as one) with nothing before it on its line: a blank line, no line of the text
            # (without either in the vocabulary a line is cut after its last character, which is text: it counts)
            blank = line_len[j] == 0 and ids[j] in (newline, space)
            lines_done[j] += is_break[j] and not done[j] and not blank
            line_len[j] = 0 if is_break[j] else line_len[j] + 1
            if is_break[j] and heads:
                forced[j] = list(heads[min(lines_done[j], len(heads) - 1)])
            done[j] = done[j] or lines_done[j] >= wanted
        if i == max_chars - 1 or all(done):
            return
        sampler.step(drawn if ids == drawn else ids)


class _TorchSampler:
    """``draw() -> ids`` (a list of n) from the last logits, ``step(ids)`` reads them: :func:`choose` and a step function."""

    def __init__(self, step, logits: torch.Tensor, cfg: SampleConfig, generator, banned: int | None = None):
        self.fn, self.logits, self.cfg, self.generator, self.banned = step, logits, cfg, generator, banned
        self.single = isinstance(step, _LeanStep) and logits.shape[0] == 1  # the lean step takes the id as an int too
        self.nxt = self.ids = None

    def draw(self) -> list[int]:
        logits = self.logits
        if self.banned is not None:  # (its probability goes to the others, as if it were not in the vocabulary)
            logits = logits.clone()
            logits[:, self.banned] = float("-inf")
        self.nxt = choose(logits, self.cfg, self.generator)
        self.ids = self.nxt.tolist()  # the one read back per character, for streaming
        return self.ids

    def step(self, ids: list[int]) -> None:
        nxt = self.nxt if ids is self.ids else torch.tensor(ids, device=self.nxt.device)  # changed by --lines/--acrostic
        self.logits = self.fn(nxt, ids[0]) if self.single else self.fn(nxt)


def one_step(model, state, chars: int = 0):
    """``step(ids (n,)) -> logits (n, vocab)``: the model read one character further, its state kept inside.

    For an eval-mode :class:`CharLM` over ``nn.LSTM``, ``nn.GRU`` or ``nn.RNN`` (and no hooks
    on it) the step is written out in a handful of tensor calls: calling the module for one
    time step costs far more in dispatch than the arithmetic (2 ms a character through
    oneDNN's LSTM on the CPU, against about 0.2 ms here).  ``chars`` (samples x characters
    to come) decides whether a table of every character's input projection pays for itself.
    Any other model is called as it is.
    """
    rnn = getattr(model, "rnn", None)
    plain = (not model.training and isinstance(rnn, (nn.LSTM, nn.GRU, nn.RNN)) and rnn.batch_first
             and not getattr(rnn, "proj_size", 0) and not rnn.bidirectional and rnn.bias
             and not (model._forward_hooks or model._forward_pre_hooks or rnn._forward_hooks or rnn._forward_pre_hooks))
    if not plain:
        box = [state]

        def call(ids):
            logits, box[0] = model(ids[:, None], box[0])
            return logits[:, -1]

        return call
    lean = _LeanStep(model, state, chars)
    if lean.dec_w.device.type == "cuda" and chars >= GRAPH_MIN_CHARS:
        try:
            return _GraphStep(lean)
        except RuntimeError as e:  # a GPU or build that cannot capture: the same step, uncaptured
            warnings.warn(f"generation: the CUDA graph could not be captured ({str(e).splitlines()[0]}); stepping without it")
            return _LeanStep(model, state, chars)
    return lean


GRAPH_MIN_CHARS = 64  # characters to come (samples x length) from which capturing the step pays for itself


class _GraphStep:
    """A lean step captured once in a CUDA graph and replayed for every character (on a GPU).

    The ids go in through a static buffer and the state (hidden state, a copy ring's keys,
    ids, biases and slot) is updated in place inside the graph, so a character costs one
    graph launch instead of a dozen or more kernel launches; the draw stays outside, eager.
    On the CPU, where nothing can be captured, the same body is called directly, which lets
    the tests check the protocol.
    """

    def __init__(self, lean: _LeanStep):
        self.lean = lean
        lean.h = [h.clone() for h in lean.h]  # static buffers of this step's own
        if lean.kind == "lstm":
            lean.c = [c.clone() for c in lean.c]
        self.h, self.c = list(lean.h), list(lean.c) if lean.kind == "lstm" else []
        device = lean.dec_w.device
        self.ids = torch.zeros(lean.h[0].shape[0], dtype=torch.long, device=device)
        self.out = None
        cuda = device.type == "cuda"
        kept = [t.clone() for t in self._mutable()]
        if cuda:  # a warm-up step on a side stream, as capture wants; then the state is put back
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                self._body()
            torch.cuda.current_stream(device).wait_stream(side)
        else:
            self._body()
        for t, k in zip(self._mutable(), kept):
            t.copy_(k)
        if not cuda:
            self.graph = self._body
            return
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._body()
        self.graph = graph.replay

    def _mutable(self) -> list[torch.Tensor]:
        ring = self.lean.ring
        return self.h + self.c + ([] if ring is None else [ring.keys, ring.nxt, ring.bias, ring.slot])

    def _body(self) -> None:
        out = self.lean(self.ids)
        for static, new in ((self.h, self.lean.h), (self.c, getattr(self.lean, "c", []))):
            for k, s in enumerate(static):
                s.copy_(new[k])
                new[k] = s  # the next step reads the static buffer again
        self.out = out

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        self.ids.copy_(ids)
        self.graph()
        return self.out


class _LeanStep:
    """One time step of embedding -> stacked LSTM/GRU/RNN -> decoder, from the module's own weights.

    An LSTM layer is ``gates = [x, h] @ [W_ih; W_hh]^T + b`` (one matrix product, its weight
    laid out (in + hidden, 4 hidden) so that it streams row by row), then the gates.  When
    enough characters are to come, or the input is one-hot, the first layer's input part is
    looked up instead: ``table = embedding @ W_ih^T + b`` (vocab, 4 hidden), computed once.
    """

    def __init__(self, model, state, chars: int = 0):
        rnn = model.rnn
        self.kind = "lstm" if isinstance(rnn, nn.LSTM) else "gru" if isinstance(rnn, nn.GRU) else rnn.nonlinearity
        self.emb = model.embedding.weight
        one_hot = model.cfg.embedding_size == 0  # the embedding is the identity: the seed's one-hot input
        self.table = None
        self.layers = []
        for k in range(rnn.num_layers):
            w_ih, w_hh = getattr(rnn, f"weight_ih_l{k}"), getattr(rnn, f"weight_hh_l{k}")
            b_ih, b_hh = getattr(rnn, f"bias_ih_l{k}"), getattr(rnn, f"bias_hh_l{k}")
            if self.kind != "lstm":
                self.layers.append((w_ih, w_hh, b_ih, b_hh))
            elif k == 0 and (one_hot or chars * 2 >= self.emb.shape[0]):
                b = b_ih + b_hh
                self.table = (w_ih.t() + b).contiguous() if one_hot else torch.addmm(b, self.emb, w_ih.t())  # (vocab, 4 hidden)
                self.layers.append((w_hh.t().contiguous(), None))
            else:
                self.layers.append((torch.cat([w_ih, w_hh], 1).t().contiguous(), b_ih + b_hh))
        self.dec_w = model.decoder.weight.t().contiguous()  # (hidden, vocab)
        self.dec_b = model.decoder.bias
        self.hidden = rnn.hidden_size
        state, memory = model.split_state(state)
        self.ring = CopyRing(model.copy, memory) if memory is not None else None
        if self.kind == "lstm":
            self.h, self.c = list(state[0].unbind(0)), list(state[1].unbind(0))  # per layer (n, hidden)
        else:
            self.h = list(state.unbind(0))

    def __call__(self, ids: torch.Tensor, tok: int | None = None) -> torch.Tensor:
        """Logits (n, vocab) after reading ``ids`` (n,); ``tok`` is the id as a Python int when n is 1 (saves a gather)."""
        if self.kind != "lstm":
            x = self.emb.index_select(0, ids)  # (n, width)
            cell = torch.gru_cell if self.kind == "gru" else torch.rnn_tanh_cell if self.kind == "tanh" else torch.rnn_relu_cell
            for k, layer in enumerate(self.layers):
                x = self.h[k] = cell(x, self.h[k], *layer)
            return self._out(ids, x)
        H = self.hidden
        for k, (w, b) in enumerate(self.layers):
            if b is None:  # the first layer, its input part looked up
                row = self.table.index_select(0, ids) if tok is None else self.table[tok : tok + 1]
                gates = torch.addmm(row, self.h[k], w)  # (n, 4 hidden): i, f, g, o
            else:
                x = self.emb.index_select(0, ids) if k == 0 else x
                gates = torch.addmm(b, torch.cat([x, self.h[k]], 1), w)
            i, f, _, o = gates.sigmoid().chunk(4, 1)  # one call for the four views; g is taken from the gates below
            c = torch.addcmul(f * self.c[k], i, gates[:, 2 * H : 3 * H].tanh())
            x = self.h[k] = o * c.tanh()
            self.c[k] = c
        return self._out(ids, x)

    def _out(self, ids: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        logits = torch.addmm(self.dec_b, x, self.dec_w)  # (n, vocab)
        return logits if self.ring is None else self.ring(ids, x, logits)


def sample_text(model: CharLM, vocab: Vocab, prefix: str, cfg: SampleConfig, **kw) -> list[str]:
    """The whole samples as strings (no streaming)."""
    out: list[str] = []
    for step in generate(model, vocab, prefix, cfg, **kw):  # (its first step, the prefix, is there once the call is checked)
        out = [a + b for a, b in zip(out, step)] if out else step
    return out
