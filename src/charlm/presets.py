"""Named sets of config values.  Any flag given on the command line overrides them."""

from __future__ import annotations

from .errors import CharlmError

PRESETS: dict[str, dict] = {
    # The seed (Dive-into-DL's LSTM chapter): the first 10,000 characters with newlines
    # replaced by spaces, 256 hidden units, 35 steps, batch 32, 160 epochs, Adam, clipping
    # at 1e-2, greedy samples from 分开 and 不分开 every 40 epochs.  The seed writes the
    # learning rate as 1e2, a typo that diverges under Adam; D2L's LSTM chapter uses 1e-2.
    # The vocabulary comes from those 10,000 characters only (1,027 of them), so the
    # held-out text is scored over the characters that vocabulary covers.
    "seed": dict(
        newlines="space",
        limit_chars=10_000,
        vocab_from="train",
        hidden_size=256,
        embedding_size=256,
        num_layers=1,
        dropout=0.0,
        batch_size=32,
        num_steps=35,
        epochs=160,
        optimizer="adam",
        lr=1e-2,
        grad_clip=1e-2,
        schedule="constant",
        prefixes=("分开", "不分开"),
        sample_length=50,
        sample_every=40,
        sample_greedy=True,
        out="runs/seed",
    ),
    # The default: the whole corpus, newlines kept as tokens, the last 10% held out, and
    # AWD-LSTM-style regularisation (tied weights, locked and embedding dropout, weight drop,
    # weight decay, label smoothing, best-on-validation, early stopping) so that the model
    # generalises instead of memorising; and a copy attention over the last 512 characters,
    # because lyrics repeat their lines within a song.  About two minutes on 2 CPU cores.
    "jaychou": dict(
        newlines="keep",
        vocab_from="all",
        embedding_size=256,
        hidden_size=256,
        num_layers=1,
        tie_weights=True,
        copy_window=512,
        dropout=0.4,
        locked_dropout=True,
        embed_dropout=0.1,
        weight_drop=0.3,
        batch_size=16,
        num_steps=64,
        epochs=16,
        optimizer="adamw",
        lr=3e-3,
        weight_decay=0.1,
        label_smoothing=0.02,
        grad_clip=1.0,
        schedule="cosine",
        min_lr=1e-4,
        early_stop=4,
        prefixes=("分开", "不分开"),
        sample_length=50,
        sample_every=4,
        out="runs/jaychou",
    ),
    # Pre-training on a large Chinese corpus, to fine-tune on lyrics afterwards with
    # `jaychou-ft`:  charlm train --preset songci --data songci.txt
    "songci": dict(
        newlines="keep",
        vocab_from="all",
        embedding_size=512,
        hidden_size=512,
        num_layers=1,
        tie_weights=True,
        copy_window=512,
        dropout=0.2,
        batch_size=64,
        num_steps=64,
        epochs=1,
        optimizer="adamw",
        lr=2e-3,
        weight_decay=0.01,
        grad_clip=1.0,
        schedule="cosine",
        warmup_steps=100,
        min_lr=2e-4,
        val_fraction=0.01,
        prefixes=("明月", "春风"),  # the ci's own openings, not the lyrics'
        sample_every=1,
        out="runs/songci",
    ),
    # Fine-tuning a `songci` model on the bundled lyrics:
    #   charlm train --preset jaychou-ft --init-from runs/songci
    "jaychou-ft": dict(
        newlines="keep",
        vocab_from="all",
        dropout=0.4,
        embed_dropout=0.1,
        locked_dropout=True,
        weight_drop=0.3,
        batch_size=32,
        num_steps=64,
        epochs=20,
        optimizer="adamw",
        lr=1e-3,
        weight_decay=0.1,
        label_smoothing=0.02,
        grad_clip=1.0,
        schedule="cosine",
        min_lr=1e-4,
        early_stop=4,
        sample_every=5,
        out="runs/jaychou-ft",
    ),
    # A larger Tiny Shakespeare model for one big GPU (an H200 here), five minutes of training at most:
    #   charlm train --preset shakespeare-gpu-large --data tinyshakespeare.txt
    # After the recipe the NOTES measured at 1.482 after 154 s and still improving (3x1024, dropout
    # 0.5, AdamW 2e-3 cosine, batch 128x256, bf16, one CUDA graph: about 1.8M chars/s), with the
    # cosine stretched over about 4.5 minutes, but not the same: the NOTES tied a 512 embedding to
    # the output through a projection, which charlm has not (untied here), and this adds locked
    # dropout and weight decay 0.1.  An epoch takes about half a second at that
    # speed, so validation and checkpoints come every 500 steps instead of after each epoch.
    # Not yet measured: bench/gpu_quality.sh runs it, after shakespeare-gpu.
    "shakespeare-gpu-large": dict(
        newlines="keep",
        vocab_from="all",
        embedding_size=512,
        hidden_size=1024,
        num_layers=3,
        dropout=0.5,
        locked_dropout=True,
        batch_size=128,
        num_steps=256,
        epochs=480,
        optimizer="adamw",
        lr=2e-3,
        weight_decay=0.1,
        grad_clip=1.0,
        schedule="cosine",
        warmup_steps=200,
        min_lr=1e-4,
        eval_every=500,
        max_minutes=5.0,
        precision="bf16",
        cuda_graph=True,
        device="cuda",
        prefixes=("ROMEO:",),
        sample_length=200,
        out="runs/shakespeare-gpu-large",
    ),
    # Tiny Shakespeare (nanoGPT's split: --val-fraction 0.1, vocabulary 65) on 2 CPU cores:
    #   charlm train --preset shakespeare-cpu --data tinyshakespeare.txt
    "shakespeare-cpu": dict(
        newlines="keep",
        vocab_from="all",
        embedding_size=128,
        hidden_size=384,
        num_layers=2,
        dropout=0.1,
        batch_size=32,
        num_steps=128,
        epochs=5,
        optimizer="adamw",
        lr=3e-3,
        weight_decay=0.01,
        grad_clip=1.0,
        schedule="cosine",
        min_lr=1e-4,
        prefixes=("ROMEO:",),
        sample_length=200,
        sample_every=1,
        out="runs/shakespeare-cpu",
    ),
}
# Tiny Shakespeare on a GPU: the CPU recipe, measured at 1.442 on 2 CPU cores in 12 minutes,
# with only what changes no arithmetic added (on the GPU, the step in one CUDA graph, fp32:
# the same loss and gradients as the eager step, bench/gpu_checks.py), under a 5-minute cap.
#   charlm train --preset shakespeare-gpu --data tinyshakespeare.txt
PRESETS["shakespeare-gpu"] = dict(PRESETS["shakespeare-cpu"], device="cuda", cuda_graph=True, max_minutes=5.0,
                                  out="runs/shakespeare-gpu")

