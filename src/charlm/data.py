"""Reading corpora, splitting them, and cutting them into minibatches.

Consecutive sampling (the seed's 相邻采样) folds the corpus into ``batch_size`` rows and
walks along them ``num_steps`` columns at a time, so row ``b`` of one batch continues
row ``b`` of the batch before, and the hidden state can be carried across::

    ids:  a b c d e f g h i j k l m n o p q r s t u v w x     (24 ids, batch_size 2)

    fold:  row 0 | a b c d e f g h i j k l |
           row 1 | m n o p q r s t u v w x |   -> (batch_size, 12)

    num_steps 3:   batch 0     batch 1     batch 2
           x       a b c       d e f       g h i      y is x shifted one column left:
                   m n o       p q r       s t u      y0 = b c d / n o p, ...

The last column cannot be an input (it has no target), so a row of length L gives
``(L - 1) // num_steps`` full batches; a ragged remainder is left out of training
(evaluation keeps it).  Random sampling instead cuts the text into windows of
``num_steps`` characters and draws ``batch_size`` of them, shuffled, per batch; the
state is reset for every batch.
"""

from __future__ import annotations

import codecs
import collections
import functools
import itertools
import os
import re
import stat
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch

from .config import encoding_problem, lone_surrogate
from .errors import CharlmError, CharlmWarning
from .vocab import Vocab

BUNDLED_NAME = "jaychou_lyrics.txt"


def bundled_corpus() -> Path:
    """Path of the Jay Chou lyrics shipped inside the package."""
    return Path(str(resources.files("charlm") / "corpus" / BUNDLED_NAME))


_BOMS = {"utf16": (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE), "utf32": (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)}


