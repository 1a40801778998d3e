import codecs
import hashlib
import os
import re
import warnings

import pytest
import torch

from charlm.config import TrainConfig
from charlm.data import (batches, bptt_slices, bundled_corpus, check_enough, load_corpus, min_chars, normalize,
                         num_batches, read_scored, read_text, split)
from charlm.errors import CharlmError, CharlmWarning


def test_bundled_lyrics_are_shipped_unchanged():
    assert hashlib.md5(bundled_corpus().read_bytes()).hexdigest() == "bed6a5df2f60421cba30d513fab9bf30"
    assert read_text().startswith("想要有直升机\n")


def test_folder_of_text_files(tmp_path):
    (tmp_path / "b.txt").write_text("第二", encoding="utf-8")
    (tmp_path / "a.txt").write_text("第一\n", encoding="utf-8")
    with pytest.warns(CharlmWarning, match=r"folder_of_text_files0: 2 \.txt files read as one text, in name order: a\.txt, b\.txt$"):
        assert read_text(tmp_path) == "第一\n第二\n"
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "empty.txt").write_bytes(b"")  # an empty file in a folder is passed over
    with pytest.warns(CharlmWarning, match="3 .txt files read"):
        assert read_text(tmp_path) == "第一\n第二\n"
    (tmp_path / "blank.txt").write_bytes(b"\n  \n")  # a blank file too
    with pytest.warns(CharlmWarning, match="4 .txt files read"):
        assert read_text(tmp_path) == "第一\n第二\n"
    (tmp_path / "skip.bin").write_bytes(b"\x00\x01")  # not .txt: left out, and said so
    with pytest.warns(CharlmWarning, match=r"4 \.txt files read as one text, in name order: a\.txt, b\.txt, blank\.txt, sub/empty\.txt "
                                           r"\(1 left out, not \.txt files or hidden: skip\.bin\)"):
        assert read_text(tmp_path) == "第一\n第二\n"
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "e.txt").write_bytes(b"")
    (tmp_path / "only" / "f.txt").write_bytes(b"\n")
    with pytest.raises(CharlmError, match="every .txt file in the folder is empty"):
        read_text(tmp_path / "only")


@pytest.mark.parametrize("encoding", ["utf-8", "gb18030", "big5"])
def test_a_file_cut_part_way_through_its_last_character_reads_without_it(tmp_path, encoding):
    """`head -c N big.txt > small.txt` cuts a character in two as often as not: the rest is read, and the cut said."""
    text = "分開的時候我說不分開\n"  # (traditional: Big5 has them)
    whole = text.encode(encoding)
    f = tmp_path / "cut.txt"
    f.write_bytes(whole + "快".encode(encoding)[:-1])
    with pytest.warns(CharlmWarning, match=r"cut.txt ends part-way through a character .*: its last (byte is|\d bytes are) left out"):
        assert read_text(f, encoding) == text
    f.write_bytes(whole[:5] + b"\xff" + whole[5:])  # bad bytes elsewhere: still an error naming where
    with pytest.raises(CharlmError, match="cannot decode byte"):
        read_text(f, "utf-8")
    f.write_bytes("Le café".encode("cp1252"))  # ASCII but for a last byte: Latin-1's é, not a cut character
    with pytest.raises(CharlmError, match=r"cannot decode byte 6 \(0xe9\) as utf-8; .*cp1252"):
        read_text(f, "utf-8")
    f.write_bytes("快".encode("utf-8")[:-1])  # nothing but a part of one
    with pytest.raises(CharlmError, match="cannot decode byte 0"):
        read_text(f, "utf-8")


@pytest.mark.parametrize("raw, encoding, text", [
    ("hello".encode("utf-16-le") + b"A", "utf-16-le", "hello"),  # UTF-16's ASCII is no ASCII byte string
    ("你好".encode("utf-16-le") + b"\x60", "utf-16-le", "你好"),
    ("hi😀".encode("utf-16-le")[:-2], "utf-16-le", "hi"),
    ("hello".encode("utf-32-le") + b"AB", "utf-32-le", "hello"),
    (b"It was the best of times \xe2\x80", "utf-8", "It was the best of times "),  # cut inside its first non-ASCII one
])
def test_cut_files_in_other_shapes(tmp_path, raw, encoding, text):
    from charlm.data import decode_text

    with pytest.warns(CharlmWarning, match="ends part-way through a character"):
        assert decode_text(raw, encoding) == text