DEFAULT_PRESET = "jaychou"

# Flags a preset cannot do without (where the corpus or the pre-trained model lives), and what to give.
_SHAKESPEARE = "FILE (Tiny Shakespeare: char-rnn's data/tinyshakespeare/input.txt; not bundled)"
REQUIRES: dict[str, dict[str, str]] = {
    "songci": {"data": "FILE (全宋词, one ci per line, from chinese-poetry's 宋词/ci.song.*.json; not bundled)"},
    "jaychou-ft": {"init_from": "RUN (a model pre-trained with --preset songci)"},
    "shakespeare-cpu": {"data": _SHAKESPEARE},
    "shakespeare-gpu": {"data": _SHAKESPEARE},
    "shakespeare-gpu-large": {"data": _SHAKESPEARE},
}


def check_requires(name: str, values: dict) -> None:
    missing = [f for f in REQUIRES.get(name, {}) if not values.get(f)]
    if missing:
        flags = " and ".join(f"--{f.replace('_', '-')} {REQUIRES[name][f]}" for f in missing)
        raise CharlmError(f"preset {name!r} needs {flags}")


def owns_its_data(name: str) -> bool:
    """Whether the preset trains on the bundled lyrics unless told otherwise: its --out and --prefixes are theirs."""
    return not PRESETS[name].get("data") and "data" not in REQUIRES.get(name, {})


def get_preset(name: str) -> dict:
    """The preset's values; a one-line error naming the known presets for an unknown name."""
    try:
        return dict(PRESETS[name])
    except KeyError:
        raise CharlmError(f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}") from None


def train_config(name: str = DEFAULT_PRESET, **overrides):
    """The ``TrainConfig`` a preset trains with (``charlm train --preset NAME``), any of its fields overridden; the
    preset's model fields go to :func:`charlm.train.model_config_for` (``TrainConfig()`` alone has the built-in defaults,
    not a preset's).  Unlike ``charlm train``, ``data=`` your own file keeps the preset's ``out`` and ``prefixes``."""
    from .config import ModelConfig, TrainConfig, field_names

    if unknown := sorted(set(overrides) - field_names(TrainConfig)):
        model = [k for k in unknown if k in field_names(ModelConfig)]
        raise TypeError(f"train_config has no field {unknown[0]!r}" + (
            " (a model field: give it to model_config_for)" if model and model[0] == unknown[0] else ""))
    values = {**get_preset(name), **overrides}
    check_requires(name, values)
    return TrainConfig(**{k: v for k, v in values.items() if k in field_names(TrainConfig)})
