import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from charlm.errors import CharlmError
from charlm.vocab import UNK, Vocab


def test_order_is_frequency_then_code_point():
    v = Vocab.build("bbaacc a")  # counts a 3, b 2, c 2, ' ' 1: most frequent first
    assert v.itos == ("a", "b", "c", " ")
    assert Vocab.build("ba").itos == ("a", "b")  # a tie goes by code point, not by which comes first


def test_order_is_the_same_in_every_process():
    """The seed's list(set(text)) changes with PYTHONHASHSEED; ours must not."""
    code = "from charlm.data import read_text; from charlm.vocab import Vocab; print(''.join(Vocab.build(read_text()).itos[:50]))"
    outs = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        outs.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout)
    assert len(outs) == 1


@given(st.text(min_size=1, max_size=200))
def test_encode_decode_round_trip(text):
    v = Vocab.build(text)
    assert v.decode(v.encode(text)) == text
    assert Vocab.from_dict(v.to_dict()) == v


def test_decode_refuses_ids_outside_the_vocabulary():
    """-1 is not the last character (as a list index would have it), nor is a large id a bare IndexError."""
    import torch

    v = Vocab.build("分开了")
    assert v.decode(torch.tensor(v.encode("开了"))) == "开了"
    with pytest.raises(CharlmError, match="ids must be a sequence of whole numbers"):
        v.decode([1.7, 0])  # not read as 1
    for bad in ([-1], [0, len(v)], [10**6]):
        with pytest.raises(CharlmError, match=rf"id {bad[-1]} is outside the vocabulary \(ids 0 to {len(v) - 1}\)"):
            v.decode(bad)


def test_unk_and_min_freq():
    v = Vocab.build("aaab", min_freq=2, unk=True)
    assert v.itos == (UNK, "a")
    assert v.encode("abz") == [1, 0, 0]
    assert v.unknown("xyz") == []


def test_without_unk_unknown_characters_are_reported_and_skippable():
    v = Vocab.build("abc")
    assert v.unknown("axbyx") == ["x", "y"]
    ids, skipped = v.encode_known("axbyx")
    assert v.decode(ids) == "ab" and skipped == 3
    with pytest.raises(KeyError):  # as a dict's, and a one-line error naming the character
        v.encode("x")
    with pytest.raises(CharlmError, match=r"^'x' is not in the vocabulary \(3 characters\); encode_known skips such characters$"):
        v.encode("abx")
    import pickle

    with pytest.raises(CharlmError) as e:
        v.encode("by")
    again = pickle.loads(pickle.dumps(e.value))  # (as a worker process sends it back)
    assert (type(again), again.char, str(again)) == (type(e.value), "y", str(e.value))


def test_bundled_corpus_vocabulary_sizes_match_the_seed():
    from charlm.data import normalize, read_text

    text = read_text()
    assert len(Vocab.build(text)) == 2583
    assert len(Vocab.build(normalize(text, "space")[:10_000])) == 1027


def test_an_unknown_character_error_names_every_one_and_survives_pickling():
    import pickle

    v = Vocab.build("abc")
    with pytest.raises(KeyError) as e:
        v.encode("xa😀x")
    assert str(e.value).startswith("'x' '😀' are not in the vocabulary (3 characters)")
    again = pickle.loads(pickle.dumps(e.value))
    assert str(again) == str(e.value) and again.chars == ("x", "😀") and again.char == "x"
    with pytest.raises(KeyError, match=r"^'q' is not in the vocabulary"):
        v.encode("q")
    with pytest.raises(KeyError, match="and 5 more are not"):
        v.encode("".join(chr(0x4E00 + i) for i in range(25)))


def test_a_vocabulary_shows_itself_in_one_short_line():
    v = Vocab.build("".join(chr(0x4E00 + i) * (i + 1) for i in range(3000)))
    assert len(repr(v)) < 200 and "3,000 entries" in repr(v)


any_char = st.characters(exclude_categories=())  # lone surrogates too: a text given in Python may hold them


@given(st.text(any_char, max_size=80), st.text(any_char, max_size=80), st.booleans(), st.integers(1, 3))
def test_the_array_encoding_is_the_plain_one(held, text, unk, min_freq):
    """encode, encode_known and encode_array (numpy, for long texts) against a dict look-up, unknown characters and all."""
    import collections

    import numpy as np

    from charlm.vocab import UnknownCharacter, counted

    assert counted(held) == collections.Counter(held)
    v = Vocab.build(held, min_freq=min_freq, unk=unk)
    expected = [v.stoi.get(c, 0 if unk else None) for c in text]
    known = [i for i in expected if i is not None]
    assert v.encode_known(text) == (known, len(text) - len(known))
    array = v.encode_array(text, known=True)
    assert array.tolist() == known and array.dtype == np.int64
    if None in expected:
        with pytest.raises(UnknownCharacter) as e:
            v.encode(text)
        assert e.value.chars == tuple(dict.fromkeys(c for c in text if c not in v.stoi))
    else:
        assert v.encode(text) == expected