def test_a_pipe_to_score_is_read_once_and_decoded_either_way(tmp_path):
    """A pipe's bytes come once: all of them (past the first chunk of a MiB) are decoded as UTF-8 or, failing that, in
    the run's encoding; reading it again would find the rest alone."""
    import threading

    from charlm.data import STREAM_CHUNK, read_scored

    line = "分开的时候我说不分开\n"
    raw = line.encode("gb18030") * (STREAM_CHUNK // 20 + 1000)
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    writer = threading.Thread(target=lambda: pipe.write_bytes(raw))
    writer.start()
    try:
        with pytest.warns(CharlmWarning, match="not UTF-8, so read as gb18030"):
            text = read_scored(pipe, None, "gb18030")
    finally:
        writer.join()
    assert len(raw) > STREAM_CHUNK and text == line * (STREAM_CHUNK // 20 + 1000)


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32"])
def test_a_wide_encodings_run_reads_its_own_kind_of_file(tmp_path, encoding):
    """Cyrillic in UTF-16 without a byte-order mark, or any UTF-32, reads as "a binary file" to UTF-8: for a run trained
    in that encoding it is its own kind of text; for any other run, still the binary-file error."""
    from charlm.data import read_scored

    text = "Мой дядя самых честных правил,\nКогда не в шутку занемог\n" * 3
    f = tmp_path / "ru.txt"
    f.write_bytes(text.encode(encoding))
    with pytest.warns(CharlmWarning, match=f"not UTF-8, so read as {encoding}"):
        assert read_scored(f, None, encoding) == text
    with pytest.raises(CharlmError, match="looks like (a binary file|UTF-16 text|UTF-32 text)"):  # (UTF-32's mark is told)
        read_scored(f, None, "gb18030")


def test_a_cut_file_with_a_byte_order_mark_reads_without_its_last_character_too(tmp_path):
    f = tmp_path / "cut.txt"
    f.write_bytes(codecs.BOM_UTF8 + "分开的时候\n".encode("utf-8") + "快".encode("utf-8")[:1])
    with pytest.warns(CharlmWarning, match="its last byte is left out"):
        assert read_text(f, "utf-8-sig") == read_text(f, "utf-8") == "分开的时候\n"


def test_other_encodings(tmp_path):
    f = tmp_path / "gb.txt"
    f.write_bytes("分开的时候".encode("gb18030"))
    assert read_text(f, "gb18030") == "分开的时候"
    with pytest.raises(CharlmError, match=r"gb\.txt: cannot decode byte 0 .*--encoding"):
        read_text(f)


def test_a_wrong_encoding_that_decodes_is_named(tmp_path, recwarn):
    """latin-1 decodes any bytes: Chinese or UTF-8 read so would train on mojibake, so a note says what the file likely is."""
    lyrics, f = read_text()[:2000], tmp_path / "t.txt"
    cases = [("gb18030", "latin-1", "its bytes read as Chinese text in gb18030; .*try --encoding gb18030$"),
             ("big5", "cp1252", "its bytes read as Chinese text in big5; .*try --encoding big5$"),
             ("utf-8", "latin-1", "it is valid UTF-8.*leave out --encoding$")]
    for written, read_as, note in cases:
        f.write_bytes(lyrics.encode(written, errors="ignore"))
        with pytest.warns(CharlmWarning, match=rf"t\.txt was read as {read_as} as asked, but {note}"):
            read_text(f, read_as)
    recwarn.clear()
    for text, codec in (("L'été dernier, à Noël, où êtes-vous? Ça va très bien.\n" * 30, "latin-1"),
                        ("Grüße aus München, über die Brücke.\n" * 30, "cp1252"), (lyrics, "gb18030")):
        f.write_bytes(text.encode(codec))
        assert read_text(f, codec) == text  # read as it was written: nothing to say
    assert not [w for w in recwarn if issubclass(w.category, CharlmWarning)]


def test_a_folder_gets_one_note_and_encodings_are_known_by_their_codec(tmp_path):
    from charlm.errors import CharlmWarning

    songs = tmp_path / "songs"
    songs.mkdir()
    for i in range(5):
        (songs / f"{i}.txt").write_bytes(f"第{i}首 分开的时候我说不分开\n".encode("utf-8"))
    with pytest.warns(CharlmWarning) as notes:
        read_text(songs, "latin-1")
    assert len(notes) == 1 and str(notes[0].message) == (
        f"{songs}: 5 .txt files read as one text, in name order: 0.txt, 1.txt, 2.txt, 3.txt, …; "
        f"5 of its 5 .txt files were read as latin-1 as asked; 0.txt, for one: it is valid UTF-8, which text in other encodings almost never is; if its characters look wrong, leave out --encoding")
    f = songs / "0.txt"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_text(f, "u8") == read_text(f, "UTF_8") == read_text(f)  # other names of utf-8: nothing to say
    f.write_bytes(b"caf\x81 " * 10)
    with pytest.raises(CharlmError, match=r"as windows-1252; try --encoding gb18030 or big5 \(Chinese\) or the file's"):
        read_text(f, "windows-1252")  # cp1252 by another name: not suggested again


def test_hints_name_real_encodings_and_an_unreadable_file_in_a_folder_is_one_line(tmp_path, monkeypatch):
    f = tmp_path / "u.txt"
    f.write_bytes("Romeo: a line\n".encode("utf-16-le"))
    with pytest.raises(CharlmError, match="suggest --encoding utf-16-le$"):  # not "u16-le", which does not exist
        read_text(f, "u16")
    songs = tmp_path / "songs"
    songs.mkdir()
    (songs / "a.txt").write_text("分开\n", encoding="utf-8")
    (songs / "b.txt").write_text("不分开\n", encoding="utf-8")
    real = type(songs).read_bytes

    def unreadable(self):
        if self.name == "b.txt":
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(type(songs), "read_bytes", unreadable)
    with pytest.raises(CharlmError, match=r"b\.txt: cannot read \(Permission denied\)"):
        read_text(songs)


def test_decoding_errors_suggest_another_encoding_than_the_one_given(tmp_path):
    f = tmp_path / "t.txt"
    f.write_bytes("分开的时候".encode("utf-8"))
    with pytest.raises(CharlmError, match="as gb18030; the file is valid UTF-8: leave out --encoding$"):
        read_text(f, "gb18030")
    f.write_bytes(b"caf\xe9 " * 10)
    with pytest.raises(CharlmError, match=r"as gb18030; try --encoding big5 \(Chinese\), cp1252 \(Western European\) or"):
        read_text(f, "gb18030")


def test_utf16_byte_order(tmp_path):
    f = tmp_path / "u.txt"
    f.write_bytes("分开 a line\n".encode("utf-16"))  # with a byte-order mark: decoded whichever order
    assert read_text(f, "utf-16") == "分开 a line\n"
    for order in ("le", "be"):  # without one: Python would assume little-endian and decode anything
        f.write_bytes("Romeo: a line\n".encode(f"utf-16-{order}"))
        with pytest.raises(CharlmError, match=f"no byte-order mark.*--encoding utf-16-{order}$"):
            read_text(f, "utf-16")
        with pytest.raises(CharlmError, match=f"UTF-16 text without a byte-order mark.*--encoding utf-16-{order}$"):
            read_text(f)
        assert read_text(f, f"utf-16-{order}") == "Romeo: a line\n"
    f.write_bytes(b"plain ascii, not utf-16")
    with pytest.raises(CharlmError, match="utf-16 is unknown; say --encoding utf-16-le or utf-16-be, if it is utf-16 at all"):
        read_text(f, "utf-16")
    f.write_bytes("分开".encode("utf-32"))
    assert read_text(f, "utf-32") == "分开"
    lyrics = read_text()[:3000] + "一" * 50  # the bundled lyrics, and a NUL byte on the other side (U+4E00)
    for order in ("le", "be"):  # Chinese text: NUL bytes only at its line breaks and spaces, and in 一
        f.write_bytes(lyrics.encode(f"utf-16-{order}"))
        with pytest.raises(CharlmError, match=f"UTF-16 text without a byte-order mark.*--encoding utf-16-{order}$"):
            read_text(f)
    with pytest.raises(CharlmError, match="as utf-16-le; try --encoding utf-16-be$"):  # read in the wrong order
        read_text(f, "utf-16-le")


def test_decode_error_names_offset(tmp_path):
    f = tmp_path / "bad.txt"
    f.write_bytes("好好".encode() + b"\xff" + "好".encode())
    with pytest.raises(CharlmError, match=r"bad\.txt: cannot decode byte 6"):
        read_text(f)


def test_the_offset_named_counts_a_byte_order_mark_and_a_last_byte_no_character_starts_with_is_an_error(tmp_path, recwarn):
    f = tmp_path / "bad.txt"
    f.write_bytes(codecs.BOM_UTF8 + b"abc\xffdef")  # (utf-8-sig counted from after its mark: "byte 3 (0x61)")
    with pytest.raises(CharlmError, match=r"bad\.txt: cannot decode byte 6 \(0xff\) as utf-8-sig"):
        read_text(f, "utf-8-sig")
    for encoding, good in (("gb18030", "分开的 abc"), ("big5", "分開 abc")):
        f = tmp_path / f"{encoding}.txt"  # (a note said twice from one place is shown once)
        f.write_bytes(good.encode(encoding) + b"\x80")  # no character of theirs starts with 0x80: not a cut one
        with pytest.raises(CharlmError, match=rf"cannot decode byte {len(good.encode(encoding))} \(0x80\) as {encoding}"):
            read_text(f, encoding)
        f.write_bytes(good.encode(encoding) + "我".encode(encoding)[:1])  # a real character, cut: read without it
        assert read_text(f, encoding) == good and "ends part-way through a character" in str(recwarn.pop(CharlmWarning).message)
    f.write_bytes("分".encode("gb18030") + "\U00020000".encode("gb18030")[:2])  # four bytes a character: two of them
    assert read_text(f, "gb18030") == "分"


@pytest.mark.parametrize("raw", [b"hello world\x00", b"hello\x00world\nfoo"])
def test_a_nul_in_ascii_text_is_binary_not_utf16(tmp_path, raw):
    f = tmp_path / "x.txt"  # (was "looks like UTF-16 ... try --encoding utf-16-be", which read it as 桥汬漠...)
    f.write_bytes(raw)
    with pytest.raises(CharlmError, match=rf"looks like a binary file \(a NUL byte at offset {raw.index(0)}\)"):
        read_text(f)
    f.write_bytes("one line of ASCII".encode("utf-16-le"))  # a line of UTF-16: NULs every other byte, still named
    with pytest.raises(CharlmError, match="UTF-16 text without a byte-order mark.*utf-16-le"):
        read_text(f)
    for order in ("le", "be"):  # its bytes all below 0x80 too, and one NUL: a space's high byte, so UTF-16 still
        f.write_bytes("周杰伦 周杰伦".encode(f"utf-16-{order}"))
        with pytest.raises(CharlmError, match=f"UTF-16 text without a byte-order mark.*utf-16-{order}$"):
            read_text(f)


def test_the_offset_named_for_a_codec_of_names_is_the_files(tmp_path):
    f = tmp_path / "n.txt"
    for raw, at in ((b"ab\xffcd.efgh", 2), (b"x.ab\xffcd", 4), (b"hello.w\xf6rld.com", 7), (b"w\xf6rld.abc.w\xf6rld", 1)):
        # idna reports the offset in the label it failed on (the first of that name)
        f.write_bytes(raw)
        with pytest.raises(CharlmError, match=rf"cannot decode byte {at} \(0x{raw[at]:02x}\) as idna"):
            read_text(f, "idna")


@pytest.mark.parametrize("codec", ["idna", "punycode"])
def test_a_codec_of_names_refusing_a_text_is_one_line_naming_the_file(tmp_path, codec):
    f = tmp_path / "t.txt"
    f.write_bytes(b"xn--a\n" if codec == "idna" else b"zzzz")
    with pytest.raises(CharlmError, match=rf"^\S*t\.txt: cannot be read as {codec}: [^\n]*$"):
        read_text(f, codec)


@pytest.mark.parametrize("content,msg", [(b"", "empty"), (b"  \n ", "no text"), (b"ab\x00cd" * 10, "binary")])
def test_bad_files(tmp_path, content, msg):
    f = tmp_path / "x.txt"
    f.write_bytes(content)
    with pytest.raises(CharlmError, match=msg):
        read_text(f)


def test_missing_file(tmp_path):
    with pytest.raises(CharlmError, match="no such file"):
        read_text(tmp_path / "nope.txt")


@pytest.mark.parametrize("vocab_from", ["all", "train"])
def test_held_out_text_does_not_decide_which_training_characters_are_rare(tmp_path, vocab_from):
    train = "abZab\nabab\n" * 3 + "abYab\n"  # Z three times, Y once in the training part
    reads = []
    for held_out in ("abYab\nabYab\nabYab\n", "ababa\nababa\nababa\n"):  # Y frequent only thanks to the held-out part, or not
        f = tmp_path / "c.txt"
        f.write_text(train + held_out, encoding="utf-8")
        corpus = load_corpus(TrainConfig(data=str(f), val_fraction=len(held_out) / len(train + held_out), unk=True, min_freq=2,
                                         vocab_from=vocab_from))
        assert corpus.train_text == train
        reads.append(corpus.vocab.decode(corpus.vocab.encode(corpus.train_text)))
    assert reads[0] == reads[1] == train.replace("Y", "<unk>")
    one = load_corpus(TrainConfig(data=str(f), val_fraction=0.5, vocab_from="all"))  # min_freq 1: every character of the file
    assert set(one.vocab.itos) == set(train + held_out)


def test_vocab_from_train_leaves_out_what_only_the_held_out_part_has_and_limit_chars_cuts_the_training_part(tmp_path):
    f = tmp_path / "c.txt"
    f.write_text("abcab\n" * 9 + "abXYa\n", encoding="utf-8")  # X and Y only in the last line, the held-out tenth
    whole = load_corpus(TrainConfig(data=str(f), val_fraction=0.1))
    trained = load_corpus(TrainConfig(data=str(f), val_fraction=0.1, vocab_from="train"))
    assert whole.val_text == trained.val_text == "abXYa\n"
    assert set(whole.vocab.itos) == set("abc\nXY") and set(trained.vocab.itos) == set("abc\n")
    cut = load_corpus(TrainConfig(data=str(f), val_fraction=0.1, limit_chars=7))
    assert cut.train_text == "abcab\na" and cut.val_text == "abXYa\n"  # the held-out part is the file's, not the cut's


def test_newlines_space_reproduces_the_seed():
    assert normalize("a\r\nb\nc", "space") == "a b c"
    assert normalize("a\r\nb\rc") == "a\nb\nc"


def test_split_is_the_last_fraction():
    assert split("0123456789", 0.1) == ("012345678", "9")
    assert len(split("x" * 1_115_394, 0.1)[0]) == 1_003_854  # nanoGPT's Tiny Shakespeare split
    assert split("0123456789", 0.0) == ("0123456789", "")


def test_seed_preset_corpus():
    from charlm.presets import get_preset

    cfg = TrainConfig(**{k: v for k, v in get_preset("seed").items() if k in TrainConfig.__dataclass_fields__})
    c = load_corpus(cfg)
    assert len(c.train_text) == 10_000 and "\n" not in c.train_text
    assert len(c.vocab) == 1027
    assert len(c.val_text) == 6329  # the last 10% of 63,282 characters: the first int(0.9 * n) are training
    _, skipped = c.val_ids()
    assert 0 < skipped < len(c.val_text)


def test_consecutive_batches_continue_each_row():
    ids = torch.arange(1000)
    bs = list(batches(ids, batch_size=4, num_steps=7, sampling="consecutive"))
    assert len(bs) == num_batches(1000, 4, 7, "consecutive") == (250 - 1) // 7
    for (x0, y0), (x1, _) in zip(bs, bs[1:]):
        assert x0.shape == (4, 7)
        assert torch.equal(y0, x0 + 1)  # targets are the next characters
        assert torch.equal(x1[:, 0], x0[:, -1] + 1)  # row b of the next batch continues row b


def test_consecutive_start_skips_batches():
    ids = torch.arange(500)
    all_b = list(batches(ids, 2, 10, "consecutive"))
    later = list(batches(ids, 2, 10, "consecutive", start=3))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(all_b[3:], later))


def test_random_batches_are_windows_reproducible_per_epoch():
    ids = torch.arange(1000)
    a = list(batches(ids, 4, 10, "random", seed=1, epoch=0))
    b = list(batches(ids, 4, 10, "random", seed=1, epoch=0))
    c = list(batches(ids, 4, 10, "random", seed=1, epoch=1))
    assert len(a) == num_batches(1000, 4, 10, "random") == 24
    assert all(torch.equal(x, y) for (x, _), (y, _) in zip(a, b))
    assert not all(torch.equal(x, y) for (x, _), (y, _) in zip(a, c))
    for x, y in a:
        assert torch.equal(y, x + 1)
        assert torch.all(x[:, 0] % 10 == 0)  # windows start at multiples of num_steps
    starts = torch.cat([x[:, 0] for x, _ in a])
    assert starts.unique().numel() == starts.numel()  # no window twice in an epoch


@pytest.mark.parametrize("seed", [10**14, 2**63 - 1])
def test_random_batches_take_any_seed_a_checkpoint_may_hold(seed):  # (up to 2**63 - 1 before 2026-12-02)
    # the epoch's stream mixes seed and epoch: it overflowed torch's seed for seeds from about 1.8e13 on
    a = list(batches(torch.arange(1000), 4, 10, "random", seed=seed, epoch=3))
    assert len(a) == 24 and a[0][0].shape == (4, 10)


def test_bptt_slices_eval_keeps_the_tail():
    assert bptt_slices(11, 4) == [(0, 4), (4, 8)]
    assert bptt_slices(11, 4, drop_last=False) == [(0, 4), (4, 8), (8, 10)]


def test_too_short_corpus_names_the_minimum():
    assert min_chars(32, 35, "consecutive") == 1152
    with pytest.raises(CharlmError, match="at least 1152"):
        check_enough(1000, 32, 35, "consecutive")
    check_enough(1152, 32, 35, "consecutive")


def test_a_byte_order_mark_is_not_a_character(tmp_path):
    p = tmp_path / "notepad.txt"
    p.write_bytes("\ufeff分开的时候\n".encode("utf-8"))  # a UTF-8 file as Notepad saves it
    assert read_text(str(p)) == "分开的时候\n"


def test_a_lone_surrogate_in_an_in_memory_text_is_refused_before_training():
    """(bytes decoded with surrogateescape, half a JSON escape pair): it went into the vocabulary, and the first
    checkpoint, after an epoch's training, failed with a UnicodeEncodeError traceback, nothing saved."""
    from charlm.data import corpus_from_text

    with pytest.raises(CharlmError, match=r"lone surrogate, \\ud800, at character 27: .*decode the text strictly"):
        corpus_from_text("the quick brown fox.\n" + "hello \ud800 world.\n" * 30, TrainConfig())
    assert corpus_from_text("a 😀 b\n" * 30, TrainConfig()).vocab.encode("😀")  # a pair decoded is one character


def test_the_wrong_kind_of_argument_to_a_corpus_is_a_type_error_naming_it():
    """(were AttributeErrors: 'str' object has no attribute 'data')"""
    from charlm.data import corpus_from_text

    with pytest.raises(TypeError, match=r"load_corpus takes a TrainConfig \(charlm.train_config\(data='my.txt'\) makes one\), got str"):
        load_corpus("my.txt")
    with pytest.raises(TypeError, match="corpus_from_text takes a TrainConfig, got NoneType"):
        corpus_from_text("abc", None)
    with pytest.raises(TypeError, match=r"needs the text as a str, got bytes \(its .decode\('utf-8'\) is one\)"):
        corpus_from_text("分开".encode(), TrainConfig())


def test_random_batch_orders_differ_across_seeds_and_epochs():
    """(seed, epoch) pairs that a sum would confuse — seed 1 epoch 0 and seed 0 epoch 1 — get different orders."""
    ids = torch.arange(1000)

    def first(seed, epoch):
        return next(batches(ids, 4, 10, "random", seed=seed, epoch=epoch))[0][:, 0].tolist()

    orders = [first(0, 1), first(1, 0), first(2, 0), first(0, 2)]
    assert len({tuple(o) for o in orders}) == len(orders)
    assert first(1, 0) == first(1, 0)  # and the same pair, the same order (a resumed run replays it)


def test_chinese_in_the_wrong_chinese_codec_is_named(tmp_path, recwarn):
    """GB18030 decodes Big5 bytes too, to other characters: the hint names the codec the bytes read as Chinese in."""
    from charlm.errors import CharlmWarning

    lyrics, f = read_text()[:2000], tmp_path / "t.txt"
    f.write_bytes(lyrics.encode("big5", errors="ignore"))
    with pytest.raises(CharlmError, match="as utf-8; its bytes read as Chinese text in big5: try --encoding big5$"):
        read_text(f)
    with pytest.warns(CharlmWarning, match=r"read as gb18030 as asked, but only \d+% of its non-ASCII characters are Chinese ones in gb18030, "
                      "while its bytes read as Chinese text in big5; if its characters look wrong, try --encoding big5$"):
        read_text(f, "gb18030")
    f.write_bytes("我哋今日去飲茶，佢話好好食嘅。\n".encode("big5hkscs") * 20)  # Cantonese: characters Big5 lacks
    with pytest.raises(CharlmError, match="as big5; its bytes read as Chinese text in big5hkscs: try --encoding big5hkscs$"):
        read_text(f, "big5")
    assert read_text(f, "big5hkscs").startswith("我哋今日")
    recwarn.clear()
    f.write_bytes(lyrics.encode("gb18030"))
    assert read_text(f, "gb18030") == lyrics  # read as written: nothing to say
    assert not [w for w in recwarn if issubclass(w.category, CharlmWarning)]


@pytest.mark.parametrize("codec", ["rot13", "base64", "hex"])
def test_a_codec_that_is_not_a_text_encoding_is_an_error(tmp_path, codec):
    f = tmp_path / "t.txt"
    f.write_text("分开\n", encoding="utf-8")
    with pytest.raises(CharlmError, match=f"^'{codec}' is not an encoding of text$"):
        read_text(f, codec)


def test_encoding_hints_past_the_first_lines(tmp_path):
    """A NUL byte makes a file binary wherever it is; UTF-16 of one line, or a UTF-8 file given a UTF-16 codec, is named."""
    lyrics, f = read_text()[:3000], tmp_path / "t.txt"
    f.write_bytes(lyrics.encode() * 3 + b"\x00" + lyrics.encode())  # the NUL past the first 8 KiB
    with pytest.raises(CharlmError, match=rf"binary file \(a NUL byte at offset {len(lyrics.encode()) * 3:,}\), not text$"):
        read_text(f)
    f.write_bytes(lyrics.replace("\n", "").encode("utf-16-le"))  # no line break to tell the byte order by
    with pytest.raises(CharlmError, match="UTF-16 text without a byte-order mark.*--encoding utf-16-le$"):
        read_text(f)
    f.write_bytes(codecs.BOM_UTF8 + lyrics.encode())
    with pytest.raises(CharlmError, match="the file is valid UTF-8, not utf-16: leave out --encoding$"):
        read_text(f, "utf-16")


def test_a_folder_in_two_encodings_is_named(tmp_path):
    songs = tmp_path / "songs"
    songs.mkdir()
    (songs / "a.txt").write_text("分开的时候\n", encoding="utf-8")
    (songs / "b.txt").write_bytes("我说不分开\n".encode("gb18030"))
    (songs / "c.txt").write_text("plain ASCII reads as either\n", encoding="ascii")
    msg = r"songs: its \.txt files are in more than one encoding: a\.txt is UTF-8 and b\.txt is not; .*iconv -f gb18030 -t utf-8"
    for encoding in ("utf-8", "gb18030"):  # whichever is given, the other file fails: the message says why
        with pytest.raises(CharlmError, match=msg):
            read_text(songs, encoding)
    (songs / "d.txt").write_bytes("我说".encode() + b"\xff" + "不分开\n".encode() * 200)  # damaged UTF-8 beside them: still mixed
    with pytest.raises(CharlmError, match=msg):
        read_text(songs)
    (songs / "d.txt").unlink()
    (songs / "a.txt").write_bytes("分开的时候\n".encode("gb18030"))
    with pytest.warns(CharlmWarning, match="3 .txt files read as one text, in name order: a.txt, b.txt, c.txt$"):
        assert read_text(songs, "gb18030") == "分开的时候\n我说不分开\nplain ASCII reads as either\n"  # one encoding again: read


def test_damaged_utf8_and_other_scripts_in_gb18030_are_not_called_another_encoding(tmp_path, recwarn):
    """A UTF-8 file with one bad byte is damaged, not GB18030 (whose decoder reads nearly anything): the hint says so,
    in a folder too; pinyin, Russian or kana in GB18030 are not Chinese characters, but are read as written, silently."""
    from charlm.errors import CharlmWarning

    lyrics = read_text()[:1000]
    songs = tmp_path / "songs"
    songs.mkdir()
    (songs / "a.txt").write_text(lyrics, encoding="utf-8")
    (songs / "b.txt").write_bytes(lyrics.encode()[:999] + b"\xff" + lyrics.encode()[999:])
    for where in (songs, songs / "b.txt"):
        with pytest.raises(CharlmError, match="b.txt: cannot decode byte 999 .*the rest of the file is UTF-8, so it looks damaged there"):
            read_text(where)
    f = tmp_path / "t.txt"
    for text in ("fēn kāi de shí hou wǒ shuō bù fēn kāi\n" * 20, "Расставаясь, я сказал: не расставаться\n" * 20, "わかれるときにわかれないといった\n" * 20):
        f.write_bytes(text.encode("gb18030"))
        assert read_text(f, "gb18030") == text
    assert not [w for w in recwarn if issubclass(w.category, CharlmWarning)]


JAPANESE = "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。何でも薄暗いじめじめした所で泣いていた事だけは記憶している。\n"
KOREAN = "대한민국은 동아시아의 한반도 남부에 위치한 민주공화국이다. 수도는 서울특별시이며, 공용어는 한국어이다.\n"


@pytest.mark.parametrize("text, codec, lang", [(JAPANESE, "shift_jis", "Japanese"), (JAPANESE, "euc_jp", "Japanese"),
                                               (KOREAN, "euc_kr", "Korean")])
def test_japanese_and_korean_bytes_are_named_as_such_not_as_chinese(tmp_path, text, codec, lang):
    """Shift JIS, EUC-JP and EUC-KR read as GB18030 too, as ideographs: the hint named a Chinese codec, and that codec,
    given, trained on mojibake in silence.  Kana and Hangul's commonest syllables name the language and its codec."""
    from charlm.errors import CharlmWarning

    right = {"shift_jis": "cp932", "euc_jp": "euc_jp", "euc_kr": "cp949"}[codec]  # (cp932 and cp949: the supersets)
    f = tmp_path / "t.txt"
    f.write_bytes((text * 10).encode(codec))
    with pytest.raises(CharlmError, match=f"as utf-8; its bytes read as {lang} text in {right}: try --encoding {right}$"):
        read_text(f)
    for wrong in ("gb18030", "latin-1"):
        with pytest.warns(CharlmWarning, match=f"read as {wrong} as asked, but its bytes read as {lang} text in {right}; "
                                               f"if its characters look wrong, try --encoding {right}$"):
            read_text(f, wrong)
    assert read_text(f, right) == text * 10


@pytest.mark.parametrize("codec", ["gb18030", "big5"])
def test_chinese_text_is_not_called_japanese_or_korean(tmp_path, recwarn, codec):
    """A few hundred characters of GB2312 may decode in cp949 as Hangul: without Korean's common syllables they are
    not called Korean; Chinese has no kana."""
    from charlm.errors import CharlmWarning

    lyrics, f = read_text(), tmp_path / "t.txt"
    for start in range(0, 60_000, 3_000):
        f.write_bytes(lyrics[start: start + 300].encode(codec, errors="ignore"))
        with pytest.raises(CharlmError, match="its bytes read as Chinese text in"):
            read_text(f)
        read_text(f, codec)
    assert not [w for w in recwarn if issubclass(w.category, CharlmWarning)]


def test_utf8_read_as_utf16_is_said_to_be_utf8(tmp_path):
    """ASCII or UTF-8 read as UTF-16 decodes (two letters a character) to mojibake: UTF-16 text with a space or a line
    break in it has NUL bytes, and this has none."""
    from charlm.errors import CharlmWarning

    f = tmp_path / "t.txt"
    f.write_text("To be, or not to be, that is the question.\n" * 10, encoding="utf-8")
    with pytest.warns(CharlmWarning, match="read as utf-16-le as asked, but it is valid UTF-8 and holds no NUL byte"):
        read_text(f, "utf-16-le")
    f.write_text("To be, or not to be: 分开\n" * 10, encoding="utf-16-le")
    with warnings.catch_warnings():
        warnings.simplefilter("error", CharlmWarning)
        assert read_text(f, "utf-16-le").startswith("To be, or not to be: 分开")  # the real thing: no note


def test_chinese_hints_count_extension_a_and_name_the_most_chinese_codec_first(tmp_path):
    f = tmp_path / "t.txt"
    f.write_bytes(("".join(chr(0x3400 + i) for i in range(0, 400, 7)) + "\n").encode("gb18030") * 5)  # CJK Extension A
    with pytest.raises(CharlmError, match="as utf-8; its bytes read as Chinese text in gb18030: try --encoding gb18030$"):
        read_text(f)
    # Big5 whose bytes read as GB18030 too: 7 in 10 characters Chinese there (the rest kana), all of them in Big5
    f.write_bytes(("万丌与丏丮丱丳不丐丑\n" * 30).encode("big5"))
    with pytest.raises(CharlmError, match="read as Chinese text in big5 and gb18030: try --encoding big5$"):
        read_text(f)


def test_a_utf8_file_with_a_paragraph_in_another_encoding_is_not_called_damaged(tmp_path):
    """Damaged means under 1 in 100 of the non-ASCII characters do not decode; here about 1 in 8 do not."""
    lyrics, f = read_text()[:1000], tmp_path / "t.txt"
    f.write_bytes(lyrics.encode() + lyrics[:100].encode("gb18030"))
    with pytest.raises(CharlmError, match="as utf-8; try --encoding gb18030") as e:
        read_text(f)
    assert "damaged" not in str(e.value)


def test_a_folder_in_one_other_encoding_or_with_a_binary_file_is_not_called_mixed(tmp_path):
    songs = tmp_path / "songs"
    songs.mkdir()
    (songs / "a.txt").write_bytes("分开的时候\n".encode("gb18030"))
    (songs / "b.txt").write_bytes("我说不分开\n".encode("gb18030"))
    with pytest.raises(CharlmError, match=r"a\.txt: cannot decode byte 0 .* as utf-8; its bytes read as Chinese text in gb18030"):
        read_text(songs)  # every file in GB18030: no UTF-8 one to be mixed with
    (songs / "a.txt").write_text("分开的时候\n", encoding="utf-8")
    (songs / "c.txt").write_bytes(b"\x00\x01\xff\xfe" * 10)  # binary, not text in another encoding
    with pytest.raises(CharlmError, match=r"more than one encoding: a\.txt is UTF-8 and b\.txt is not; "):
        read_text(songs)


def test_a_folder_says_what_it_left_out_and_hidden_copies_are_not_read(tmp_path):
    """Only .txt files are a folder's text: the others are named, not silently passed over, and hidden files
    (Jupyter's .ipynb_checkpoints hold a second copy of each text) are not read twice."""
    (tmp_path / "song.txt").write_text("分开的时候\n", encoding="utf-8")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / ".ipynb_checkpoints" / "song-checkpoint.txt").write_text("分开的时候\n", encoding="utf-8")
    (tmp_path / "code").mkdir()
    for name in ("a.py", "b.py", "c.py", ".notes.txt"):
        (tmp_path / "code" / name).write_text("x = 1\n", encoding="utf-8")
    with pytest.warns(CharlmWarning, match=r"1 \.txt file read \(5 left out, not \.txt files or hidden: "
                                           r"\.ipynb_checkpoints/, code/\.notes\.txt, code/a\.py, …\)"):
        assert read_text(tmp_path) == "分开的时候\n"
    with pytest.raises(CharlmError, match=r"no \.txt file to read in the folder \(4 left out, not \.txt files or "
                                          r"hidden: \.notes\.txt, a\.py, b\.py, …\); give a single file"):
        read_text(tmp_path / "code")
    (tmp_path / "code" / ".notes.txt").unlink()
    (tmp_path / "code" / "d.txt").write_text("y\n", encoding="utf-8")
    (tmp_path / "code" / "E.TXT").write_text("z\n", encoding="utf-8")  # .txt here, where names have case; on Windows, read
    (tmp_path / "code" / "linked").symlink_to(tmp_path / ".ipynb_checkpoints")  # a link to a folder is not followed
    with pytest.warns(CharlmWarning, match=r"1 \.txt file read \(5 left out, not \.txt files or hidden: E\.TXT, a\.py, b\.py, …\)$"):
        assert read_text(tmp_path / "code") == "y\n"
    with pytest.warns(CharlmWarning, match=r"3 \.txt files read as one text, in name order: \.ipynb_checkpoints/song-checkpoint\.txt, code/d\.txt, song\.txt \(5 left out"):  # as charlm read folders until 2026-11-30
        assert read_text(tmp_path, hidden=True) == "分开的时候\ny\n分开的时候\n"  # (.ipynb_checkpoints/ first)


