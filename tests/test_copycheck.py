import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charlm.copycheck import CopyIndex, SuffixArray, suffix_array


def brute_lengths(text, s):
    """For each start, the longest piece of s starting there that occurs in text."""
    return [max(k for k in range(len(s) - i + 1) if s[i : i + k] in text) for i in range(len(s))]


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="ab分开\n", max_size=60))
def test_suffix_array_sorts_suffixes(text):
    assert suffix_array(text).tolist() == sorted(range(len(text)), key=lambda i: text[i:])


def test_suffix_array_long_repeats():
    text = "分开的时候" * 300 + "a" + "分开的时候" * 300  # ties that need many doublings
    assert suffix_array(text).tolist() == sorted(range(len(text)), key=lambda i: text[i:])



def test_suffix_array_large_alphabet():
    # 70,000 distinct characters (astral ones among them) take 17 bits each: three to a first sort key, not 21
    rng = random.Random(0)
    alphabet = [chr(c) for c in range(0x4E00, 0x4E00 + 35_000)] + [chr(c) for c in range(0x20000, 0x20000 + 35_000)]
    piece = "".join(rng.choice(alphabet) for _ in range(200))
    text = "".join(rng.choice(alphabet) for _ in range(60_000)) + piece * 5 + "".join(alphabet)
    sa = suffix_array(text).tolist()
    assert sorted(sa) == list(range(len(text)))
    assert all(text[a : a + 1200] < text[b : b + 1200] or text[a:] < text[b:] for a, b in zip(sa, sa[1:]))

@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="abc分开", max_size=40), st.text(alphabet="abcd分开", max_size=30))
def test_matches_brute_force(text, sample):
    assert SuffixArray(text).match_lengths(sample) == brute_lengths(text, sample)


class Following(SuffixArray):
    """Long matches followed along the text from 2 characters on, with crowds of 1 to 4 places searched the plain way."""

    ANCHOR = 2


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet="ab分开", max_size=60), st.data(), st.integers(1, 4))
def test_following_long_matches_gives_the_same_lengths(text, data, crowd):
    # samples that copy stretches of the text (with changes), so that matches are long and places many
    pieces = data.draw(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 30), st.text(alphabet="abc分", max_size=3)), max_size=4))
    sample = "".join(text[a : a + n] + extra for a, n, extra in pieces)
    index = Following(text)
    index.CROWD = crowd
    assert index.match_lengths(sample) == brute_lengths(text, sample)


@pytest.mark.parametrize("text, sample", [
    ("\uffff".join(["a" * 33 + "b", "a" * 40 + "c", "a" * 35]), "a" * 45 + "c"),  # places whose matches end at different lengths
    ("ab" * 300, "ab" * 80 + "x" + "ba" * 40),  # a periodic text: a crowd of places
    ("\n".join(["分开的时候我说不分开你说我们还会再见不分开的是我们的爱快乐的日子在心里面"] * 70), "我说不分开你说我们还会再见不分开的是我们的爱快乐的日子在心里面分开的时候我说不分开你说我们还会"),
])
@pytest.mark.parametrize("index", [SuffixArray, Following])
def test_long_matches_on_hard_texts(text, sample, index):
    assert index(text).match_lengths(sample) == brute_lengths(text, sample)


def test_a_long_copy_followed_by_new_text_is_not_searched_from_every_start():
    rng = random.Random(1)
    text = "".join(rng.choice("分开不的我你说爱在心里天青色等烟雨") for _ in range(20_000))
    index = SuffixArray(text)
    calls = []
    index._longest = lambda p, real=index._longest: calls.append(len(p)) or real(p)
    sample = text[5000:9000] + "ABCDEFGH" * 100
    lengths = index.match_lengths(sample)
    assert lengths[:4000] == list(range(4000, 0, -1)) and max(lengths[4000:]) == 0
    assert sum(calls) < 50 * len(sample)  # each copied position used to search about its whole remaining copy: 8 million


def test_report():
    train = "分开的时候我说不分开\n你说我们还会再见\n"
    idx = CopyIndex(train, n=4)
    r = idx.check("我们分开的时候我说好")
    assert (r.longest, r.span) == (7, "分开的时候我说")
    assert r.ngram_share == 4 / 7  # of the 7 four-grams, those inside the copied span
    new = idx.check("天青色等烟雨而我在等你")
    assert new.longest == 1 and new.ngram_share == 0.0
    short = idx.check("分开")  # shorter than n: no n-grams to count
    assert (short.longest, short.ngram_share) == (2, None)
    copied = idx.check(train[:20])
    assert copied.longest == 20 and copied.ngram_share == 1.0


