"""Fine-tuning from another checkpoint: keep its weights, grow its vocabulary for new characters.

A model pre-trained on a large corpus (say 全宋词) knows many characters; the corpus it is
fine-tuned on (say the lyrics) brings some it has never seen.  Those get new rows: the
mean of the known embeddings (a "generic character"), the mean output weights, and an
output bias as low as the rare known characters', so that the model starts by finding
them unlikely rather than by guessing them at random.  A one-hot model (embedding size 0)
grows its identity input table and gives the first layer's input weights a column per new
character, the mean of the known ones.
"""

from __future__ import annotations

import dataclasses

import torch

from .config import ModelConfig
from .vocab import UNK, Vocab

# Model fields a fine-tuning run may set for itself; the rest is the pre-trained architecture.
TUNABLE = {"dropout", "embed_dropout", "locked_dropout", "weight_drop"}


def fine_tune_setup(base, corpus, values: dict | None = None):
    """What a :class:`~charlm.train.Trainer` fine-tuning ``base`` (a :class:`~charlm.checkpoint.Checkpoint`, or its path)
    on ``corpus`` takes: ``(init_weights, model_cfg, corpus)``, the vocabulary grown for the corpus's new characters.

    ``values``: model fields to set for the fine-tuning: the :data:`TUNABLE` ones (dropout and the like); another that
    differs from the pre-trained model's is an error, as with ``--init-from``.  The corpus must be read with the
    pre-trained model's ``newlines``, and with ``unk`` as the pre-trained vocabulary has ``<unk>`` or not.  Give the ``TrainConfig`` ``init_from=`` the same path, so that the checkpoint
    records where the run began.
    """
    from .checkpoint import Checkpoint, load
    from .errors import CharlmError

    if not isinstance(base, Checkpoint):
        base = load(base, with_trainer=False)
    values = values or {}
    if fixed := changed_architecture(base.model_config, values):
        raise CharlmError(f"fine-tuning keeps the pre-trained architecture of {base.path}; cannot change {', '.join(fixed)}")
    read = (corpus.read_as or {}).get("newlines", base.train_config.newlines)
    if read != base.train_config.newlines:
        raise CharlmError(f"the corpus was read with newlines={read!r}, but {base.path} was trained with "
                          f"newlines={base.train_config.newlines!r}: read it so (its line breaks or spaces were learned that way)")
    if corpus.vocab.unk != base.vocab.unk:  # (as --init-from: its <unk> row is kept and used, and a new one cannot be id 0)
        raise CharlmError(f"{base.path} was trained with <unk>: read the corpus with unk=True" if base.vocab.unk else
                          f"{base.path} was trained without <unk>, and <unk> must be id 0: read the corpus with unk=False "
                          f"(its new characters get rows of their own)")
    vocab = extend_vocab(base.vocab, corpus.vocab)
    weights = grow_weights(base.weights, base.vocab, vocab, one_hot=base.model_config.embedding_size == 0)
    return weights, fine_tune_config(base.model_config, len(vocab), values), dataclasses.replace(corpus, vocab=vocab)


def changed_architecture(base: ModelConfig, values: dict) -> list[str]:
    """The fields of ``values`` a fine-tuning cannot change (not :data:`TUNABLE`) that differ from ``base``'s, sorted."""
    return sorted(k for k, v in values.items() if k not in TUNABLE and getattr(base, k, v) != v)


def extend_vocab(base: Vocab, corpus_vocab: Vocab) -> Vocab:
    """``base`` in its order, then the characters of ``corpus_vocab`` it lacks, in their order."""
    new = [c for c in corpus_vocab.itos if c not in base.stoi and not (corpus_vocab.unk and c == UNK)]
    return Vocab(base.itos + tuple(new), unk=base.unk)


def fine_tune_config(base: ModelConfig, vocab_size: int, values: dict) -> ModelConfig:
    """The pre-trained architecture with the tunable fields of ``values`` and the grown vocabulary."""
    return dataclasses.replace(base, vocab_size=vocab_size, **{k: v for k, v in values.items() if k in TUNABLE})


def grow_weights(weights: dict[str, torch.Tensor], old: Vocab, new: Vocab, one_hot: bool = False) -> dict[str, torch.Tensor]:
    """The pre-trained weights with rows added for the characters ``new`` has beyond ``old``."""
    n_old, n_new = len(old), len(new)
    assert new.itos[:n_old] == old.itos, "the new vocabulary must extend the old one"
    if n_new == n_old:
        return dict(weights)
    out = dict(weights)
    extra = n_new - n_old
    emb = weights["embedding.weight"]
    if one_hot:  # embedding_size 0: the input table is the identity, and grows as one; the first
        # layer reads the one-hot vector, so its input weights get a column per new character (their mean)
        out["embedding.weight"] = torch.eye(n_new, dtype=emb.dtype)
        w = weights["rnn.weight_ih_l0"]
        out["rnn.weight_ih_l0"] = torch.cat([w, w.mean(1, keepdim=True).expand(-1, extra)], dim=1)
    else:
        out["embedding.weight"] = torch.cat([emb, emb.mean(0, keepdim=True).expand(extra, -1)])
    if "decoder.weight" in weights:
        w = weights["decoder.weight"]
        out["decoder.weight"] = torch.cat([w, w.mean(0, keepdim=True).expand(extra, -1)])
    b = weights["decoder.bias"]
    rare = torch.quantile(b.float(), 0.1).to(b.dtype)
    out["decoder.bias"] = torch.cat([b, rare.expand(extra)])
    return out