def test_a_folder_that_cannot_be_listed_is_an_error_naming_it(tmp_path, monkeypatch):
    """At any depth, as an unreadable file is: a subfolder was left out with a note calling it "not .txt files or hidden",
    and the training went on without its text."""
    import os

    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "a.txt").write_text("分开\n", encoding="utf-8")
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "b.txt").write_text("不分开\n", encoding="utf-8")
    scandir = os.scandir

    def denied(path="."):
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", denied)
    for folder in (tmp_path, tmp_path / "locked"):
        with pytest.raises(CharlmError, match=rf"^{re.escape(str(tmp_path / 'locked'))}: cannot read the folder \(Permission denied\)$"):
            read_text(folder)
    assert read_text(tmp_path / "ok") == "分开\n"


def test_a_folder_listed_but_not_entered_and_a_file_in_a_folder_not_entered_are_errors(tmp_path, monkeypatch):
    """(mode 644 and 000 folders, for a user other than root): they ended in a bare OSError, exit 1"""
    from pathlib import Path

    sub = tmp_path / "d" / "sub"
    sub.mkdir(parents=True)
    (sub / "x.txt").write_text("分开\n", encoding="utf-8")
    stat = os.stat

    def denied(path, *args, **kwargs):
        if Path(path).parent == sub:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", denied)
    with pytest.raises(CharlmError, match=rf"^{re.escape(str(sub / 'x.txt'))}: cannot read \(Permission denied\)$"):
        read_text(tmp_path / "d")  # (sub may be entered: x.txt is, say, a link into a folder closed to this user)
    access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: not (Path(p) == sub and mode & os.X_OK) and access(p, mode, **kw))
    with pytest.raises(CharlmError, match=rf"^{re.escape(str(sub))}: cannot read the folder \(Permission denied\)$"):
        read_text(tmp_path / "d")
    with pytest.raises(CharlmError, match=rf"^{re.escape(str(sub / 'x.txt'))}: cannot read \(Permission denied\)$"):
        read_text(sub / "x.txt")
    with pytest.raises(CharlmError, match=r"x\.txt: cannot read \(Permission denied\)$"):
        read_scored(sub / "x.txt", None, "utf-8")


