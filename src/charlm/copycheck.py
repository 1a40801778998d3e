"""Is a sample new, or copied?  The longest span of it found verbatim in the training text, and the share of its n-grams found there.

The training text is indexed once in a suffix automaton (linear in its length); a sample
is then matched in one left-to-right pass: for every position, the longest piece of the
sample ending there that occurs anywhere in the training text.  The longest of those is
the longest copied span, and an n-gram ending at a position was seen in training exactly
when that length is at least n.
"""

from __future__ import annotations

from dataclasses import dataclass


class SuffixAutomaton:
    """The smallest automaton accepting every substring of ``text``."""

    def __init__(self, text: str):
        nxt: list[dict] = [{}]
        link = [-1]
        length = [0]
        last = 0
        for ch in text:
            cur = len(nxt)
            nxt.append({})
            length.append(length[last] + 1)
            link.append(0)
            p = last
            while p != -1 and ch not in nxt[p]:
                nxt[p][ch] = cur
                p = link[p]
            if p != -1:
                q = nxt[p][ch]
                if length[p] + 1 == length[q]:
                    link[cur] = q
                else:
                    clone = len(nxt)
                    nxt.append(dict(nxt[q]))
                    length.append(length[p] + 1)
                    link.append(link[q])
                    while p != -1 and nxt[p].get(ch) == q:
                        nxt[p][ch] = clone
                        p = link[p]
                    link[q] = link[cur] = clone
            last = cur
        self.next, self.link, self.length = nxt, link, length

    def match_lengths(self, s: str) -> list[int]:
        """For each position i, the length of the longest substring of ``s`` ending at i that occurs in the text."""
        nxt, link, length = self.next, self.link, self.length
        state, cur, out = 0, 0, []
        for ch in s:
            while state and ch not in nxt[state]:
                state = link[state]
                cur = length[state]
            if ch in nxt[state]:
                state = nxt[state][ch]
                cur += 1
            else:
                state, cur = 0, 0
            out.append(cur)
        return out


@dataclass(frozen=True)
class CopyReport:
    longest: int  # characters in the longest span found verbatim in the training text
    span: str  # that span
    ngram_share: float | None  # share of the sample's n-grams seen in training (None if shorter than n)
    n: int

    def line(self) -> str:
        share = "n/a" if self.ngram_share is None else f"{self.ngram_share:.0%}"
        span = self.span.replace("\n", "⏎")  # one line of report, whatever the span holds
        return f"copy check: longest span also in the training text {self.longest} character{'s' if self.longest != 1 else ''} 「{span}」; {self.n}-grams seen in training: {share}"


class CopyIndex:
    """Built once from the training text; :meth:`check` then costs one pass over a sample."""

    def __init__(self, train_text: str, n: int = 8):
        self.n = n
        self.sam = SuffixAutomaton(train_text)

    def check(self, sample: str) -> CopyReport:
        lengths = self.sam.match_lengths(sample)
        if not lengths:
            return CopyReport(0, "", None, self.n)
        end = max(range(len(lengths)), key=lengths.__getitem__)
        longest = lengths[end]
        grams = lengths[self.n - 1 :]
        share = sum(x >= self.n for x in grams) / len(grams) if grams else None
        return CopyReport(longest, sample[end + 1 - longest : end + 1], share, self.n)


def training_text(ckpt) -> str:
    """The text a checkpoint was trained on, read again from its config (same split, same limit)."""
    from .data import load_corpus

    return load_corpus(ckpt.train_config, vocab=ckpt.vocab).train_text
