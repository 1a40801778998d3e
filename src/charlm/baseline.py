"""A yardstick for a model's perplexity: a bigram count model of the same training text.

Counting which character follows which is the simplest model that knows anything about order;
a neural model worth its training should beat it on held-out text.  This is the reference the
project's benchmarks measure against: bigram counts with absolute discounting (0.75), interpolated with
add-one unigram counts, over the model's own vocabulary (280 on the Jay Chou lyrics' held-out
10%, where the unigram alone scores 485).  The text is read as one stream, as
:func:`charlm.train.evaluate` reads it: every character but the first is scored.
"""

from __future__ import annotations

import numpy as np

DISCOUNT = 0.75


def bigram_loss(train_ids, eval_ids, vocab_size: int, discount: float = DISCOUNT) -> float:
    """Mean loss in nats per character of ``eval_ids`` under the bigram model of ``train_ids`` (ids below ``vocab_size``)."""
    train = np.asarray(train_ids, dtype=np.int64)
    text = np.asarray(eval_ids, dtype=np.int64)
    if text.size < 2:
        raise ValueError("the text needs at least two characters to score")
    unigram = np.bincount(train, minlength=vocab_size) + 1.0
    unigram /= unigram.sum()
    pairs, counts = np.unique(train[:-1] * vocab_size + train[1:], return_counts=True)
    follows = np.bincount(train[:-1], minlength=vocab_size).astype(np.float64)  # times each character has a successor
    kinds = np.bincount(pairs // vocab_size, minlength=vocab_size)  # how many different characters follow it
    prev, nxt = text[:-1], text[1:]
    wanted = prev * vocab_size + nxt
    at = np.minimum(np.searchsorted(pairs, wanted), max(len(pairs) - 1, 0))
    seen = np.where(pairs[at] == wanted, counts[at], 0) if len(pairs) else np.zeros(len(wanted))
    n = np.maximum(follows[prev], 1.0)
    p = np.where(follows[prev] > 0,
                 np.maximum(seen - discount, 0.0) / n + discount * kinds[prev] / n * unigram[nxt],
                 unigram[nxt])  # a character never seen with a successor: the unigram alone
    return float(-np.log(p).mean())
