"""Configuration as data: frozen, validated dataclasses, written into every checkpoint.

One name end to end: the field ``hidden_size`` is the flag ``--hidden-size`` and the
checkpoint key ``hidden_size``.  A preset (``presets.py``) is only a dict of field values.
"""

from __future__ import annotations

import codecs
import dataclasses
import math
import numbers
import os
import re
from dataclasses import dataclass, field
from typing import Any

CELLS = ("lstm", "gru", "rnn", "scratch")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "plateau")
SAMPLINGS = ("consecutive", "random")
NEWLINES = ("keep", "space")
VOCAB_FROM = ("all", "train")
PRECISIONS = ("fp32", "bf16", "fp16")


# A seed, a training's or a sampling's: the CPU's torch generator reads only a seed's low 32 bits, so that a larger one
# would make the run or the text of a smaller (2**32 that of 0); the sampling seeds drawn are below 2**31
SEED_MAX = SAMPLE_SEED_MAX = 2**32 - 1
MIN_TEMPERATURE = 1e-3  # float32 logits divided by much less overflow; as low as this is greedy already
MAX_TEMPERATURE = 100.0  # as high as this is a uniform draw already (and 1e39 overflows float32)


def _help(text: str, **extra: Any) -> dict:
    return {"help": text, **extra}


def encoding_problem(encoding: str, unknown_ok: bool = False) -> str | None:
    """Why ``encoding`` cannot decode text (an unknown name, or a codec of bytes to bytes such as base64), or None;
    ``unknown_ok``: a name this machine does not know is no problem (another machine's: mbcs is Windows's alone)."""
    try:
        codecs.lookup(encoding)
    except LookupError:
        return None if unknown_ok else f"unknown encoding {encoding!r}"
    try:
        b"a".decode(encoding)  # (not b"": Python decodes nothing to "" without asking the codec)
    except LookupError:  # base64, hex, rot13, zlib: codecs, but not of bytes to text
        return f"{encoding!r} is not an encoding of text"
    except UnicodeError:  # a text encoding that "a" alone is not (utf-16: half a character)
        pass
    return None


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


_TYPES = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "text",
          "tuple": "a list of texts", "int | None": "a whole number or nothing"}


def _check_types(cfg) -> None:
    """Each field of the type it declares (a checkpoint's JSON may say anything): checked before the ranges."""
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if f.type == "int | None" and v is None:
            continue
        kind = "int" if f.type == "int | None" else f.type
        # a NumPy number (a sweep's np.arange, np.linspace) as the Python one, which JSON writes; a float32 as the
        # decimal it shows (np.float32(1e-3) is 0.0010000000474974513 as a float, '0.001' as text)
        numpy = type(v).__module__ == "numpy"
        if kind in ("int", "float") and type(v) not in (int, float, bool) and isinstance(v, numbers.Real):
            if isinstance(v, numbers.Integral):
                v = int(v)
            elif kind == "float":
                v = float(str(v)) if numpy else float(v)
        elif kind == "bool" and numpy and isinstance(getattr(v, "item", lambda: None)(), bool):  # np.True_
            v = v.item()
        if v is not getattr(cfg, f.name):
            object.__setattr__(cfg, f.name, v)
        ok = {
            "int": isinstance(v, int) and not isinstance(v, bool),
            "float": isinstance(v, (int, float)) and not isinstance(v, bool),
            "bool": isinstance(v, bool),
            "str": isinstance(v, str),
            "tuple": isinstance(v, (tuple, list)) and all(isinstance(x, str) for x in v),
        }[kind]
        _check(ok, f"{f.name} must be {_TYPES[f.type]}, got {v!r}")
        for text in [v] if kind == "str" else v if kind == "tuple" else []:  # stored as JSON text: a byte that is not
            # UTF-8 (a path or prefix typed in another encoding: surrogateescape) failed the first save, after an epoch
            if lone_surrogate(text):
                _check(False, f"{f.name}: {_shown(text)} is not valid UTF-8, and a checkpoint stores it as text"
                              + ("; rename it" if f.name in ("data", "out", "init_from") else ""))