def test_a_match_never_runs_from_one_text_into_the_next():
    index = CopyIndex(["分开的时候", "我说不分开"], n=2)  # a fine-tuning text and a pre-training one
    assert (index.check("时候我说").longest, index.check("时候我说").span) == (2, "时候")
    assert index.check("不分开的时候").longest == 5  # across texts only where the sample itself joins them


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(alphabet="ab\uffff", max_size=12), min_size=1, max_size=3), st.text(alphabet="ab\uffff", max_size=20))
def test_several_texts_match_as_each_alone_whatever_characters_they_and_the_sample_hold(texts, sample):
    """A sample (a file of them may hold anything) never matches through the mark between two texts, even one
    holding the character that marks them; a text holding it itself matches it."""
    index = CopyIndex(texts, n=2)
    lengths = [max(brute_lengths(t, sample)[i] for t in texts) for i in range(len(sample))]
    report = index.check(sample)
    assert report.longest == max(lengths, default=0)
    assert any(report.span in t for t in texts)
    grams = lengths[: max(len(sample) - 1, 0)]
    assert report.ngram_share == (sum(x >= 2 for x in grams) / len(grams) if grams else None)


def test_fast_enough_for_every_sample():
    rng = random.Random(0)
    text = "".join(rng.choice("分开不的我你说爱在心里") for _ in range(60_000))
    idx = CopyIndex(text)
    r = idx.check(text[1000:1200])
    assert r.longest == 200


def test_cli_check_copy(capsys, tiny_run, tmp_path):
    from charlm.cli import main

    assert main(["generate", str(tiny_run), "--length", "40", "--seed", "1", "--num-samples", "3", "--check-copy"]) == 0
    err = capsys.readouterr().err
    assert err.count("copy check: longest span also in the training text") == 3 and "median" in err
    f = tmp_path / "samples.txt"
    f.write_text("分开的时候我说不分开\n你说我们还会再见\n\n快乐天青色等烟雨\n", encoding="utf-8")
    assert main(["eval", str(tiny_run), str(f), "--check-copy"]) == 0
    err = capsys.readouterr().err
    assert "sample 1: copy check: longest span also in the training text 19 characters" in err
    assert "sample 2:" in err


def test_the_prefix_is_not_counted_as_copied(capsys, tiny_run, tmp_path):
    from charlm.cli import main

    # a whole training line as the prefix, 3 characters written: at most those 3 can be copied
    assert main(["generate", str(tiny_run), "--prefix", "分开的时候我说不分开", "--length", "3", "--seed", "1", "--check-copy"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("分开的时候我说不分开")
    longest = int(err.split("longest span also in the training text ")[1].split(" ")[0])
    assert 1 <= longest <= 3, err
    # eval --check-copy on what generate wrote: the "--- sample N ---" lines are neither scored nor samples
    assert main(["generate", str(tiny_run), "--length", "20", "--seed", "2", "--num-samples", "2"]) == 0
    f = tmp_path / "samples.txt"
    f.write_text(capsys.readouterr().out, encoding="utf-8")
    assert main(["eval", str(tiny_run), str(f), "--check-copy"]) == 0
    out, err = capsys.readouterr()
    assert "outside the vocabulary" not in out and f"characters: {2 * 22 + 2:,} read" in out  # 2 x (分开 + 20) and their line ends
    assert err.count("copy check") == 3  # two samples and the summary


def test_shown_line_breaks_of_a_text_without_newlines_read_as_the_model_wrote_them():
    assert CopyIndex("xx the quick brownfox jumps xx").check("the quick\nbrownfox jumps").longest == 24  # the break was a space
    assert CopyIndex("xxthequickbrownfoxjumpsxx").check("thequickbr\nownfoxjumps").longest == 21  # only put in for showing
    assert CopyIndex("a line\nanother\n").check("line\nanother").longest == 12  # a text with newlines: as they are


def test_a_report_shows_the_spans_line_breaks_and_tabs():
    index = CopyIndex(["def f(x):\n\treturn x\n"])
    report = index.check("def f(x):\n\treturn y")
    assert report.longest == len("def f(x):\n\treturn ") and "\n" not in report.line()
    assert "「def f(x):⏎⇥return 」" in report.line()