def test_left_out_counts_have_separators_and_txt_is_matched_as_the_file_system_matches_names(tmp_path, monkeypatch):
    import ntpath
    import os

    (tmp_path / "a.txt").write_text("分开\n", encoding="utf-8")
    for i in range(1000):
        (tmp_path / f"{i:04}.py").touch()
    with pytest.warns(CharlmWarning, match=r"1 \.txt file read \(1,000 left out, not \.txt files or hidden: 0000\.py, 0001\.py, 0002\.py, …\)"):
        read_text(tmp_path)
    names = tmp_path / "names"
    names.mkdir()
    (names / "a.txt").write_text("分开\n", encoding="utf-8")
    (names / "B.TXT").write_text("不分开\n", encoding="utf-8")
    monkeypatch.setattr(os.path, "normcase", ntpath.normcase)  # names without case, as on Windows: .TXT is .txt
    with pytest.warns(CharlmWarning, match="2 .txt files read as one text, in name order: B.TXT, a.txt$"):
        assert read_text(names) == "不分开\n分开\n"


def test_a_checkpoints_corpus_read_again_keeps_its_notes_and_its_errors(tmp_path):
    """checkpoint_corpus holds back the notes of its first reading (they may not hold) and gives them once it keeps it;
    a checkpoint without a checksum is taken as trained on its text; a folder of hidden files alone that was not
    trained so is the usual error."""
    import types

    from charlm.data import checkpoint_corpus, hash_ids, training_text
    from charlm.vocab import Vocab

    from .conftest import LYRIC, tiny_train_config

    songs = tmp_path / "songs"
    songs.mkdir()
    (songs / "a.txt").write_text(LYRIC * 20, encoding="utf-8")
    (songs / "notes.py").write_text("x = 1\n", encoding="utf-8")
    cfg = tiny_train_config(tmp_path, data=str(songs))
    ckpt = types.SimpleNamespace(train_config=cfg, vocab=Vocab.build(LYRIC), trainer={}, path=tmp_path / "run" / "best")
    import warnings

    with warnings.catch_warnings(record=True) as notes:  # what was left out was said when the run was trained
        warnings.simplefilter("always")
        corpus = checkpoint_corpus(ckpt)
        assert training_text(ckpt) == corpus.train_text  # no checksum (an older run): taken as its text
        ckpt.trainer = {"train_hash": hash_ids(torch.tensor(ckpt.vocab.encode(corpus.train_text)))}
        assert training_text(ckpt) == corpus.train_text
    assert not [str(n.message) for n in notes if "left out" in str(n.message)]
    (songs / "a.txt").write_bytes(b"caf\xc3\xa9\n" * 200)  # a note it does give again (UTF-8 read as latin-1), held back
    latin = types.SimpleNamespace(train_config=tiny_train_config(tmp_path, data=str(songs), encoding="latin-1"),
                                  vocab=Vocab.build("caf\xc3\xa9\n"), trainer={}, path=tmp_path / "run" / "best")
    with pytest.warns(CharlmWarning, match="a.txt was read as latin-1 as asked, but it is valid UTF-8"):
        checkpoint_corpus(latin)
    drafts = tmp_path / "drafts"
    (drafts / ".old").mkdir(parents=True)
    (drafts / ".old" / "a.txt").write_text(LYRIC * 20, encoding="utf-8")
    other = types.SimpleNamespace(train_config=tiny_train_config(tmp_path, data=str(drafts)), vocab=ckpt.vocab,
                                  trainer={"train_hash": "0" * 16}, path=tmp_path / "run" / "best")
    with pytest.raises(CharlmError, match=r"no \.txt file to read in the folder \(1 left out, not \.txt files or hidden: \.old/\)"):
        checkpoint_corpus(other)


