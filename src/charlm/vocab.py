"""The vocabulary: a deterministic mapping between characters and ids, saved with the model.

The seed builds it with ``list(set(text))``, whose order changes from one Python process
to the next (string hashing is salted), so a saved model cannot be reloaded.  Here the
order is fixed: special tokens first, then characters by descending count, ties broken
by code point.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass, field

import numpy as np

from .errors import CharlmError

UNK = "<unk>"


class UnknownCharacter(CharlmError, KeyError):
    """A character a vocabulary without ``<unk>`` cannot encode: a one-line error, and a KeyError as a dict's would be."""

    def __init__(self, char: str, size: int, chars: tuple[str, ...] = ()):
        chars = tuple(chars) or (char,)  # every distinct one, in order (the first is ``char``)
        shown = " ".join(map(repr, chars[:20])) + (f" and {len(chars) - 20:,} more" if len(chars) > 20 else "")
        super().__init__(f"{shown} {'is' if len(chars) == 1 else 'are'} not in the vocabulary ({size:,} characters); "
                         f"encode_known skips such characters")
        self.char, self.size, self.chars = char, size, chars

    def __reduce__(self):  # (pickled across processes, as a DataLoader's worker sends its error)
        return type(self), (self.char, self.size, self.chars)

    def __str__(self) -> str:  # (a KeyError's would be the message's repr)
        return self.args[0]


@dataclass(frozen=True)
class Vocab:
    """Characters in id order; ``unk`` is True when id 0 is ``<unk>``."""

    itos: tuple[str, ...]
    unk: bool = False
    stoi: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(set(self.itos)) != len(self.itos):
            raise ValueError("vocabulary has duplicate entries")
        if self.unk and (not self.itos or self.itos[0] != UNK):
            raise ValueError("a vocabulary with unk must start with <unk>")
        object.__setattr__(self, "stoi", {s: i for i, s in enumerate(self.itos)})

    def __repr__(self) -> str:  # (its thousands of characters would fill a notebook's cell)
        head = "".join(self.itos[self.unk:self.unk + 20])
        return f"Vocab({len(self):,} entries{', <unk>' if self.unk else ''}, most frequent first: {head!r}{' …' if len(self) > 20 + self.unk else ''})"

    @classmethod
    def build(cls, text: str, min_freq: int = 1, unk: bool = False, counted_in: str | None = None) -> "Vocab":
        """Characters of ``text``, most frequent first; with ``min_freq`` above 1, those seen at least that often in
        ``counted_in`` (default: ``text``) only, so that a held-out part can add characters but not make one frequent."""
        counts = counted(text)
        seen = counts if counted_in is None or min_freq == 1 else counted(counted_in)
        chars = sorted((c for c in counts if seen.get(c, 0) >= min_freq), key=lambda c: (-counts[c], ord(c)))
        return cls(tuple(([UNK] if unk else []) + chars), unk=unk)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, ch: str) -> bool:
        return ch in self.stoi

    def unknown(self, text: str) -> list[str]:
        """The distinct characters of ``text`` this vocabulary cannot encode, in order of appearance."""
        if self.unk:
            return []
        return list(dict.fromkeys(c for c in text if c not in self.stoi))

    def encode(self, text: str) -> list[int]:
        """Ids for ``text``; unknown characters become ``<unk>`` (:class:`UnknownCharacter` without one)."""
        return self.encode_array(text).tolist()

    def encode_known(self, text: str) -> tuple[list[int], int]:
        """Ids for the characters this vocabulary covers, and how many were skipped."""
        ids = self.encode_array(text, known=True)
        return ids.tolist(), len(text) - len(ids)

    def encode_array(self, text: str, known: bool = False) -> np.ndarray:
        """:meth:`encode`'s ids (with ``known``, :meth:`encode_known`'s) as a numpy int64 array, made without a Python
        loop: for texts of millions of characters (``torch.from_numpy`` makes it a tensor without a copy)."""
        codes = code_points(text)
        table = self._table
        ids = table[np.minimum(codes, len(table) - 1)]  # (its last entry, -1, stands for every code point past it)
        if (missing := ids < 0).any():
            if self.unk:
                ids[missing] = 0
            elif known:
                ids = ids[~missing]
            else:
                unknown = tuple(self.unknown(text))
                raise UnknownCharacter(unknown[0], len(self), unknown)
        return ids

    @functools.cached_property
    def _table(self) -> np.ndarray:
        """Id by code point, -1 for a character not held; one entry more than the largest code point held."""
        held = [(ord(c), i) for i, c in enumerate(self.itos) if len(c) == 1]  # (not "<unk>")
        table = np.full(max((o for o, _ in held), default=-1) + 2, -1, np.int64)
        for o, i in held:
            table[o] = i
        return table

    def decode(self, ids) -> str:
        """The text of ``ids`` (ints, or a 1-D tensor); an id outside the vocabulary is a :class:`CharlmError`."""
        try:
            ids = [operator.index(i) for i in ids]  # ints, numpy's or a tensor's; not floats
        except TypeError:
            raise CharlmError(f"ids must be a sequence of whole numbers, got {ids!r}"[:200]) from None
        if bad := [i for i in ids if not 0 <= i < len(self.itos)]:
            raise CharlmError(f"id {bad[0]} is outside the vocabulary (ids 0 to {len(self.itos) - 1})")
        return "".join(self.itos[i] for i in ids)

    def to_dict(self) -> dict:
        return {"itos": list(self.itos), "unk": self.unk}

    @classmethod
    def from_dict(cls, d: dict) -> "Vocab":
        itos, unk = d["itos"], d.get("unk", False)
        if not isinstance(itos, list) or not all(isinstance(c, str) and (len(c) == 1 or c == UNK) for c in itos):
            raise ValueError("vocabulary entries must be single characters")
        if not isinstance(unk, bool):
            raise ValueError(f"vocabulary unk must be true or false, got {unk!r}")
        return cls(tuple(itos), unk=unk)


def code_points(text: str) -> np.ndarray:
    """Each character's code point, a lone surrogate's too (a text given in Python may hold one), as uint32."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def counted(text: str) -> dict[str, int]:
    """How often each character occurs in ``text`` (as ``collections.Counter``, in a twentieth of the time)."""
    counts = np.bincount(code_points(text))
    present = np.flatnonzero(counts)
    return dict(zip(map(chr, present.tolist()), counts[present].tolist()))