def lone_surrogate(text: str) -> re.Match | None:
    """Where ``text`` holds a lone surrogate, no character (bytes decoded with errors='surrogateescape', half of a
    UTF-16 pair), which UTF-8 cannot write; None where it holds none."""
    return _SURROGATE.search(text)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _shown(text: str) -> str:
    """A text with surrogates, printable: the bytes a file name held (\\xe9), or the lone surrogate (\\ud83d)."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _check_finite(cfg) -> None:
    """No infinite or NaN number (checked after the ranges, whose messages say more where they apply)."""
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        _check(not isinstance(v, float) or math.isfinite(v), f"{f.name} must be a finite number, got {v}")


def _check_choice(name: str, value: str, choices: tuple) -> None:
    _check(value in choices, f"{name} must be one of {', '.join(choices)}, got {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    """The language model: embedding -> recurrent layers -> linear layer to the vocabulary."""

    vocab_size: int = field(default=0, metadata=_help("set from the corpus", cli=False))
    cell: str = field(default="lstm", metadata=_help("recurrent cell", choices=CELLS))
    embedding_size: int = field(
        default=256,
        metadata=_help("embedding width; 0 = one-hot input, exactly the seed's model"),
    )
    hidden_size: int = field(default=256, metadata=_help("hidden units per layer"))
    num_layers: int = field(default=1, metadata=_help("stacked recurrent layers"))
    dropout: float = field(default=0.0, metadata=_help("dropout on embeddings, between layers and before the output"))
    embed_dropout: float = field(default=0.0, metadata=_help("drop whole characters' embeddings (AWD-LSTM's embedding dropout)"))
    locked_dropout: bool = field(default=False, metadata=_help("one dropout mask per sequence for all time steps (variational dropout) instead of one per step, "
                                                                  "on the embeddings and before the output layer; between layers --dropout stays one mask per step"))
    weight_drop: float = field(default=0.0, metadata=_help("DropConnect on the hidden-to-hidden weights (AWD-LSTM's weight drop)"))
    tie_weights: bool = field(
        default=False, metadata=_help("share the embedding and output weights (embedding_size must equal hidden_size)")
    )
    copy_window: int = field(default=0, metadata=_help("copy attention over the last N characters read (a pointer: repeats choruses); 0 = off"))
    copy_dim: int = field(default=64, metadata=_help("width of the copy attention's keys and queries"))

    def __post_init__(self) -> None:
        _check_types(self)
        _check_choice("cell", self.cell, CELLS)
        # upper bounds far beyond any model that trains on one machine: past them is a typo, not a model
        _check(0 <= self.vocab_size <= 2**22, f"vocab_size must be from 0 to {2**22:,}, got {self.vocab_size}")
        _check(0 <= self.embedding_size <= 2**16, f"embedding_size must be from 0 to {2**16:,}, got {self.embedding_size}")
        _check(1 <= self.hidden_size <= 2**16, f"hidden_size must be from 1 to {2**16:,}, got {self.hidden_size}")
        _check(1 <= self.num_layers <= 64, f"num_layers must be from 1 to 64, got {self.num_layers}")
        _check(0 <= self.copy_window <= 2**16, f"copy_window must be from 0 to {2**16:,}, got {self.copy_window}")
        _check(1 <= self.copy_dim <= 2**12, f"copy_dim must be from 1 to {2**12:,}, got {self.copy_dim}")
        for name in ("dropout", "embed_dropout", "weight_drop"):
            value = getattr(self, name)
            _check(0.0 <= value < 1.0, f"{name} must be in [0, 1), got {value}")
        if self.tie_weights:
            _check(
                self.embedding_size == self.hidden_size,
                f"tie_weights needs embedding_size == hidden_size, got {self.embedding_size} and {self.hidden_size}"
                f": add --no-tie-weights (tie_weights=False), or give both the same size",
            )
        _check_finite(self)


@dataclass(frozen=True)
class TrainConfig:
    """Everything about reading the corpus and training on it."""

    data: str = field(default="", metadata=_help("text file or folder of .txt files; empty = the bundled Jay Chou lyrics"))
    encoding: str = field(default="utf-8", metadata=_help("text encoding of --data (gb18030, big5, ...)"))
    newlines: str = field(default="keep", metadata=_help("keep newlines as tokens, or replace them by spaces as the seed does", choices=NEWLINES))
    val_fraction: float = field(default=0.1, metadata=_help("the last fraction of characters held out for validation; 0 = none"))
    limit_chars: int = field(default=0, metadata=_help("train on only the first N characters of the training part; 0 = all"))
    vocab_from: str = field(default="all", metadata=_help("build the vocabulary from the whole text or the training part only", choices=VOCAB_FROM))
    min_freq: int = field(default=1, metadata=_help("characters seen fewer times in the training part become <unk> (needs --unk)"))
    unk: bool = field(default=False, metadata=_help("add an <unk> token for rare and unseen characters"))
    init_from: str = field(default="", metadata=_help("start from this checkpoint's weights (fine-tuning); new characters get new rows"))
    sampling: str = field(default="consecutive", metadata=_help("minibatch sampling: consecutive carries the state, random resets it", choices=SAMPLINGS))
    batch_size: int = field(default=32, metadata=_help("sequences per minibatch"))
    num_steps: int = field(default=35, metadata=_help("time steps per minibatch (truncated BPTT length)"))
    epochs: int = field(default=20, metadata=_help("passes over the training text"))
    optimizer: str = field(default="adam", metadata=_help("optimizer", choices=OPTIMIZERS))
    lr: float = field(default=1e-3, metadata=_help("learning rate"))
    weight_decay: float = field(default=0.0, metadata=_help("weight decay"))
    momentum: float = field(default=0.0, metadata=_help("momentum (sgd only)"))
    label_smoothing: float = field(default=0.0, metadata=_help("spread this share of each target's probability over the whole vocabulary in the training loss"))
    grad_clip: float = field(default=1.0, metadata=_help("clip gradients to this global L2 norm; 0 = off"))
    schedule: str = field(default="constant", metadata=_help("learning-rate schedule", choices=SCHEDULES))
    warmup_steps: int = field(default=0, metadata=_help("raise the learning rate linearly over the first N steps (constant and cosine schedules)"))
    min_lr: float = field(default=0.0, metadata=_help("lowest learning rate of the cosine schedule"))
    plateau_factor: float = field(default=0.5, metadata=_help("plateau schedule: multiply the rate by this"))
    plateau_patience: int = field(default=1, metadata=_help("plateau schedule: validations without improvement before lowering (epochs, unless --eval-every)"))
    early_stop: int = field(default=0, metadata=_help("stop after N validations without a better loss; 0 = off"))
    eval_every: int = field(default=0, metadata=_help("validate, log and checkpoint every N steps instead of after every epoch (for big corpora or fast GPUs); 0 = each epoch"))
    max_minutes: float = field(default=0.0, metadata=_help("stop after this many minutes of training steps, counted over the whole run, resumes included (validating first); 0 = no limit"))
    prefixes: tuple = field(default=("分开", "不分开"), metadata=_help("prefixes to sample from during training (\\n in one stands for a line break)", nargs="+"))
    sample_every: int = field(default=0, metadata=_help("print samples every N epochs (and after the last); 0 = only after the last"))
    sample_length: int = field(default=50, metadata=_help("characters per training sample"))
    sample_greedy: bool = field(default=False, metadata=_help("training samples take the most likely character, as the seed does"))
    seed: int = field(default=0, metadata=_help("random seed for initialisation, batching and dropout, 0 to 4294967295"))
    device: str = field(default="auto", metadata=_help("auto, cpu, cuda or cuda:N"))
    precision: str = field(default="fp32", metadata=_help("arithmetic of the training step: fp32, or autocast to bf16 (GPU, or a CPU with bfloat16 instructions: AVX512-BF16 or AMX) or fp16 (GPU, with a gradient scaler)", choices=PRECISIONS))
    cuda_graph: bool = field(default=False, metadata=_help("capture the whole training step in one CUDA graph and replay it (GPU only; fp32 or bf16)"))
    out: str = field(default="runs/charlm", metadata=_help("output folder for checkpoints, metrics and plots"))

    def __post_init__(self) -> None:
        for name in ("data", "out", "init_from"):  # a pathlib.Path is as good as its text (which the checkpoint stores)
            if isinstance(getattr(self, name), os.PathLike):
                object.__setattr__(self, name, os.fspath(getattr(self, name)))
        _check_types(self)
        _check_choice("newlines", self.newlines, NEWLINES)
        _check_choice("vocab_from", self.vocab_from, VOCAB_FROM)
        _check_choice("sampling", self.sampling, SAMPLINGS)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_choice("precision", self.precision, PRECISIONS)
        _check(re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", self.device) is not None, f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        # a codec of bytes to bytes (base64) is refused here; an unknown name when the text is read, as what is known
        # depends on the machine (mbcs is Windows's alone), and a checkpoint must load anywhere
        _check((problem := encoding_problem(self.encoding, unknown_ok=True)) is None, f"encoding: {problem}")
        _check(not (self.cuda_graph and self.device == "cpu"), "cuda_graph needs a CUDA GPU, but device is cpu; leave --cuda-graph out (cuda_graph=False)")
        _check(0.0 <= self.val_fraction < 1.0, f"val_fraction must be in [0, 1), got {self.val_fraction}")
        _check(self.limit_chars >= 0, f"limit_chars must be >= 0, got {self.limit_chars}")
        _check(self.min_freq >= 1, f"min_freq must be >= 1, got {self.min_freq}")
        _check(self.min_freq == 1 or self.unk, "min_freq > 1 needs --unk (unk=True: rare characters become <unk>)")
        _check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        _check(self.num_steps >= 1, f"num_steps must be >= 1, got {self.num_steps}")
        _check(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        _check(self.lr > 0, f"lr must be > 0, got {self.lr}")
        _check(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        _check(self.momentum >= 0, f"momentum must be >= 0, got {self.momentum}")
        _check(0.0 <= self.label_smoothing < 1.0, f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        _check(self.grad_clip >= 0, f"grad_clip must be >= 0, got {self.grad_clip}")
        _check(self.min_lr >= 0, f"min_lr must be >= 0, got {self.min_lr}")
        _check(self.min_lr <= self.lr or self.schedule != "cosine", f"min_lr ({self.min_lr:g}) must not be above lr ({self.lr:g}): "
                                                                   "the cosine schedule falls from lr to min_lr (lower --min-lr too)")
        _check(self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}")
        _check(self.warmup_steps == 0 or self.schedule != "plateau", "warmup_steps works with the constant and cosine schedules, not plateau")
        _check(0 < self.plateau_factor < 1, f"plateau_factor must be in (0, 1), got {self.plateau_factor}")
        _check(self.plateau_patience >= 0, f"plateau_patience must be >= 0, got {self.plateau_patience}")
        _check(self.early_stop >= 0, f"early_stop must be >= 0, got {self.early_stop}")
        _check(self.eval_every >= 0, f"eval_every must be >= 0, got {self.eval_every}")
        _check(self.max_minutes >= 0, f"max_minutes must be >= 0, got {self.max_minutes}")
        _check(self.sample_every >= 0, f"sample_every must be >= 0, got {self.sample_every}")
        _check(self.sample_length >= 1, f"sample_length must be >= 1, got {self.sample_length}")
        _check(bool(self.out), "out must name a folder")
        _check(0 <= self.seed <= SEED_MAX, f"seed must be from 0 to {SEED_MAX}, got {self.seed}")
        object.__setattr__(self, "prefixes", tuple(self.prefixes))
        _check_finite(self)


@dataclass(frozen=True)
class SampleConfig:
    """How to draw characters from a trained model."""

    length: int = field(default=100, metadata=_help("characters to generate after the prefix"))
    lines: int = field(default=0, metadata=_help("stop after N lines instead of --length characters; 0 = off"))
    greedy: bool = field(default=False, metadata=_help("always take the most likely character (the seed's way)"))
    temperature: float = field(default=1.0, metadata=_help("> 1 more surprising, < 1 more conservative"))
    top_k: int | None = field(default=None, metadata=_help("sample among the k most likely characters", default_text="all"))
    top_p: float = field(default=1.0, metadata=_help("sample from the smallest set whose probability reaches p (nucleus)"))
    num_samples: int = field(default=1, metadata=_help("independent samples, drawn as one batch"))
    seed: int = field(default=-1, metadata=_help("random seed, 0 to 4294967295; the same seed gives the same text; -1 = random"))
    max_line_length: int = field(default=64, metadata=_help("--lines/--acrostic: end a line after this many characters at most, the "
                                                                  "prefix's on its last line counted; from 3/4 of this on (rounded down), a space the model "
                                                                  "writes ends it, so that words stay whole (a model without newlines: shown "
                                                                  "as the line break)"))

    def __post_init__(self) -> None:
        _check_types(self)
        _check(self.length >= 1, f"length must be >= 1, got {self.length}")
        _check(self.lines >= 0, f"lines must be >= 0, got {self.lines}")
        _check(MIN_TEMPERATURE <= self.temperature <= MAX_TEMPERATURE,
               f"temperature must be a number from {MIN_TEMPERATURE:g} to {MAX_TEMPERATURE:g}, got {self.temperature:g} "
               "(--greedy takes the most likely character every time)")
        _check(self.top_k is None or self.top_k >= 1, f"top_k must be >= 1 (leave it out to sample among all characters), got {self.top_k}")
        _check(0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}")
        _check(1 <= self.num_samples <= 4096, f"num_samples must be from 1 to 4096, got {self.num_samples}")
        _check(self.max_line_length >= 1, f"max_line_length must be >= 1, got {self.max_line_length}")
        _check(-1 <= self.seed <= SAMPLE_SEED_MAX, f"seed must be -1 (random) or from 0 to {SAMPLE_SEED_MAX}, got {self.seed}")
        _check_finite(self)


def field_names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def to_dict(cfg) -> dict:
    d = dataclasses.asdict(cfg)
    for k, v in d.items():
        if isinstance(v, tuple):
            d[k] = list(v)
    return d


def from_dict(cls, d: dict):
    """Build ``cls`` from a plain dict, ignoring keys it does not know (older or newer checkpoints)."""
    names = field_names(cls)
    return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names})


def _document_fields(cls) -> None:
    """Append each field's help (the one ``charlm train --help`` shows) to the class's docstring, for help()."""
    lines = [f"    {f.name} = {f.default if f.default_factory is dataclasses.MISSING else f.default_factory()!r}: "
             f"{f.metadata.get('help', '')}" for f in dataclasses.fields(cls)]
    cls.__doc__ = (f"{cls.__doc__}\n\nFields (name = default: meaning; the command line's flags have these names, - for _):\n"
                   + "\n".join(lines))


for _cls in (ModelConfig, TrainConfig, SampleConfig):
    _document_fields(_cls)