def test_a_stream_ends_at_the_end_it_reports_once():
    """Text typed into `charlm eval RUN -` ends at one Ctrl-D: the terminal reports the end once, and a read after it
    waits for another."""
    import io

    from charlm.data import read_stream

    class Typed(io.RawIOBase):  # a terminal: a line, then the end (Ctrl-D), then it would wait for more
        def __init__(self):
            self.parts = ["分开的时候\n".encode(), b""]

        def readable(self):
            return True

        def readinto(self, b):
            assert self.parts, "read on after the end: a second Ctrl-D was needed"
            part = self.parts.pop(0)
            b[:len(part)] = part
            return len(part)

    assert read_stream(io.BufferedReader(Typed()), "standard input") == "分开的时候\n".encode()



def test_a_text_written_a_symbol_and_a_space_at_a_time_is_recognised():
    """Penn Treebank's character files ('n o _ i t'): their figures per character are about half those per symbol,
    which a user following the README took for AWD-LSTM's league"""
    from charlm.data import spaced_symbols

    ptb = " n o _ i t _ w a s _ n ' t _ b l a c k _ m o n d a y \n b u t _ w h i l e _ t h e _ n e w \n" * 20
    assert spaced_symbols(ptb) and not spaced_symbols(ptb.replace(" ", ""))
    assert not spaced_symbols("分开 我 说 不 分开\n" * 50)  # (lyrics' phrases parted by spaces)
    assert not spaced_symbols("a b c d e f g h i j\n")  # (one line: too little to judge)
    assert not spaced_symbols("To be, or not to be, that is the question:\n" * 30)


