"""charlm: character-level LSTM language models — train on your text, write from a prefix, score any text.

The names a Python user needs most are importable from here (``from charlm import Trainer, load_model``); each
lives in its own module (:mod:`charlm.train`, :mod:`charlm.checkpoint`, ...) and is imported on first use, so that
``import charlm`` (and ``charlm --help``) does not load torch.
"""

import functools
from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:  # what a type checker and an editor see; at run time each is imported on first use (below)
    from .checkpoint import load, load_model
    from .config import ModelConfig, SampleConfig, TrainConfig
    from .data import checkpoint_corpus, corpus_from_text, load_corpus
    from .errors import CharlmError
    from .inspector import analyse, inspect_checkpoint
    from .model import CharLM
    from .presets import train_config
    from .sampling import generate, sample_text
    from .train import Trainer, TrainingInterrupted, evaluate, model_config_for, surprisal
    from .vocab import Vocab

# name: the module that defines it
_EXPORTS = {
    "CharlmError": "errors",
    "ModelConfig": "config", "TrainConfig": "config", "SampleConfig": "config",
    "Vocab": "vocab",
    "load_corpus": "data", "corpus_from_text": "data", "checkpoint_corpus": "data",
    "CharLM": "model",
    "Trainer": "train", "TrainingInterrupted": "train", "evaluate": "train", "surprisal": "train",
    "model_config_for": "train", "train_config": "presets",
    "load": "checkpoint", "load_model": "checkpoint",
    "generate": "sampling", "sample_text": "sampling",
    "analyse": "inspector", "inspect_checkpoint": "inspector",
}

__all__ = [  # (written out, for the tools that read it without running it)
    "__version__", "CharlmError", "ModelConfig", "TrainConfig", "SampleConfig", "Vocab", "load_corpus", "corpus_from_text",
    "checkpoint_corpus", "CharLM", "Trainer", "TrainingInterrupted", "evaluate", "surprisal", "model_config_for",
    "train_config", "load", "load_model",
    "generate", "sample_text", "analyse", "inspect_checkpoint",
]


@functools.cache
def _modules() -> frozenset[str]:
    """The package's modules, attributes too (charlm.transfer.fine_tune_setup after import charlm), each imported on
    first use: the files of the package, listed when first asked for."""
    import pkgutil

    return frozenset(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def __getattr__(name: str) -> object:
    from importlib import import_module

    if name in _modules():
        return import_module(f".{name}", __name__)  # (which sets the attribute)
    if name not in _EXPORTS:
        raise AttributeError(f"module 'charlm' has no attribute {name!r}")
    value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # once found, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | _modules())
