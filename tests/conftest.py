"""Shared fixtures: small corpora made here, and a tiny model trained once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from charlm.config import ModelConfig, TrainConfig
from charlm.data import load_corpus
from charlm.train import Trainer

LYRIC = "分开的时候我说不分开\n你说我们还会再见\n不分开的是我们的爱\n快乐的日子在心里面\n"


def tiny_train_config(tmp: Path, **kw) -> TrainConfig:
    """A corpus of repeated lyric lines and a model small enough to train in a second."""
    tmp.mkdir(parents=True, exist_ok=True)
    corpus = tmp / "corpus.txt"
    if not corpus.exists():
        corpus.write_text(LYRIC * 40, encoding="utf-8")
    base = dict(data=str(corpus), batch_size=4, num_steps=16, epochs=2, lr=1e-2, seed=0,
                device="cpu", out=str(tmp / "run"), prefixes=("分开",), sample_length=10)
    base.update(kw)
    return TrainConfig(**base)


def train_tiny(tmp: Path, model_kw: dict | None = None, log=lambda *_: None, **kw) -> Trainer:
    cfg = tiny_train_config(tmp, **kw)
    corpus = load_corpus(cfg)
    mcfg = ModelConfig(vocab_size=len(corpus.vocab), embedding_size=16, hidden_size=32, **(model_kw or {}))
    trainer = Trainer(mcfg, cfg, corpus, log=log)
    trainer.fit()
    return trainer


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A run folder (best/, last/, metrics.jsonl) of a tiny LSTM trained on a lyric corpus."""
    tmp = tmp_path_factory.mktemp("tiny")
    train_tiny(tmp, epochs=6)
    return tmp / "run"


@pytest.fixture(scope="session")
def tiny_ckpt(tiny_run) -> Path:
    return tiny_run / "best"