def test_utf32_is_told_from_utf16_and_ascii_parted_by_nuls_from_either(tmp_path):
    """UTF-32 got "try --encoding utf-16", which then read it with a U+0000 in every character; ASCII words a program
    parted by NUL bytes got "try --encoding utf-16-le", which read them as CJK characters, unsaid."""
    import codecs
    import random

    f = tmp_path / "t.txt"
    lyrics = read_text()[:2000]
    for raw in (lyrics.encode("utf-32"), codecs.BOM_UTF32_BE + lyrics.encode("utf-32-be")):
        f.write_bytes(raw)
        with pytest.raises(CharlmError, match="looks like UTF-32 text .*try --encoding utf-32$"):
            read_text(f)
        with pytest.raises(CharlmError, match="looks like UTF-32 text .*try --encoding utf-32$"):
            read_text(f, "utf-16")
        assert read_text(f, "utf-32") == lyrics
    f.write_bytes(lyrics.encode("utf-32-le"))  # (no mark) read as UTF-16: U+0000 in every character, which no text has
    with pytest.raises(CharlmError, match="read as utf-16-le, it holds U\\+0000 characters, which no text has; it is not text in that encoding$"):
        read_text(f, "utf-16-le")
    words = "alpha beta gamma delta epsilon zeta eta theta".split()
    rng = random.Random(0)
    nulled = "".join("\0".join(rng.choice(words) for _ in range(3)) + "\n" for _ in range(400)).encode()
    f.write_bytes(nulled + b"\n" * (len(nulled) % 2))  # (whole UTF-16 characters: no note of a cut one)
    with pytest.raises(CharlmError, match="looks like a binary file \\(a NUL byte at offset"):
        read_text(f)
    with pytest.warns(CharlmWarning, match="read as utf-16-le as asked, but its bytes are all ASCII.*not UTF-16"):
        read_text(f, "utf-16-le")
    f.write_bytes(("Romeo: a line of text without an end " * 5).encode("utf-16-le"))  # UTF-16 of ASCII: still told
    with pytest.raises(CharlmError, match="UTF-16 text without a byte-order mark.*--encoding utf-16-le$"):
        read_text(f)


