import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charlm.baseline import bigram_loss
from charlm.data import load_corpus
from charlm.presets import get_preset
from charlm.config import TrainConfig, field_names


def test_the_lyrics_bigram_is_the_notes_reference():
    values = get_preset("jaychou")
    corpus = load_corpus(TrainConfig(**{k: v for k, v in values.items() if k in field_names(TrainConfig)}))
    ids, _ = corpus.val_ids()
    loss = bigram_loss(corpus.train_ids.numpy(), ids.numpy(), len(corpus.vocab))
    assert len(corpus.vocab) == 2583 and round(math.exp(loss)) == 280  # ../shared/NOTES.md: 280


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=2, max_size=40), st.integers(0, 4))
def test_the_next_characters_probabilities_sum_to_one(train, prev):
    # scoring every possible next character after `prev`: the probabilities add up to 1
    probs = [math.exp(-bigram_loss(train, [prev, nxt], 5)) for nxt in range(5)]
    assert sum(probs) == pytest.approx(1.0)


def test_seen_pairs_are_likelier_than_unseen():
    train = [0, 1, 0, 1, 0, 1, 2]
    assert bigram_loss(train, [0, 1], 3) < bigram_loss(train, [0, 2], 3)
    with pytest.raises(ValueError):
        bigram_loss(train, [0], 3)
