"""Is a sample new, or copied?  The longest span of it found verbatim in the training text, and the share of its n-grams found there.

The training text is indexed once in a suffix array: the starting positions of all its
suffixes in sorted order, built with numpy by prefix doubling (a third of a second and 70 MB more
for the 1.56M characters of songci's training split).  For every position of a sample, a
binary search among those sorted suffixes finds the longest piece of the sample starting
there that occurs anywhere in the training text (a few milliseconds for 200 characters); inside
a long copied stretch the few places of the text that match are followed along instead.
The longest of those is the longest copied span, and an n-gram starting at a position was
seen in training exactly when that length is at least n.
"""

from __future__ import annotations

import array
import bisect
from dataclasses import dataclass

import numpy as np

from .progress import one_line
from .vocab import code_points

SAID_FROM = 1_000_000  # characters from which building the index is said as it starts (about 8 s for ten million)


def suffix_array(text: str) -> np.ndarray:
    """The start of every suffix of ``text``, in sorted order (code point order, as Python compares strings).

    Prefix doubling: suffixes are sorted by their first k characters, then 2k, ..., and only the groups
    still tied are sorted again.  A suffix's rank is where its group starts in the array.  The first sort
    takes as many characters as fit in 63 bits at once (numbered densely: 21 of a text of 50 symbols, 4 of
    one of 6,000), which saves the early rounds, where nearly every suffix is still tied.
    """
    n = len(text)
    small = np.int32 if n < 2**31 else np.int64  # places and ranks: half the memory for any text that fits
    codes = code_points(text)
    place = np.cumsum(np.bincount(codes) > 0)  # a code point's place in the sorted alphabet, from 1 (0: past the end, first)
    dense = place[codes] if n else codes
    bits = int(place[-1]).bit_length() if n else 1
    k = max(1, min(63 // bits, n))
    key = np.zeros(n, np.int64)
    for j in range(k):
        key[: n - j] |= dense[j:].astype(np.int64) << (bits * (k - 1 - j))
    del codes, dense
    sa = np.argsort(key, kind="stable").astype(small)
    rank = np.empty(n, small)
    tied = _regroup(sa, key[sa], np.arange(n, dtype=small), rank)
    del key
    while tied.any():
        pos = np.flatnonzero(tied).astype(small)  # places in the array whose group is still tied
        idx = sa[pos]
        second = np.full(len(idx), -1, np.int64)  # the rank k characters on; -1 past the end sorts first
        inside = idx < n - k
        second[inside] = rank[idx[inside] + k]
        key = rank[idx].astype(np.int64) * (n + 1) + (second + 1)
        order = np.argsort(key, kind="stable")
        sa[pos] = idx[order]
        tied[pos] = _regroup(sa[pos], key[order], pos, rank)
        k *= 2
    return sa


def _regroup(starts, keys, pos, rank) -> np.ndarray:
    """Give the suffixes ``starts`` (sorted by ``keys``, at places ``pos``) the place of their group as rank; which are tied."""
    new = np.ones(len(keys), bool)
    new[1:] = keys[1:] != keys[:-1]
    rank[starts] = np.maximum.accumulate(np.where(new, pos, 0))
    size = np.diff(np.append(np.flatnonzero(new), len(keys)))
    return np.repeat(size > 1, size)


class SuffixArray:
    """The sorted suffixes of a text, for finding the longest piece of a string that occurs in it."""

    ANCHOR = 32  # a match this long or longer is followed along the text (see match_lengths)
    CROWD = 64  # ... unless more places of the text than this share its first ANCHOR characters

    def __init__(self, text: str):
        self.text = text
        sa = suffix_array(text)
        self.sa = array.array("i" if sa.itemsize == 4 else "q", sa.tobytes())  # plain ints, compact and fast to index

    def match_lengths(self, s: str) -> list[int]:
        """For each position i, the length of the longest prefix of ``s[i:]`` that occurs in the text.

        A match is at least the one before less a character.  Once that is ANCHOR or more, the places of the text
        that share the next ANCHOR characters are few, and each one's match is the match one character before
        less one, where that place was already followed; only a new place is compared from its start.  So a long
        copied stretch costs about its length, not its length squared.
        """
        out: list[int] = []
        followed: dict[int, int] = {}  # place in the text -> its match with s[i:], at the position before (ANCHOR or more)
        for i in range(len(s)):
            before = out[-1] if out else 0
            if before > 1 and i - 1 + before == len(s):  # the match before runs to the end: this one is it, less a character
                out.append(before - 1)
                continue
            if before - 1 >= self.ANCHOR:
                lo, hi = self._range(s[i : i + self.ANCHOR])
                if hi - lo <= self.CROWD:
                    followed = {q: n if (n := followed.get(q - 1, 0) - 1) >= self.ANCHOR else self._extend(q, s, i, self.ANCHOR)
                                for q in self.sa[lo:hi]}
                    out.append(max(followed.values()))
                    continue
            followed = {}
            # look as far as the match before less a character, and a little more; further if it fills that
            width = max(before - 1, 0) + 64
            while True:
                found = self._longest(s[i : i + width])
                if found < width or i + width >= len(s):
                    break
                width *= 2
            out.append(found)
        return out

    def _longest(self, p: str) -> int:
        """The length of the longest prefix of ``p`` that occurs in the text."""
        text, sa, size = self.text, self.sa, len(p)
        at = bisect.bisect_left(sa, p, key=lambda j: text[j : j + size])
        # the suffixes sorted just before and after p share the longest prefix with it
        return max((_common(text[sa[q] : sa[q] + size], p) for q in (at - 1, at) if 0 <= q < len(sa)), default=0)

    def _range(self, p: str) -> tuple[int, int]:
        """The places in the sorted suffixes of those that start with ``p``."""
        text, size = self.text, len(p)
        key = lambda j: text[j : j + size]  # noqa: E731
        return bisect.bisect_left(self.sa, p, key=key), bisect.bisect_right(self.sa, p, key=key)

    def _extend(self, q: int, s: str, i: int, known: int) -> int:
        """The length of the common start of ``text[q:]`` and ``s[i:]``, known to be at least ``known``."""
        text, n, step = self.text, known, 64
        while i + n < len(s):
            piece = s[i + n : i + n + step]
            if text.startswith(piece, q + n):
                n, step = n + len(piece), step * 2
                continue
            lo, hi = 0, len(piece)  # the text goes on with piece[:lo], not with piece[:hi]
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if text.startswith(piece[:mid], q + n) else (lo, mid)
            return n + lo
        return n


def _common(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


@dataclass(frozen=True)
class CopyReport:
    longest: int  # characters in the longest span found verbatim in the training text
    span: str  # that span
    ngram_share: float | None  # share of the sample's n-grams seen in training (None if shorter than n)
    n: int

    def line(self) -> str:
        share = "n/a" if self.ngram_share is None else f"{self.ngram_share:.0%}"
        span = one_line(self.span, "⏎").replace("\t", "⇥")  # one line of report, its blanks seen, whatever the span holds
        quoted = f"「{span}」" if any(not c.isascii() for c in span) else f'"{span}"'  # Chinese brackets for Chinese text
        return f"copy check: longest span also in the training text {self.longest} character{'s' if self.longest != 1 else ''} {quoted}; {self.n}-grams seen in training: {share}"


class CopyIndex:
    """Built once from the training text; :meth:`check` then costs one binary search per character of a sample."""

    def __init__(self, train_text: str | list[str], n: int = 8):
        """``train_text``: the text, or several (a fine-tuned model's and its pre-training's), none spanning into another."""
        self.n = n
        self.separator = None
        if not isinstance(train_text, str):
            # between the texts, a character none holds: U+FFFF (a noncharacter) unless one does
            self.separator = next(c for c in map(chr, range(0xFFFF, 0x110000)) if not any(c in t for t in train_text))
            train_text = self.separator.join(train_text)
        self.index = SuffixArray(train_text)
        # A text without line breaks (trained with --newlines space): the breaks a sample is shown with stand for the
        # spaces the model wrote there, or, without spaces either, were only put in to show it in lines.
        self.breaks_as = None if "\n" in train_text else " " if " " in train_text else ""

    def check(self, sample: str) -> CopyReport:
        if self.breaks_as is not None:
            sample = sample.replace("\n", self.breaks_as)
        lengths = self.index.match_lengths(sample)
        if self.separator is not None and self.separator in sample:  # (a file of samples may hold anything): no match
            stop = len(sample)                                        # runs through it from one text into the next
            for i in range(len(sample) - 1, -1, -1):
                stop = i if sample[i] == self.separator else stop
                lengths[i] = min(lengths[i], stop - i)
        if not lengths:
            return CopyReport(0, "", None, self.n)
        start = max(range(len(lengths)), key=lengths.__getitem__)
        longest = lengths[start]
        grams = lengths[: max(len(lengths) - self.n + 1, 0)]  # one per n-gram start
        share = sum(x >= self.n for x in grams) / len(grams) if grams else None
        return CopyReport(longest, sample[start : start + longest], share, self.n)