def test_utf8_with_a_few_damaged_bytes_is_said_so_and_not_read_as_a_code_page_in_silence(tmp_path):
    """One bad byte among 60 accented letters got "try --encoding ... cp1252" (the damage was said from under 1 in 100
    only), and cp1252 then read é as Ã© without a word; Latin-1 text itself reads as before."""
    f = tmp_path / "t.txt"
    text = ("the quick brown fox jumps over the lazy dog\nwe met at the café\n" * 60).encode()
    f.write_bytes(text[:2000] + b"\xff" + text[2000:])
    with pytest.raises(CharlmError, match="cannot decode byte 2000 \\(0xff\\) as utf-8; the rest of the file is UTF-8, so it looks damaged"):
        read_text(f)
    with pytest.warns(CharlmWarning, match="read as cp1252 as asked, but most of its non-ASCII bytes are UTF-8 characters"):
        assert "cafÃ©" in read_text(f, "cp1252")
    big = ("we met at the café, naïve résumé\n" * 40_000).encode()  # the damage past the first megabyte: said too
    f.write_bytes(big + b"\xff" + big[:100])
    with pytest.warns(CharlmWarning, match="most of its non-ASCII bytes are UTF-8 characters"):
        read_text(f, "cp1252")
    from charlm.data import read_scored

    with pytest.raises(CharlmError, match="looks damaged there"):  # eval of it, by a model trained on cp1252 text: said,
        read_scored(f, None, "cp1252")  # not read as cp1252's mojibake with "leave out --encoding" (none was given)
    f.write_bytes(("we met at the café, naïve résumé\n" * 60).encode("latin-1"))
    with pytest.raises(CharlmError, match="try --encoding gb18030 or big5 \\(Chinese\\), cp1252"):
        read_text(f)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CharlmWarning)
        assert read_text(f, "cp1252").startswith("we met at the café")