def _utf16_order(raw: bytes, lines: bool = True) -> str | None:
    """'le' or 'be' if the start of ``raw`` reads as UTF-16 text in that byte order, else None.

    Read in its own order, UTF-16 text has line breaks and is almost all ASCII, CJK characters and
    CJK or full-width punctuation; read in the other order, the same bytes give code points from all
    over.  (Plain ASCII bytes read as UTF-16 give CJK characters too, but never a line break.)  With
    ``lines=False`` (for bytes known to hold NULs, so not plain ASCII) a text of one line will do, if
    only one order reads as text.
    """
    head = raw[: min(len(raw), 8192) // 2 * 2]
    orders = []
    for order in ("le", "be"):
        # Bytes all below 0x80 are ASCII text as much as UTF-16 (ASCII read two bytes a character gives CJK ones): as
        # UTF-16 their NULs would be the high bytes of ASCII characters (a space, a line break), not low ones
        high, low = head[1::2].count(0), head[::2].count(0)
        # (all of them: ASCII words a program parted by NULs have them on both sides)
        nuls, others = (high, low) if order == "le" else (low, high)
        if not lines and head.isascii() and (nuls <= others or others > nuls // 20):
            continue
        text = head.decode(f"utf-16-{order}", errors="replace")
        if ("\n" in text or not lines) and sum(_common(c) for c in text) >= 0.9 * len(text):
            orders.append(order)
    return orders[0] if orders and (lines or len(orders) == 1) else None


def _common(c: str) -> bool:
    return (c.isascii() and (c.isprintable() or c.isspace())) or "\u4e00" <= c <= "\u9fff" or "\u3000" <= c <= "\u303f" or "\uff00" <= c <= "\uffef"


_CHINESE_CODECS = ("gb18030", "big5", "big5hkscs")  # what Chinese text is in, when not UTF-8 (gb18030 reads GBK and GB2312 too)
_READ_AS_CHINESE = {"gb18030", "gbk", "gb2312", "big5", "big5hkscs", "cp950", "cp936"}  # codec names, normalised


def _share(text: str, pred) -> float:
    """The share of the first megabyte's non-ASCII characters for which ``pred`` holds (0 if there are none)."""
    chars = [c for c in text[: 1 << 20] if not c.isascii()]
    return sum(map(pred, chars)) / len(chars) if chars else 0.0


def _chinese_share(text: str) -> float:
    """The share of CJK ideographs among the first megabyte's non-ASCII characters."""
    return _share(text, lambda c: "\u4e00" <= c <= "\u9fff" or "\u3400" <= c <= "\u4dbf")


# Japanese and Korean in their own legacy encodings, each told by what only it writes: kana (a fifth of Japanese text is
# hiragana), and Hangul with its commonest syllables (particles and endings: a quarter of Korean text).  Their bytes read
# as Chinese too (Shift JIS and EUC-KR in GB18030 are all ideographs), while Chinese text, where it decodes in these
# at all (a few hundred characters of GB2312 may, in cp949), has neither.
_KOREAN_COMMON = frozenset("이다는의에을를하고가지기서한로으도리사자있수대어나게인해정일")


def _hiragana(c: str) -> bool:
    return "\u3041" <= c <= "\u309f"


_OTHER_CJK = (
    ("cp932", "Japanese", _hiragana, 0.2),  # (cp932: Shift JIS as Windows writes it)
    ("euc_jp", "Japanese", _hiragana, 0.2),
    ("cp949", "Korean", lambda c: "\uac00" <= c <= "\ud7a3", 0.5),  # (cp949: EUC-KR and the rest of Hangul)
)


def _reads_as(raw: bytes, skip: str = "") -> tuple[str, list[str]]:
    """The language and the codecs other than ``skip`` (normalised) in which ``raw`` reads as Japanese or Korean text,
    else as Chinese (:func:`_reads_as_chinese`); ``("", [])`` for none."""
    for lang in ("Japanese", "Korean"):
        found = []
        for codec, of, own, least in _OTHER_CJK:
            if of != lang or codec.replace("_", "") == skip:
                continue
            try:
                text = raw.decode(codec)
            except UnicodeDecodeError:
                continue
            if _share(text, own) >= least and (lang != "Korean" or _share(text, _KOREAN_COMMON.__contains__) >= 0.15):
                found.append(codec)
        if found:
            return lang, found
    chinese = _reads_as_chinese(raw, skip)
    return ("Chinese" if chinese else ""), chinese


def _reads_as_chinese(raw: bytes, skip: str = "") -> list[str]:
    """The Chinese codecs other than ``skip`` (normalised) that decode all of ``raw`` to mostly Chinese characters,
    the most Chinese first (big5hkscs only where big5 fails: it reads Big5 as well)."""
    found = []
    for codec in _CHINESE_CODECS:
        if codec == skip or (codec == "big5hkscs" and "big5" in dict(found)):
            continue
        try:
            share = _chinese_share(raw.decode(codec))
        except UnicodeDecodeError:
            continue
        if share >= 0.5:
            found.append((codec, share))
    return [codec for codec, _ in sorted(found, key=lambda x: -x[1])]


class _Undecodable(CharlmError):
    """Bytes that the encoding asked for does not decode; ``where`` (``byte 8 (0xff)``) and ``hint`` when it says them."""

    def __init__(self, message: str, where: str = "", hint: str = ""):
        super().__init__(message)
        self.where, self.hint = where, hint


class _Binary(CharlmError):
    """NUL bytes, where the encoding asked for has none: a binary file, or text in a wide encoding (UTF-16, UTF-32)."""


def _codec(encoding: str) -> tuple[str, str]:
    """The codec's own name (u8 is utf-8, windows-1252 is cp1252), and the same without - and _."""
    if problem := encoding_problem(encoding):
        raise CharlmError(problem)
    codec = codecs.lookup(encoding).name
    return codec, codec.replace("-", "").replace("_", "")


STREAM_CHUNK = 1 << 20
WIDE = ("utf16", "utf32")  # codecs (as _codec names them) whose text holds NUL bytes


def read_stream(f, name: str, encoding: str = "utf-8") -> bytes:
    """All the bytes of a pipe, a device or standard input, a chunk at a time: a NUL byte, where the encoding has none,
    stops the reading with the error a file holding it gets (/dev/zero and /dev/urandom never end); in UTF-16 or
    UTF-32, whose text is full of NUL bytes, bytes that do not decode or a U+0000 character stop it."""
    codec, name_ = _codec(encoding)
    wide = name_.startswith(WIDE)
    decoder = codecs.getincrementaldecoder(codec)() if wide else None
    chunks = []
    while chunk := f.read(STREAM_CHUNK):
        chunks.append(chunk)
        if not wide and b"\x00" in chunk:
            _decode(Path(name), b"".join(chunks), encoding)  # raises: a binary file, or UTF-16 read without --encoding
        if wide:
            if (nul := chunk.find(b"\x00" * 8)) >= 0:  # a U+0000 at least, in either: /dev/zero
                raise _Binary(f"{name}: looks like a binary file (NUL bytes at offset {sum(map(len, chunks[:-1])) + nul:,}), not text")
            try:
                if "\x00" in decoder.decode(chunk):  # (no text holds U+0000: /dev/zero)
                    raise _Binary(f"{name}: looks like a binary file (U+0000 characters, read as {encoding}), not text")
            except UnicodeError:  # (UTF-16 without a byte-order mark: a UnicodeError of its own)
                _decode(Path(name), b"".join(chunks), encoding)  # raises its error, naming the offset (/dev/urandom)
                raise _Undecodable(f"{name}: cannot be read as {encoding}") from None
        if len(chunk) < STREAM_CHUNK:  # a buffered read is short only at the end (one Ctrl-D ends typed text, not two)
            break
    return b"".join(chunks)


def _decode(path: Path, raw: bytes, encoding: str, blank_ok: bool = False, hints: list | None = None) -> str:
    """``raw`` decoded; a likely wrong encoding is a warning, or goes into ``hints`` (a folder's files: one warning)."""
    if not raw:
        raise CharlmError(f"{path}: the file is empty")
    codec, name = _codec(encoding)
    nul = raw.find(b"\x00")
    if nul >= 0 and not name.startswith(WIDE):
        if raw[:4] in (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE):  # (before UTF-16's: UTF-32 LE's begins as it does)
            raise _Undecodable(f"{path}: looks like UTF-32 text (a byte-order mark, NUL bytes); try --encoding utf-32")
        if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):  # a UTF-16 byte-order mark
            raise _Undecodable(f"{path}: looks like UTF-16 text (a byte-order mark, NUL bytes); try --encoding utf-16")
        if order := _utf16_order(raw) or _utf16_order(raw, lines=False):
            raise _Undecodable(f"{path}: looks like UTF-16 text without a byte-order mark (NUL bytes every other byte); try --encoding utf-16-{order}")
        raise _Binary(f"{path}: looks like a binary file (a NUL byte at offset {nul:,}), not text")
    if name in _BOMS and not raw.startswith(_BOMS[name]):
        if raw.startswith(codecs.BOM_UTF8) or (not raw.isascii() and _valid_utf8(raw)):
            raise CharlmError(f"{path}: the file is valid UTF-8, not {codec}: leave out --encoding")
        if name == "utf16" and raw[:4] == codecs.BOM_UTF32_BE:
            raise CharlmError(f"{path}: looks like UTF-32 text (its byte-order mark); try --encoding utf-32")
        # without a byte-order mark Python's codec assumes little-endian and decodes anything to something
        order = _utf16_order(raw) if name == "utf16" else None
        hint = f"its NUL bytes suggest --encoding {codec}-{order}" if order else f"say --encoding {codec}-le or {codec}-be, if it is {codec} at all"
        raise CharlmError(f"{path}: no byte-order mark, so the byte order of {codec} is unknown; {hint}")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        cut = len(e.object) - e.start  # (e.object: what the codec decoded, after a byte-order mark utf-8-sig skipped)
        kept = raw[: len(raw) - cut]
        if (e.reason in ("unexpected end of data", "incomplete multibyte sequence", "truncated data") and e.end == len(e.object)
                and kept and _decodes(kept, encoding) and (cut > 1 or not kept.isascii() or name.startswith(WIDE))
                and (name.startswith("utf") or (not _valid_utf8(raw) and _completes(raw[len(kept):], encoding)))):
            # cut part-way through its last character (as `head -c` cuts a file): that character left out, and said; not
            # one lone byte after nothing but ASCII (Latin-1's é ending "café" is no cut UTF-8 character)
            warnings.warn(f"{path} ends part-way through a character (as a file cut at a byte count does): its last "
                          f"{f'{cut} bytes are' if cut > 1 else 'byte is'} left out", CharlmWarning, stacklevel=2)
            return _decode(path, kept, encoding, blank_ok, hints)
        # the offset in the file: utf-8-sig's counts from after its byte-order mark, idna's in the label it failed on
        # (the first of that name: an earlier one would have failed first)
        hint, at = _decoding_hint(raw, name), max(raw.find(e.object), 0) + e.start
        where = f"byte {at} (0x{raw[at]:02x})"
        raise _Undecodable(f"{path}: cannot decode {where} as {encoding}; {hint}", where, hint) from None
    except UnicodeError as e:  # a codec of names (idna, punycode) refusing what is not one
        raise CharlmError(f"{path}: cannot be read as {encoding}: {str(e).splitlines()[0]}") from None
    if name.startswith(WIDE) and "\x00" in text:  # (no text holds U+0000: UTF-32 read as UTF-16 has one in each character)
        wider = name.startswith("utf16") and raw[:4] in (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)
        raise _Binary(f"{path}: read as {encoding}, it holds U+0000 characters, which no text has; "
                      + ("it looks like UTF-32 text (its byte-order mark): try --encoding utf-32" if wider else
                         "it is not text in that encoding"))
    if hint := _other_encoding(raw, name, text):
        if hints is None:
            warnings.warn(f"{path} was read as {encoding} as asked, but {hint}", CharlmWarning, stacklevel=2)
        else:
            hints.append((path, hint))
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip() and not blank_ok:
        raise CharlmError(f"{path}: the file holds no text")
    return text


def _decoded(raw: bytes, encoding: str) -> str | None:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:  # (a first megabyte cut inside a character: up to there)
        return raw[: e.start].decode(encoding) if e.end == len(raw) and e.start else None


@functools.cache
def _common_chinese() -> frozenset[str]:
    """The Chinese characters of the bundled lyrics: 2,500 common ones, most of them the same in both scripts."""
    return frozenset(c for c in bundled_corpus().read_text(encoding="utf-8") if "\u4e00" <= c <= "\u9fff")


def _familiar_share(text: str) -> float:
    """The share of the CJK ideographs in ``text`` (its first megabyte) that are common ones (:func:`_common_chinese`)."""
    han = [c for c in text[: 1 << 20] if "\u4e00" <= c <= "\u9fff" or "\u3400" <= c <= "\u4dbf"]
    return sum(c in _common_chinese() for c in han) / len(han) if han else 0.0


def _decodes(raw: bytes, encoding: str) -> bool:
    try:
        raw.decode(encoding)
        return True
    except UnicodeDecodeError:
        return False


def _completes(tail: bytes, encoding: str) -> bool:
    """Whether one or two more bytes make ``tail`` a character: GB18030's and Big5's codecs call any byte above 0x7f at
    the end of the text an incomplete sequence, even one no character starts with (0x80, 0xff)."""
    return any(_decodes(tail + bytes(more), encoding)
               for n in (1, 2) for more in itertools.product(range(256), repeat=n))


def _valid_utf8(raw: bytes) -> bool:
    return _decodes(raw, "utf-8")


def _mostly_utf8(raw: bytes) -> bool:
    """Whether ``raw`` is UTF-8 but for a few bytes (a damaged file: under 1 in 10 of its non-ASCII characters are
    not).  Text in another encoding read as UTF-8 fails nearly everywhere (Latin-1's é before a letter, GBK's pairs)."""
    text = raw.decode("utf-8", errors="replace")
    bad = text.count("\ufffd")
    return 0 < bad <= 0.1 * (len(text) - len(text.encode("ascii", "ignore")))  # (non-ASCII characters, counted in C)


DAMAGED_UTF8 = "the rest of the file is UTF-8, so it looks damaged there: mend or remove the bytes that are not"


def _decoding_hint(raw: bytes, name: str) -> str:
    """What to try for a file that did not decode as ``name`` (normalised: lower case, no dashes)."""
    if other := {"utf16le": "utf-16-be", "utf16be": "utf-16-le"}.get(name):  # the other byte order first
        return f"try --encoding {other}"
    if name not in ("utf8", "utf8sig") and _valid_utf8(raw):
        return "the file is valid UTF-8: leave out --encoding"
    if name in ("utf8", "utf8sig") and _mostly_utf8(raw):
        return DAMAGED_UTF8
    lang, codecs_ = _reads_as(raw, name)
    if codecs_:
        return f"its bytes read as {lang} text in {' and '.join(codecs_)}: try --encoding {codecs_[0]}"
    tries = [f"{' or '.join(left)} ({lang})" for names, lang in ((("gb18030", "big5"), "Chinese"), (("cp1252",), "Western European"))
             if (left := [x for x in names if x != name])]
    return f"try --encoding {', '.join(tries)} or the file's real encoding"


def _other_encoding(raw: bytes, name: str, text: str) -> str | None:
    """Why a file that decoded as asked is likely in another encoding (mojibake otherwise trains in silence), or None.

    Valid UTF-8 with non-ASCII bytes is almost never anything else.  Chinese in GB18030 or Big5 read with a
    one-byte code page (latin-1, cp1252) decodes too, but most of its bytes are above 0x7f, where accented
    letters are a few in a hundred in Western text.  Big5 read as GB18030 (or the reverse, where it decodes)
    gives characters, but far fewer of them Chinese ones than the right codec does.
    """
    if name in ("utf8", "utf8sig"):
        return None
    # (ASCII too: two letters made one character; 32 characters at least: 你好 in UTF-16 is the bytes `O}Y)
    if (name.startswith("utf16") and raw.isascii() and b"\x00" in raw and len(raw) >= 64
            and sum("\u4e00" <= c <= "\u9fff" for c in text[:4096]) > 0.5 * len(text[:4096])):
        # (ASCII letters read two bytes a character are CJK ones; UTF-16 text whose every byte is below 0x80 is nearly
        # all ASCII characters, each with its NUL byte)
        return ("its bytes are all ASCII, and read so most of its characters are CJK ones made of two ASCII letters: it "
                "looks like ASCII text (with NUL bytes in it), not UTF-16; if its characters look wrong, leave out --encoding")
    if name.startswith(WIDE) and len(raw) >= 64 and b"\x00" not in raw and _valid_utf8(raw):
        return ("it is valid UTF-8 and holds no NUL byte, while UTF-16 text with any ASCII in it (a space, a line break) "
                "does; if its characters look wrong, leave out --encoding")
    if raw.isascii():
        return None
    if _valid_utf8(raw):
        return "it is valid UTF-8, which text in other encodings almost never is; if its characters look wrong, leave out --encoding"
    if (name in _READ_AS_CHINESE and (lang := _reads_as(raw, name))[0] in ("Japanese", "Korean")
            and raw.decode(lang[1][0]) != text):  # (kana alone are the same bytes in GB18030 and EUC-JP)
        return f"its bytes read as {lang[0]} text in {lang[1][0]}; if its characters look wrong, try --encoding {lang[1][0]}"
    if name in _READ_AS_CHINESE:
        # Big5 read as GB18030 gives characters of its private use area, where GB18030 puts the codes it does not assign
        # (Russian, kana or pinyin in GB18030 are not Chinese characters either, but have none of those)
        share, private = _chinese_share(text), sum("\ue000" <= c <= "\uf8ff" for c in text[: 1 << 20])
        if share < 0.5 and private and (chinese := _reads_as_chinese(raw, name)):
            return (f"only {share:.0%} of its non-ASCII characters are Chinese ones in {name}, while its bytes read as Chinese "
                    f"text in {chinese[0]}; if its characters look wrong, try --encoding {chinese[0]}")
        if name in ("big5", "big5hkscs", "cp950") and (gb := _decoded(raw[: 1 << 20], "gb18030")) is not None:
            # GB18030 read as Big5 gives Chinese characters too, but rare ones: few of them are in the lyrics charlm
            # ships (measured: 14% of the lyrics' own in GB18030 read as Big5, against 98% of a traditional text in Big5)
            mine, theirs = _familiar_share(text), _familiar_share(gb)
            if mine < 0.5 <= theirs - 0.3:
                return (f"only {mine:.0%} of its Chinese characters are common ones read as {name}, against {theirs:.0%} "
                        f"read as gb18030; if its characters look wrong, try --encoding gb18030")
        return None
    if _mostly_utf8(raw):  # (a one-byte code page reads it too: as Ã© for é)
        return ("most of its non-ASCII bytes are UTF-8 characters, with a few bytes that are not: it looks like UTF-8 "
                "damaged there; if its characters look wrong (Ã© for é), mend or remove those bytes and leave out --encoding")
    one_byte_a_char = len(text) == len(raw)
    head = raw[: 1 << 20]
    high = len(head) - len(re.sub(rb"[\x80-\xff]", b"", head))
    if not one_byte_a_char or high < 16 or high < 0.3 * len(head):
        return None
    lang, codecs_ = _reads_as(raw)
    if codecs_:
        return f"its bytes read as {lang} text in {codecs_[0]}; if its characters look wrong, try --encoding {codecs_[0]}"
    return None


def decode_text(raw: bytes, encoding: str = "utf-8", name: str = "standard input") -> str:
    """Bytes that came from elsewhere than a file (standard input), decoded and checked as a file's are."""
    if not raw:
        raise CharlmError(f"{name}: nothing came in (it is empty)")
    return _decode(Path(name), raw, encoding)


def as_trained(read, given: str | None, trained: str, name: str = ""):
    """``read(encoding)`` for a text a model is to score: in ``given`` where the user named one; else in UTF-8 (what
    ``charlm generate`` writes), and where the bytes do not decode so (or look like UTF-16), in ``trained``, the
    encoding the model's training text was read in (a file of the same kind as it).  ``read`` must read the same
    bytes each time (a stream is read once, before: :func:`read_scored`).  A binary file, a missing one or a folder
    in mixed encodings is the UTF-8 reading's error; so is a text neither encoding reads."""
    if given:
        return read(given)
    kind = _codec(trained)[1]
    with warnings.catch_warnings(record=True) as notes:  # the UTF-8 reading's notes stand only if it stands
        warnings.simplefilter("always")
        try:
            text = read("utf-8")
        except (_Undecodable, _Binary) as not_utf8:  # (NUL bytes are a wide encoding's text, not a binary file's)
            if kind.startswith("utf8") or (isinstance(not_utf8, _Binary) and not kind.startswith(WIDE)):
                raise
            if isinstance(not_utf8, _Undecodable) and not_utf8.hint == DAMAGED_UTF8:  # UTF-8 but for a few bytes: said so,
                raise  # not read as mojibake in a one-byte encoding the run's text was in
            failed = not_utf8
        else:
            failed = None
    if failed is None:
        for note in notes:
            warnings.warn(note.message, note.category, stacklevel=2)
        return text
    with warnings.catch_warnings(record=True) as notes:
        warnings.simplefilter("always")
        try:
            text = read(trained)
        except _Undecodable as e:
            if isinstance(failed, _Undecodable) and failed.where and e.where:  # both were tried: the error says both, and
                # the hint is the second's (the first's may suggest the run's encoding, which has just failed)
                raise _Undecodable(f"{name or 'the text'}: cannot decode {failed.where} as utf-8, nor {e.where} as {trained}, "
                                   f"the training text's encoding; {e.hint}") from None
            raise failed from None
        except CharlmError:
            raise failed from None
    warnings.warn(f"{name + ': ' if name else ''}not UTF-8, so read as {trained}, as the model's training text was "
                  f"(--encoding to say otherwise)", CharlmWarning, stacklevel=2)
    for note in notes:  # (a hint on how it reads is the run's encoding's, not one the user asked for)
        warnings.warn(str(note.message).replace(f"as {trained} as asked", f"as {trained}"), note.category, stacklevel=2)
    return text


def stream_encoding(given: str | None, trained: str) -> str:
    """The encoding a stream to score is read in, once (:func:`read_stream`): ``given``, else the run's where it is
    UTF-16 or UTF-32 (whose NUL bytes would stop a UTF-8 reading), else UTF-8."""
    return given or (trained if _codec(trained)[1].startswith(WIDE) else "utf-8")


def read_scored(path, given: str | None, trained: str) -> str:
    """A file (or folder, or pipe) to score or inspect, read by :func:`as_trained`; a pipe or device is read once."""
    p = Path(path)
    if _exists(p) and not (p.is_file() or p.is_dir()):  # its bytes come once: decoded here, both ways if need be
        raw = _read_bytes(p, stream_encoding(given, trained))
        return as_trained(lambda enc: _decode(p, raw, enc), given, trained, str(p))
    return as_trained(lambda enc: read_text(path, enc), given, trained, str(path))


def _exists(p: Path) -> bool:
    """Whether ``p`` exists; one inside a folder this user may not enter is an error saying so."""
    try:
        os.stat(p)
        return True
    except PermissionError as e:
        raise CharlmError(f"{p}: cannot read ({e.strerror})") from None
    except (OSError, ValueError):  # (no such file, a broken link; a NUL in the name)
        return False


def read_text(path: str | os.PathLike | None = None, encoding: str = "utf-8", hidden: bool = False,
              name_files: bool = True) -> str:
    """The text of a file, or of every non-empty ``.txt`` file under a folder (sorted; each ends with a newline), hidden
    ones too with ``hidden`` (as charlm read folders until 2026-11-30).  A folder's note names the files it read, with
    ``name_files`` (not when a run's corpus is read again: the training said it).

    ``None`` or ``""`` reads the bundled lyrics.  Bytes that do not decode are an error
    naming the file and the offset, never dropped.
    """
    p = bundled_corpus() if not path else Path(path)
    if not _exists(p):
        if p.is_symlink():  # (a link whose target is gone, or one that leads back to itself)
            raise CharlmError(f"{p}: a link that leads to no file (its target {os.readlink(p)!r} is missing, or the "
                              f"links go round in a loop)")
        raise CharlmError(f"{p}: no such file or folder")
    if p.is_dir():
        files, others = _folder_files(p, hidden)
        if not files:
            raise CharlmError(f"{p}: no .txt file to read in the folder{_left_out(p, others)}; give a single file "
                              "(cat several into one), or keep the text in .txt files, not hidden ones")
        said = []  # one note for the folder: which files make the one text (a corpus's README.txt or test split would
        if name_files and (others or len(files) > 1):  # be in it), and how they read
            named = ", ".join(str(f.relative_to(p)) for f in files[:4]) + (", …" if len(files) > 4 else "")
            said.append(f"{len(files)} .txt file{'s' if len(files) != 1 else ''} read"
                        + (f" as one text, in name order: {named}" if len(files) > 1 else "") + _left_out(p, others))
        raws = []
        for f in files:
            try:
                raws.append((f, f.read_bytes()))
            except OSError as e:
                raise CharlmError(f"{f}: cannot read ({e.strerror or e})") from None
        hints: list[tuple[Path, str]] = []
        try:
            texts = [_decode(f, raw, encoding, blank_ok=True, hints=hints) for f, raw in raws if raw]
        except _Undecodable:
            _check_one_encoding(p, raws)  # the folder's files in UTF-8 and in another encoding: no --encoding reads them all
            raise
        texts = [t for t in texts if t.strip()]  # an empty or blank file adds nothing: passed over
        if not texts:
            raise CharlmError(f"{p}: every .txt file in the folder is empty or blank")
        if hints:  # not one note per song
            first, hint = hints[0][0].relative_to(p), hints[0][1]
            said.append(f"{len(hints)} of its {len(raws)} .txt files were read as {encoding} as asked; {first}, for one: {hint}"
                        if len(hints) > 1 else f"{first} was read as {encoding} as asked, but {hint}")
        if said:
            warnings.warn(f"{p}: {'; '.join(said)}", CharlmWarning, stacklevel=2)
        return "".join(t if t.endswith("\n") else t + "\n" for t in texts)
    return _decode(p, _read_bytes(p, encoding), encoding)


def _read_bytes(p: Path, encoding: str) -> bytes:
    """A file's bytes, or a pipe's (as <(…) gives) or a device's, read once (:func:`read_stream`, by ``encoding``'s
    NUL bytes)."""
    try:
        if p.is_file():
            return p.read_bytes()
        with open(p, "rb") as f:
            return read_stream(f, str(p), encoding)
    except OSError as e:
        raise CharlmError(f"{p}: cannot read ({e.strerror})") from None


def _folder_files(folder: Path, hidden: bool = False) -> tuple[list[Path], list[Path]]:
    """A folder's corpus, its ``.txt`` files at any depth (sorted), and what is left out: other files, and hidden files
    and folders (a name starting with a dot: .git, .ipynb_checkpoints with its copies of the same texts) and linked
    folders, each named once (their files not looked at)."""
    files, others = [], []

    def unreadable(e: OSError):  # a folder that cannot be listed is an error, as a file that cannot be read is
        raise CharlmError(f"{e.filename}: cannot read the folder ({e.strerror or e})")

    for root, dirs, names in os.walk(folder, onerror=unreadable):  # (links to folders are not followed)
        here = Path(root)
        kept = [d for d in dirs if (hidden or not d.startswith(".")) and not (here / d).is_symlink()]
        others += [here / d for d in dirs if d not in kept]
        dirs[:] = kept
        for name in names:
            f = here / name
            txt = os.path.normcase(name).endswith(".txt")  # (.TXT too where names have no case, as on Windows)
            (files if txt and (hidden or not name.startswith(".")) and _regular(f) else others).append(f)
    return sorted(files), sorted(others)


def _regular(f: Path) -> bool:
    """Whether ``f`` (its link followed) is a regular file; one that cannot be looked at is an error naming why."""
    try:
        return stat.S_ISREG(os.stat(f).st_mode)
    except PermissionError as e:
        if not os.access(f.parent, os.X_OK):  # a folder listed but not entered (mode 644): none of its files can be read
            raise CharlmError(f"{f.parent}: cannot read the folder ({e.strerror or e})") from None
        raise CharlmError(f"{f}: cannot read ({e.strerror or e})") from None  # (a link into a folder closed to this user)
    except OSError:  # (a broken link)
        return False


def _left_out(folder: Path, others: list[Path]) -> str:
    """`` (3 left out, not .txt files: a.py, b.py, .git/)``, or nothing."""
    if not others:
        return ""
    named = ", ".join(str(f.relative_to(folder)) + ("/" if f.is_dir() else "") for f in others[:3]) + (", …" if len(others) > 3 else "")
    return f" ({len(others):,} left out, not .txt files or hidden: {named})"


def _check_one_encoding(folder: Path, raws: list[tuple[Path, bytes]]) -> None:
    """A CharlmError if some of a folder's files are UTF-8 and others not (plain ASCII reads as either)."""
    utf8 = [f for f, raw in raws if not raw.isascii() and _valid_utf8(raw)]
    other = [f for f, raw in raws if not _valid_utf8(raw) and not _mostly_utf8(raw) and b"\x00" not in raw]  # not damaged UTF-8
    if utf8 and other:
        def many(files):
            return f"{files[0].relative_to(folder)} is" if len(files) == 1 else f"{len(files)} ({files[0].relative_to(folder)}, …) are"

        codecs_ = _reads_as(dict(raws)[other[0]])[1]
        how = f" (iconv -f {codecs_[0]} -t utf-8, for {other[0].relative_to(folder)})" if codecs_ else ""
        raise CharlmError(f"{folder}: its .txt files are in more than one encoding: {many(utf8)} UTF-8 and {many(other)} not; "
                          f"a folder is read in one --encoding, so convert the others to UTF-8{how}")


def spaced_symbols(text: str, sample: int = 20_000) -> bool:
    """Whether the text is written a symbol and a space at a time ("n o _ i t", as Penn Treebank's character files are),
    judged on its first ``sample`` characters: nine lines in ten of five symbols or more so written."""
    lines = [line.strip(" ") for line in text[:sample].split("\n")]
    lines = [line for line in lines if len(line) >= 9]
    spaced = sum(line[1::2].count(" ") == len(line) // 2 and " " not in line[::2] for line in lines)
    return len(lines) >= 3 and spaced >= 0.9 * len(lines)


SPACED_NOTE = ("every other character of the text is a space (as in Penn Treebank's character files, 'n o _ i t'): half the "
               "predictions are of those spaces, which a model trained on such text gets almost free, so its figures per "
               "character are about half those per symbol; sed 's/ //g' FILE gives the symbols alone")


def typed_line_breaks(text: str, flag: str = "") -> str:
    """Text as typed on a command line, where ``\\n`` stands for a line break (a shell passes none otherwise); with
    ``flag``, text holding bytes that are not UTF-8 (as the shell passed them: a character cut in two, another
    encoding) is an error naming it."""
    if flag and lone_surrogate(text):
        from .config import _shown

        raise CharlmError(f"{flag} '{_shown(text)[:60]}' is not valid UTF-8 (type it in UTF-8, or give a file and its --encoding)")
    return text.replace("\\n", "\n")


def normalize(text: str, newlines: str = "keep") -> str:
    """Line endings to ``\\n``; with ``newlines='space'`` every line break becomes a space (the seed's way)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if newlines == "space":
        text = text.replace("\n", " ")
    return text


@dataclass(frozen=True)
class Corpus:
    """The training and validation text of one run and its vocabulary."""

    train_text: str
    val_text: str
    vocab: Vocab
    total_chars: int
    source: str | None = None  # the TrainConfig.data it was read from; IN_MEMORY for corpus_from_text; None: made by hand
    # the TrainConfig fields it was read and cut by (READ_AS), for the Trainer to check; None: made by hand
    read_as: dict | None = field(default=None, compare=False)

    def __repr__(self) -> str:  # (the whole text would fill a notebook's cell)
        return (f"Corpus({self.source!r}, {len(self.train_text):,} training characters, {len(self.val_text):,} held out, "
                f"{self.vocab!r})")

    @property
    def train_ids(self) -> torch.Tensor:
        return torch.from_numpy(self.vocab.encode_array(self.train_text))

    def val_ids(self) -> tuple[torch.Tensor, int]:
        """Validation ids and the number of characters the vocabulary could not cover (skipped)."""
        ids = self.vocab.encode_array(self.val_text, known=True)
        return torch.from_numpy(ids), len(self.val_text) - len(ids)


READ_AS = ("encoding", "newlines", "val_fraction", "limit_chars")  # what shapes a corpus's text (Corpus.read_as)


def split(text: str, val_fraction: float) -> tuple[str, str]:
    """The first ``1 - val_fraction`` of the characters, and the rest (nanoGPT's cut: ``int(n * 0.9)`` for 10%)."""
    n_train = int(len(text) * (1 - val_fraction))
    return text[:n_train], text[n_train:]


IN_MEMORY = "<a text given in memory>"  # TrainConfig.data of a model trained on corpus_from_text: nothing to read again


def load_corpus(cfg, vocab: Vocab | None = None) -> Corpus:
    """Read, normalise and split the corpus of a ``TrainConfig``; build the vocabulary unless given."""
    _check_config("load_corpus", cfg)
    if cfg.data == IN_MEMORY:
        raise CharlmError("this model was trained on a text given in memory (charlm.data.corpus_from_text), "
                          "which cannot be read again here")
    return _corpus(read_text(cfg.data, cfg.encoding, name_files=vocab is None), cfg, vocab, cfg.data)  # (vocab: read again)


def corpus_from_text(text: str, cfg, vocab: Vocab | None = None) -> Corpus:
    """The corpus of a text given as a string, cut as ``load_corpus`` cuts a file (``cfg``'s newlines, split, limit, vocabulary).

    A model trained on it records ``data`` as :data:`IN_MEMORY`: resuming it, the copy check and
    the bigram yardstick need the text, which is not on disk (save it to a file and train with
    ``data=`` that file to have them).
    """
    if not isinstance(text, str):
        raise TypeError(f"corpus_from_text needs the text as a str, got {type(text).__name__}"
                        + (" (its .decode('utf-8') is one)" if isinstance(text, (bytes, bytearray)) else ""))
    if not text:
        raise CharlmError("corpus_from_text needs a non-empty string")
    _check_config("corpus_from_text", cfg)
    if lone := lone_surrogate(text):  # no checkpoint could write it (after an epoch's training)
        raise CharlmError(f"corpus_from_text: the text holds a lone surrogate, \\u{ord(lone[0]):04x}, at character "
                          f"{lone.start():,}: no character (bytes decoded with errors='surrogateescape', or half of a JSON "
                          f"\\ud83d-style pair); decode the text strictly, or drop it")
    return _corpus(text.replace("\ufeff", "", 1) if text.startswith("\ufeff") else text, cfg, vocab, IN_MEMORY)


def _check_config(name: str, cfg) -> None:
    from .config import TrainConfig

    if not isinstance(cfg, TrainConfig):
        hint = f" (charlm.train_config(data={cfg!r}) makes one)" if isinstance(cfg, (str, os.PathLike)) else ""
        raise TypeError(f"{name} takes a TrainConfig{hint}, got {type(cfg).__name__}")


def _corpus(raw: str, cfg, vocab: Vocab | None, source: str) -> Corpus:
    text = normalize(raw, cfg.newlines)
    train_text, val_text = split(text, cfg.val_fraction)
    if cfg.limit_chars:
        train_text = train_text[: cfg.limit_chars]
    if vocab is None:
        chars = text if cfg.vocab_from == "all" else train_text
        # --min-freq counts the training part alone: held-out text must not decide how the training text is read
        vocab = Vocab.build(chars, min_freq=cfg.min_freq, unk=cfg.unk, counted_in=train_text)
        if vocab.unk and len(vocab) == 1 and train_text:  # every character <unk>: nothing to learn, nothing to write
            most = collections.Counter(train_text).most_common(1)[0][1]
            raise CharlmError(f"--min-freq {cfg.min_freq} leaves no character in the vocabulary but <unk>: the training "
                              f"text's most frequent is there {most:,} time{'s' if most != 1 else ''}; give a lower --min-freq")
    return Corpus(train_text, val_text, vocab, len(text), source, {k: getattr(cfg, k) for k in READ_AS})


def min_chars(batch_size: int, num_steps: int, sampling: str) -> int:
    """The fewest training characters that make one full batch."""
    if sampling == "random":
        return batch_size * num_steps + 1
    return batch_size * (num_steps + 1)


def check_enough(n: int, batch_size: int, num_steps: int, sampling: str, held: str = "") -> None:
    """A training text too short for one batch is an error; ``held`` says what was held out of it (" (of the text's
    10, 1 held out by --val-fraction 0.1)")."""
    need = min_chars(batch_size, num_steps, sampling)
    if n < need:
        raise CharlmError(
            f"the training text has {n} character{'s' if n != 1 else ''}{held}, fewer than one batch needs: "
            f"batch_size {batch_size} x num_steps {num_steps} ({sampling}) needs at least {need}; "
            f"use a longer corpus or smaller --batch-size/--num-steps"
        )


def fold(ids: torch.Tensor, rows: int) -> torch.Tensor:
    """Cut a 1-D sequence into ``rows`` equal consecutive rows (dropping the remainder): (rows, len // rows)."""
    length = ids.numel() // rows
    return ids[: rows * length].view(rows, length)


def bptt_slices(length: int, num_steps: int, drop_last: bool = True) -> list[tuple[int, int]]:
    """(start, stop) column ranges of the inputs along a folded row of ``length`` columns.

    The one place truncated back-propagation through time is cut, for training and
    evaluation alike; targets are the same range shifted by one column.
    """
    last = length - 1  # the last column is only ever a target
    starts = range(0, last, num_steps)
    out = [(s, min(s + num_steps, last)) for s in starts]
    if drop_last and out and out[-1][1] - out[-1][0] < num_steps:
        out.pop()
    return out


def num_batches(n: int, batch_size: int, num_steps: int, sampling: str) -> int:
    if sampling == "random":
        return ((n - 1) // num_steps) // batch_size
    return len(bptt_slices(n // batch_size, num_steps))


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The random stream that orders one epoch's batches: a function of (seed, epoch) only, so a resumed run replays it."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) % 2**63)  # any allowed seed, the same for small ones


def batches(ids: torch.Tensor, batch_size: int, num_steps: int, sampling: str, seed: int = 0, epoch: int = 0, start: int = 0):
    """Yield ``(x, y)`` pairs of shape (batch_size, num_steps) for one epoch, from batch ``start`` on."""
    if sampling == "random":
        n_windows = (ids.numel() - 1) // num_steps
        # drawn on the CPU (the same order on every device), then moved once: no copy to a GPU per batch
        order = torch.randperm(n_windows, generator=epoch_generator(seed, epoch)).to(ids.device)
        offsets = torch.arange(num_steps, device=ids.device)
        for b in range(start, n_windows // batch_size):
            starts = order[b * batch_size : (b + 1) * batch_size] * num_steps
            idx = starts[:, None] + offsets[None, :]  # (batch_size, num_steps)
            yield ids[idx], ids[idx + 1]
        return
    data = fold(ids, batch_size)  # (batch_size, L)
    for s, e in bptt_slices(data.shape[1], num_steps)[start:]:
        yield data[:, s:e], data[:, s + 1 : e + 1]


def hash_ids(ids: torch.Tensor) -> str:
    """A checksum of a text's ids, as a checkpoint records its training text's (``train_hash``)."""
    import hashlib

    return hashlib.sha256(ids.to(torch.int64).numpy().tobytes()).hexdigest()[:16]


class HeldOutChanged(CharlmError):
    """The held-out part of a run's text changed since it was validated on (its training part did not)."""


def hash_text(text: str) -> str:
    """A checksum of a text, as a checkpoint records its held-out text's (``val_hash``)."""
    import hashlib

    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def training_text(ckpt) -> str:
    """The text a checkpoint was trained on, read again from its config (same split, same limit).

    A file changed since the training is an error: a copy check or a bigram yardstick against other text would be wrong.
    """
    return _unchanged_corpus(ckpt).train_text


def heldout_text(ckpt) -> str:
    """The held-out part of the text a checkpoint was trained on (what its validation loss was measured on), read again
    as :func:`training_text` is; "" for a run with none (``--val-fraction 0``)."""
    corpus = _unchanged_corpus(ckpt)
    if (stored := ckpt.trainer.get("val_hash")) and hash_text(corpus.val_text) != stored:
        raise HeldOutChanged(f"{ckpt.train_config.data or 'the bundled lyrics'}: its held-out part is no longer the text "
                             f"{ckpt.path} was validated on (its checksum differs; the training part is unchanged): it changed "
                             f"since, and its figure would not be the training's; put the original back")
    return corpus.val_text


def _unchanged_corpus(ckpt) -> Corpus:
    corpus = checkpoint_corpus(ckpt)
    if not _trained_on(ckpt, corpus):
        source = ckpt.train_config.data or "the bundled lyrics"
        raise CharlmError(f"{source} is no longer the text {ckpt.path} was trained on (its checksum differs): "
                          f"it changed since, and comparing against it would be wrong; put the original back")
    return corpus


def checkpoint_corpus(ckpt, cfg=None) -> Corpus:
    """The corpus of the checkpoint ``ckpt`` read again, by ``cfg`` (default: its own training config), in its vocabulary.

    A folder that holds hidden .txt files, read by a charlm that still read them (until 2026-11-30), is read so again
    when the checkpoint's checksum says that is how it was trained, so that the run can be resumed and checked.
    """
    cfg = cfg or ckpt.train_config
    if (cfg.data and cfg.data == ckpt.train_config.data and cfg.data != IN_MEMORY and not os.path.isabs(cfg.data)
            and not _exists(Path(cfg.data))):
        raise CharlmError(f"{cfg.data}: no such file or folder here; the run stored its training text's path as typed (as "
                          f"charlm did before 2026-11-30): run this from the folder it was trained in")
    folder = bool(cfg.data) and cfg.data != IN_MEMORY and Path(cfg.data).is_dir()
    corpus, error = None, None
    with warnings.catch_warnings(record=True) as notes:  # held back: a note that hidden files were left out may not hold
        warnings.simplefilter("always")
        try:
            corpus = load_corpus(cfg, vocab=ckpt.vocab)
        except CharlmError as e:
            if not folder:
                raise
            error = e  # (its only .txt files may be hidden ones)
    if folder and (corpus is None or not _trained_on(ckpt, corpus)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            older = _corpus(read_text(cfg.data, cfg.encoding, hidden=True, name_files=False), cfg, ckpt.vocab, cfg.data)
        if _trained_on(ckpt, older):
            warnings.warn(f"{cfg.data}: read with its hidden .txt files, as {ckpt.path} was trained (charlm now leaves "
                          f"them out of a new training)", CharlmWarning, stacklevel=2)
            return older
    if error is not None:
        raise error
    for note in notes:
        warnings.warn(note.message, note.category, stacklevel=2)
    return corpus


def _trained_on(ckpt, corpus: Corpus) -> bool:
    """Whether ``corpus``'s training text is the one ``ckpt`` was trained on (by its checksum; without one, yes)."""
    stored = ckpt.trainer.get("train_hash")
    try:
        return not stored or hash_ids(torch.from_numpy(ckpt.vocab.encode_array(corpus.train_text))) == stored
    except KeyError:  # a character the model never saw
        return False


def pretraining_texts(ckpt) -> tuple[list[tuple[str, str]], list[str]]:
    """The training texts of the checkpoints ``ckpt`` was fine-tuned from (``--init-from``, followed back).

    As ``(checkpoint, text)`` pairs, and a note for a checkpoint or text that cannot be read here
    (the chain stops there).  A fine-tuned model may repeat what it learned in pre-training, so the
    copy check looks there too.  Only configurations are read, not weights.
    """
    from .checkpoint import load

    def run(path) -> Path:  # best/ and last/ of one run learned from one text; another checkpoint folder is its own
        p = Path(path).resolve()
        return p.parent if p.name in ("best", "last") else p

    found, notes, cfg = [], [], ckpt.train_config
    seen = {run(ckpt.path)} if ckpt.path is not None else set()
    while cfg.init_from:
        if not os.path.isabs(cfg.init_from):  # stored by an older charlm as typed: relative to a folder no longer known
            notes.append(f"the pre-training text of {cfg.init_from} is left out: the checkpoint names it by a relative path")
            break
        try:
            base = load(cfg.init_from, with_trainer=False, with_weights=False)
            if run(base.path) in seen:  # a chain that comes back (A fine-tuned from B, then B from A)
                break
            seen.add(run(base.path))
            found.append((str(base.path), training_text(base)))
        except CharlmError as e:
            notes.append(f"the pre-training text of {cfg.init_from} is left out: {e}")
            break
        cfg = base.train_config
    return found, notes