def test_a_link_that_leads_nowhere_is_called_so_not_missing(tmp_path):
    (tmp_path / "self.txt").symlink_to("self.txt")  # (a loop: "no such file or folder" for a file ls lists)
    with pytest.raises(CharlmError, match="self.txt: a link that leads to no file \\(its target 'self.txt' is missing, or the links go round in a loop\\)"):
        read_text(tmp_path / "self.txt")
    (tmp_path / "gone.txt").symlink_to(tmp_path / "moved.txt")
    with pytest.raises(CharlmError, match="gone.txt: a link that leads to no file"):
        read_text(tmp_path / "gone.txt")
    with pytest.raises(CharlmError, match="never.txt: no such file or folder"):
        read_text(tmp_path / "never.txt")


def test_gb18030_read_as_big5_is_said_to_be_so(tmp_path):
    """Simplified Chinese in GB18030 given --encoding big5 decoded, to rare traditional characters (斕婓扂...), without a
    word (the reverse, Big5 given as GB18030, had its note); Big5 itself reads as before."""
    lines = ["你在我胸口睡着", "分开的时候我说不分开", "爱可不可以简简单单没有伤害", "像这样的生活我爱你你爱我",
             "你靠着我的肩膀", "我想就这样牵着你的手不放开", "窗台蝴蝶像诗里纷飞的美丽章节", "雨下整夜我的爱溢出就像雨水"]
    f = tmp_path / "gb.txt"
    f.write_bytes(("\n".join(lines) + "\n").encode("gb18030") * 30)
    with pytest.warns(CharlmWarning, match="as big5 as asked, but only \\d+% of its Chinese characters are common ones read as "
                                           "big5, against 100% read as gb18030; if its characters look wrong, try --encoding gb18030"):
        read_text(f, "big5")
    traditional = "我們的愛情在這裡開始，你說過不會離開。時間過得很快，回憶裡的畫面還在。為什麼你要走，留下我在這裡等待。\n"
    f.write_bytes(traditional.encode("big5") * 30)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CharlmWarning)
        assert read_text(f, "big5") == traditional * 30
