"""The command line as a user meets it: output, exit codes, and one-line errors for bad input."""

import contextlib
import io
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from charlm.checkpoint import load as load_checkpoint
from charlm.checkpoint import load_model
from charlm.data import load_corpus
from charlm.cli import _usable_streams, main
from charlm.errors import CharlmError
from charlm.train import evaluate

from .conftest import LYRIC

TINY = ["--embedding-size", "32", "--hidden-size", "32", "--batch-size", "4", "--num-steps", "16", "--lr", "1e-2",
        "--device", "cpu", "--prefixes", "分开"]


@pytest.fixture
def corpus(tmp_path) -> Path:
    f = tmp_path / "lyrics.txt"
    f.write_text(LYRIC * 40, encoding="utf-8")
    return f


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err, pattern, expect_code=2):
    assert code == expect_code
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("charlm: error: "), err
    assert pattern in lines[0], lines[0]
    assert "Traceback" not in err


def test_your_own_text_goes_to_a_folder_named_after_it_and_samples_from_a_line(capsys, corpus, tmp_path, monkeypatch):
    """train --data without --out: runs/<the file's name>, not the bundled lyrics' runs/jaychou; and the lyrics'
    prefixes (分开, 不分开) are not the samples' unless given. A preset made for a corpus keeps its own."""
    monkeypatch.chdir(tmp_path)
    tiny = [a for a in TINY if a not in ("--prefixes", "分开")]
    code, stdout, _ = run_cli(capsys, "train", "--data", corpus, "--epochs", 1, *tiny, "--sample-every", 1)
    assert code == 0 and "note: writing to runs/lyrics (--out to name another folder)" in stdout
    run = tmp_path / "runs" / "lyrics"
    assert json.loads((run / "last" / "checkpoint.json").read_text(encoding="utf-8"))["train_config"]["prefixes"] == []
    assert not (tmp_path / "runs" / "jaychou").exists() and "leave out --prefixes" not in stdout
    code, stdout, _ = run_cli(capsys, "train", "--data", corpus, "--epochs", 1, *TINY, "--out", "runs/x")
    assert code == 0 and "note: writing to" not in stdout
    assert json.loads((tmp_path / "runs/x/last/checkpoint.json").read_text(encoding="utf-8"))["train_config"]["prefixes"] == ["分开"]
    code, stdout, _ = run_cli(capsys, "train", "--preset", "shakespeare-cpu", "--data", corpus, "--epochs", 1, *TINY, "--max-minutes", 0.01)
    assert code == 0 and (tmp_path / "runs" / "shakespeare-cpu").is_dir()  # the preset's own folder
    code, stdout, err = run_cli(capsys, "train", "--data", tmp_path / "nosuch.txt", "--epochs", 1, *tiny)
    assert code == 2 and "writing to" not in stdout  # said only once the text is read
    from charlm.data import bundled_corpus  # the bundled lyrics named by their path: the default run, into runs/jaychou

    code, stdout, _ = run_cli(capsys, "train", "--data", bundled_corpus(), "--epochs", 1, *tiny, "--limit-chars", 3000)
    assert code == 0 and "writing to" not in stdout and (tmp_path / "runs" / "jaychou").is_dir()


def test_a_folder_run_names_its_files_once(capsys, tmp_path):
    """Training says which files made the text; eval, --bigram and a resume read them again without saying it again."""
    songs = tmp_path / "songs"
    songs.mkdir()
    for i in range(2):
        (songs / f"{i}.txt").write_text(LYRIC * 20, encoding="utf-8")
    run = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "train", "--data", songs, "--epochs", 1, "--out", run, *TINY)
    assert code == 0 and (stdout + err).count("2 .txt files read as one text, in name order: 0.txt, 1.txt") == 1
    (songs / "README.md").write_text("about the songs\n", encoding="utf-8")  # left out, and said so: once
    code, stdout, err = run_cli(capsys, "train", "--data", songs, "--epochs", 1, "--out", run, "--overwrite", *TINY)
    assert code == 0 and (stdout + err).count("(1 left out, not .txt files or hidden: README.md)") == 1
    for argv in (["eval", run, "--bigram"], ["train", "--resume", run, "--epochs", 2]):
        code, stdout, err = run_cli(capsys, *argv)
        assert code == 0 and ".txt files read" not in stdout + err and "left out, not .txt" not in stdout + err, (argv, err)


@pytest.mark.parametrize("message, shown", [
    ("top_k must be >= 1, got 0", "--top-k must be >= 1, got 0"),
    ("min_lr (1) must not be above lr (0.01): the cosine schedule falls from lr to min_lr (lower --min-lr too)",
     "--min-lr (1) must not be above --lr (0.01): the cosine schedule falls from lr to min_lr (lower --min-lr too)"),
    ("tie_weights needs embedding_size == hidden_size, got 8 and 16: add --no-tie-weights",
     "--tie-weights needs --embedding-size == --hidden-size, got 8 and 16: add --no-tie-weights"),
    ("data: '/tmp/my seed (1)\\udcff.txt' is not valid UTF-8", "--data: '/tmp/my seed (1)\\udcff.txt' is not valid UTF-8"),  # the path as given
    ("vocab_size must be from 0 to 4,194,304, got -1", "vocab_size must be from 0 to 4,194,304, got -1"),  # no flag of that name
    ("prefer must be 'best' or 'last', got 'x'", "prefer must be 'best' or 'last', got 'x'"),  # not a config field
])
def test_setting_errors_name_flags_on_the_command_line(message, shown):
    from charlm.cli import _as_flags

    assert _as_flags(message) == shown


def test_a_min_freq_that_leaves_only_unk_is_refused(capsys, corpus, tmp_path):
    one_line_error(*run_cli(capsys, "train", "--data", corpus, "--unk", "--min-freq", 10**6, "--out", tmp_path / "r", *TINY)[::2],
                   "--min-freq 1000000 leaves no character in the vocabulary but <unk>: the training text's most frequent is there")
    assert not (tmp_path / "r").exists()



def test_held_out_characters_read_as_unk_are_said_beside_the_figure(capsys, tmp_path):
    """--min-freq counts the training part: held-out characters rare there are scored as <unk>, an easier figure."""
    text = tmp_path / "t.txt"
    text.write_text("ab\n" * 300 + "xyz\n" * 20, encoding="utf-8")  # the last tenth holds every x, y and z
    code, out, err = run_cli(capsys, "train", "--data", text, "--unk", "--min-freq", 2, "--val-fraction", 0.1, "--epochs", 1,
                             "--copy-window", 0, "--out", tmp_path / "r", *TINY[:-2])
    assert code == 0, err
    assert "<unk>: 0 of the 882 training characters (0.0%) and 60 of the 98 held-out ones (61.2%) are read as <unk>" in out
    assert "not trained on; 60 of its characters read and scored as <unk>, easier to predict than each itself)" in out

def test_a_held_out_part_too_small_to_validate_is_said_so(capsys, corpus, tmp_path):
    code, stdout, _ = run_cli(capsys, "train", "--data", corpus, "--val-fraction", 0.0001, "--epochs", 1, "--out", tmp_path / "r", *TINY)
    assert code == 0 and "note: the held-out part (--val-fraction 0.0001) has too few characters the model can score" in stdout
    one_line_error(*run_cli(capsys, "eval", tmp_path / "r")[::2], "(its last 0.01%), never trained on: too little to score")


def test_train_generate_eval(capsys, corpus, tmp_path):
    out = tmp_path / "run"
    code, stdout, _ = run_cli(capsys, "train", "--data", corpus, "--epochs", 2, "--out", out, *TINY)
    assert code == 0
    assert "vocabulary: 25 characters" in stdout and "corpus: 1,600 characters" in stdout
    assert "epoch 2/2" in stdout and "held-out perplexity" in stdout
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])  # the units of the losses, for nanoGPT's readers
    assert f"after epoch 2 ({last['val_loss']:.4f} nats, {last['val_loss'] / math.log(2):.3f} bits per character)" in stdout
    assert "losses in nats per character" in stdout
    from charlm.baseline import bigram_loss

    c = load_checkpoint(out)  # the bigram of the training part, scored on the held-out part
    split = load_corpus(c.train_config, vocab=c.vocab)
    train_ids, val_ids = c.vocab.encode(split.train_text), c.vocab.encode(split.val_text)
    assert (f"for scale, on the same held-out text: a bigram count model of the training text "
            f"{math.exp(bigram_loss(train_ids, val_ids, 25)):,.2f}, a uniform guess 25") in stdout
    assert (out / "curves.png").stat().st_size > 1000
    code, stdout, _ = run_cli(capsys, "generate", out, "--prefix", "分开", "--length", 30, "--seed", 7)
    assert code == 0 and stdout.startswith("分开") and len(stdout.rstrip("\n")) >= 30
    again = run_cli(capsys, "generate", out, "--prefix", "分开", "--length", 30, "--seed", 7)[1]
    assert again == stdout
    code, stdout, _ = run_cli(capsys, "generate", out, "--lines", 2, "--num-samples", 3, "--seed", 1)
    assert code == 0 and stdout.count("--- sample") == 3
    code, stdout, _ = run_cli(capsys, "generate", out, "--acrostic", "分开快乐", "--seed", 1)
    assert [line[0] for line in stdout.strip().split("\n")] == list("分开快乐")
    code, stdout, _ = run_cli(capsys, "eval", out, corpus)
    assert code == 0
    figures = dict(re.findall(r"^(loss|perplexity|bits per character): ([\d.,]+)", stdout, flags=re.M))
    model, vocab, _ = load_model(out)
    text = Path(corpus).read_text(encoding="utf-8")
    loss, scored = evaluate(model, torch.tensor(vocab.encode(text)))  # the file read as one stream
    assert f"{len(text):,} read, {scored:,} scored" in stdout and scored == len(text) - 1
    assert float(figures["loss"]) == pytest.approx(loss, abs=1e-4)
    assert float(figures["perplexity"].replace(",", "")) == pytest.approx(math.exp(loss), rel=1e-4)
    assert float(figures["bits per character"]) == pytest.approx(loss / math.log(2), abs=1e-4)
    # the default preset's model copies: the report says how it scored, and that it looks back
    assert "scoring: static" in stdout and "copy attention looks back over up to 512 characters" in stdout
    code, stdout, _ = run_cli(capsys, "eval", out, corpus, "--dynamic", "0.1")
    assert code == 0 and "scoring: ADAPTIVE (dynamic evaluation)" in stdout and "perplexity:" in stdout
    code, stdout, _ = run_cli(capsys, "eval", out, corpus, "--bigram")
    assert code == 0 and "for scale: a bigram count model of the training text, on the same 1,599 characters: perplexity " in stdout
    # the training text repeats one verse: its bigram model knows the corpus nearly by heart
    assert float(stdout.split("on the same 1,599 characters: perplexity ")[1].split()[0]) < 2
    whole = vocab.encode(text)  # the bigram of the run's training part, not of the file it scores
    assert f"perplexity {math.exp(bigram_loss(train_ids, whole, 25)):,.3f}\n" in stdout
    assert f"{math.exp(bigram_loss(whole, whole, 25)):,.3f}" not in stdout
    one_line_error(*run_cli(capsys, "eval", out, corpus, "--dynamic", "-1")[::2], "--dynamic must be a learning rate from 0 to 10 (0.001 to 1 are the useful ones), got -1.0")
    one_line_error(*run_cli(capsys, "eval", out, corpus, "--dynamic", "nan")[::2], "--dynamic must be a learning rate from 0 to 10 (0.001 to 1 are the useful ones), got nan")


def test_resume_equals_one_run(capsys, corpus, tmp_path):
    """4 epochs in one run and 2 + resume to 4 end at the same training loss, to the last digit."""
    a, b = tmp_path / "a", tmp_path / "b"
    # (a cosine schedule spans the first run's --epochs, so it is the plateau schedule whose state is tested here)
    common = ["train", "--data", corpus, *TINY, "--dropout", "0.2", "--schedule", "plateau", "--plateau-patience", "0"]
    assert run_cli(capsys, *common, "--epochs", 4, "--out", a)[0] == 0
    assert run_cli(capsys, *common, "--epochs", 2, "--out", b)[0] == 0
    code, stdout, _ = run_cli(capsys, "train", "--resume", b, "--epochs", 4)
    assert code == 0 and f"resuming {b / 'last'} after epoch 2 of 4\n" in stdout  # (was "in epoch 3 of 4, after batch 0")
    ma = [json.loads(x) for x in (a / "metrics.jsonl").read_text().splitlines()]
    mb = [json.loads(x) for x in (b / "metrics.jsonl").read_text().splitlines()]
    assert [m["train_loss"] for m in ma] == [m["train_loss"] for m in mb]
    assert [m["val_loss"] for m in ma] == [m["val_loss"] for m in mb]


def test_a_resume_with_more_epochs_keeps_the_cosine_of_the_first_run(capsys, corpus, tmp_path):
    out = tmp_path / "run"
    common = ["--schedule", "cosine", "--min-lr", "1e-4", "--early-stop", "0", "--sample-every", "0"]
    assert run_cli(capsys, "train", "--data", corpus, *TINY, *common, "--epochs", 2, "--out", out)[0] == 0
    first = [json.loads(x)["lr"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert run_cli(capsys, "train", "--resume", out, "--epochs", 4, "--sample-greedy")[0] == 0  # (samples only: allowed)
    assert load_model(out, prefer="last")[2].train_config.sample_greedy
    lrs = [json.loads(x)["lr"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert lrs[:2] == first and first[1] == pytest.approx(1e-4)
    assert lrs[2:] == pytest.approx([1e-4, 1e-4])  # at the floor; it used to jump back up the new run's cosine


def test_resume_refuses_changed_settings(capsys, tiny_run):
    code, _, err = run_cli(capsys, "train", "--resume", tiny_run, "--hidden-size", "64")
    one_line_error(code, err, "cannot change --hidden-size when resuming")
    assert "--init-from" not in err  # (which keeps the architecture)
    code, _, err = run_cli(capsys, "train", "--resume", tiny_run, "--lr", "1e-4")  # (char-rnn's way to go on more slowly)
    data = load_model(tiny_run)[2].train_config.data
    one_line_error(code, err, "cannot change --lr when resuming; only --cuda-graph, --device, ")
    assert err.strip().endswith(f"(to train on from its weights with other settings, start a new run: "
                                f"charlm train --init-from {tiny_run / 'last'} --data {data} --lr 0.0001 --out NEW_FOLDER)")
    code, _, err = run_cli(capsys, "train", "--resume", tiny_run, "--newlines", "space")  # (which --init-from keeps too)
    assert code == 2 and "cannot change --newlines when resuming" in err and "--init-from" not in err


def test_preset_values_are_overridden_by_flags(capsys, tmp_path):
    code, stdout, _ = run_cli(capsys, "train", "--preset", "seed", "--epochs", 1, "--out", tmp_path / "s", "--device", "cpu")
    assert code == 0
    assert "vocabulary: 1,027 characters" in stdout and "training 10,000" in stdout
    assert "epoch 1/1" in stdout and "skipped" in stdout


@pytest.mark.parametrize("content,pattern", [
    (b"", "the file is empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 20, "binary"),
    ("分开".encode() * 10, "at least 68"),
    (b"ok \xff\xfe bad" * 100, "cannot decode byte 3"),
])
def test_bad_corpora(capsys, tmp_path, content, pattern):
    f = tmp_path / "c.txt"
    f.write_bytes(content)
    code, _, err = run_cli(capsys, "train", "--data", f, "--out", tmp_path / "o", *TINY)
    one_line_error(code, err, pattern)
    assert not (tmp_path / "o").exists()


def test_training_never_replaces_a_run_unless_told(capsys, corpus, tmp_path):
    out = tmp_path / "run"
    assert run_cli(capsys, "train", "--data", corpus, "--epochs", 1, "--out", out, *TINY)[0] == 0
    before = (out / "metrics.jsonl").read_text()
    code, _, err = run_cli(capsys, "train", "--data", corpus, "--epochs", 2, "--out", out, *TINY)
    one_line_error(code, err, f"{out} already holds a training run; continue it with `charlm train --resume {out}`")
    assert (out / "metrics.jsonl").read_text() == before
    assert run_cli(capsys, "train", "--data", corpus, "--epochs", 2, "--out", out, "--overwrite", *TINY)[0] == 0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    spaced = tmp_path / "my run 周"  # the command it suggests can be pasted as it is
    assert run_cli(capsys, "train", "--data", corpus, "--epochs", 1, "--out", spaced, *TINY)[0] == 0
    code, _, err = run_cli(capsys, "train", "--data", corpus, "--epochs", 1, "--out", spaced, *TINY)
    one_line_error(code, err, f"continue it with `charlm train --resume '{spaced}'`")
    (tmp_path / "afile").write_text("x")
    one_line_error(*run_cli(capsys, "train", "--data", corpus, "--out", tmp_path / "afile", *TINY)[::2], "afile is a file; give a folder")
    one_line_error(*run_cli(capsys, "train", "--data", corpus, "--out", tmp_path / "afile" / "sub", *TINY)[::2], "afile is a file")
    for timeout in ("nan", "-1"):  # (taken, unused, by a run outside torchrun)
        one_line_error(*run_cli(capsys, "train", "--data", corpus, "--out", tmp_path / "t", "--dist-timeout", timeout, *TINY)[::2],
                       f"--dist-timeout must be a positive number of seconds, got {float(timeout)}")
    assert not (tmp_path / "t").exists()


def test_an_unknown_flag_names_the_nearest_real_one(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["generate", str(tmp_path), "--lenght", "5"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "charlm generate: error: unrecognized arguments: --lenght 5 (did you mean --length?)" in err
    one_line_error(*run_cli(capsys, "train", "--corpus", tmp_path / "none.txt")[::2], "no such file")  # --corpus is --data


def test_train_help_shows_the_default_presets_values(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 512 from the jaychou preset; built in: 0)" in text  # --copy-window
    # what a run of your own text gets instead (it showed runs/jaychou and 分开 不分开, which such a run does not use)
    assert "built in: runs/charlm; with your own --data: runs/ and the file's name without its suffix)" in text
    assert "(default: 分开 不分开; with your own --data: none, each sample starting a line (a word, with --newlines space))" in text


def test_training_samples_use_a_prefix_whole_or_not_at_all(capsys, corpus, tmp_path):
    """A prefix with characters the vocabulary lacks is left out of the samples, with a note (they were dropped silently,
    so "Hello" sampled from "o"), as `charlm generate` passes over it without --prefix."""
    code, stdout, _ = run_cli(capsys, "train", "--data", corpus, "--epochs", 1, "--out", tmp_path / "r", *TINY[:-2],
                              "--prefixes", "Hello", "分开😀", "不分开")
    assert code == 0
    assert "note: the samples leave out --prefixes 'Hello' '分开😀': the vocabulary lacks 'H' 'e' 'l' 'o' '😀'\n" in stdout
    samples = [line for line in stdout.splitlines() if line.startswith(" - ")]
    assert len(samples) == 1 and samples[0].startswith(" - 不分开")


def test_prefix_defaults_to_what_the_model_knows(capsys, tmp_path):
    """An English model: no 分开 to start from, so no --prefix starts a line; an empty --prefix does the same."""
    f = tmp_path / "en.txt"
    f.write_text("the quick brown fox jumps over the lazy dog\n" * 60, encoding="utf-8")
    out = tmp_path / "en"
    code, stdout, _ = run_cli(capsys, "train", "--data", f, "--epochs", 1, "--out", out, *TINY, "--sample-every", 1)
    assert code == 0 and "\n - " in stdout  # a sample was printed during training, from the start of a line
    assert "note: the samples leave out --prefixes '分开': the vocabulary lacks '分' '开'; they begin a line instead" in stdout
    for flags in ([], ["--prefix", ""]):
        code, stdout, err = run_cli(capsys, "generate", out, "--length", 12, "--seed", 1, *flags)
        assert code == 0 and len(stdout.rstrip("\n")) >= 1, err
    one_line_error(*run_cli(capsys, "generate", out, "--prefix", "the", "--acrostic", "tq")[::2], "--prefix and --acrostic do not go together")
    one_line_error(*run_cli(capsys, "generate", out, "--acrostic", "tq", "--length", 10)[::2],
                   "--length and --acrostic do not go together: an acrostic writes one line per character it is given")
    one_line_error(*run_cli(capsys, "generate", out, "--acrostic", "tq", "--lines", 3)[::2], "--lines and --acrostic do not go together")
    one_line_error(*run_cli(capsys, "generate", out, "--acrostic", "")[::2], "--acrostic is empty")  # was a plain generation
    one_line_error(*run_cli(capsys, "generate", out, "--acrostic", " ", "--lines", 3)[::2], "the acrostic is only whitespace")
    assert run_cli(capsys, "generate", out, "--acrostic", "tq", "--lines", 0, "--seed", 1)[0] == 0  # --lines 0 is off


def test_missing_corpus_and_unknown_preset(capsys, tmp_path):
    one_line_error(*run_cli(capsys, "train", "--data", tmp_path / "none.txt", "--out", tmp_path / "o")[::2], "no such file")
    one_line_error(*run_cli(capsys, "train", "--preset", "nope")[::2], "unknown preset 'nope'; known presets: jaychou, jaychou-ft, seed")


def test_other_encodings_with_flag(capsys, tmp_path, monkeypatch):
    f = tmp_path / "gb.txt"
    f.write_bytes((LYRIC * 40).encode("gb18030"))
    one_line_error(*run_cli(capsys, "train", "--data", f, "--out", tmp_path / "o", *TINY)[::2], "--encoding")
    code, stdout, _ = run_cli(capsys, "train", "--data", f, "--encoding", "gb18030", "--epochs", 1, "--out", tmp_path / "o", *TINY)
    assert code == 0 and "vocabulary: 25 characters" in stdout
    # eval and inspect read a file in the encoding the run was trained in, unless told otherwise
    held = tmp_path / "more.txt"
    held.write_bytes("分开的时候我说不分开\n".encode("gb18030"))
    report = json.loads(run_cli(capsys, "eval", tmp_path / "o", held, "--json")[1])
    assert report["characters"]["read"] == 11 and report["characters"]["skipped"] == 0
    code, _, err = run_cli(capsys, "inspect", tmp_path / "o", "--file", held, "--out", tmp_path / "r.html")
    assert code == 0 and '"chars":["分","开","的","时","候"' in (tmp_path / "r.html").read_text(encoding="utf-8"), err
    one_line_error(*run_cli(capsys, "eval", tmp_path / "o", held, "--encoding", "utf-8")[::2], "cannot decode byte 0 (0xb7) as utf-8")
    assert f"note: {held}: not UTF-8, so read as gb18030, as the model's training text was" in run_cli(capsys, "eval", tmp_path / "o", held)[2]
    neither = tmp_path / "neither.txt"  # (0xff begins no character in either): the error says both were tried
    neither.write_bytes(b"fen kai \xff\n" * 20)
    one_line_error(*run_cli(capsys, "eval", tmp_path / "o", neither)[::2],
                   f"{neither}: cannot decode byte 8 (0xff) as utf-8, nor byte 8 (0xff) as gb18030, the training text's "
                   "encoding; try --encoding big5 (Chinese), cp1252 (Western European) or the file's real encoding")
    # what generate writes (UTF-8) is read as UTF-8, by eval, by eval - and by inspect
    code, samples, _ = run_cli(capsys, "generate", tmp_path / "o", "--num-samples", 2, "--length", 30, "--seed", 1)
    (tmp_path / "s.txt").write_text(samples, encoding="utf-8")
    code, stdout, err = run_cli(capsys, "eval", tmp_path / "o", tmp_path / "s.txt", "--check-copy")
    assert code == 0 and "note: not UTF-8" not in err, err
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(samples.encode("utf-8")), encoding="utf-8"))
    assert run_cli(capsys, "eval", tmp_path / "o", "-")[0] == 0
    code, _, err = run_cli(capsys, "inspect", tmp_path / "o", "--file", tmp_path / "s.txt", "--out", tmp_path / "r2.html")
    assert code == 0, err
    cut = tmp_path / "cut.txt"  # the fallback's own notes are kept: a character cut at the end, say
    cut.write_bytes(held.read_bytes() + "快".encode("gb18030")[:1])
    err = run_cli(capsys, "eval", tmp_path / "o", cut)[2]
    assert f"note: {cut}: not UTF-8, so read as gb18030" in err and "ends part-way through a character" in err


def test_a_utf16_run_reads_its_kind_of_file_without_being_told(capsys, tmp_path, monkeypatch):
    f = tmp_path / "u16.txt"
    f.write_bytes((LYRIC * 40).encode("utf-16"))
    assert run_cli(capsys, "train", "--data", f, "--encoding", "utf-16", "--epochs", 1, "--out", tmp_path / "o", *TINY)[0] == 0
    code, stdout, err = run_cli(capsys, "eval", tmp_path / "o", f)
    assert code == 0 and f"note: {f}: not UTF-8, so read as utf-16" in err, err
    one_line_error(*run_cli(capsys, "eval", tmp_path / "o", "/dev/zero")[::2], "looks like a binary file")  # not read for ever
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\x00" * 100), encoding="utf-8"))
    one_line_error(*run_cli(capsys, "eval", tmp_path / "o", "-")[::2], "looks like a binary file")
    # a pipe or standard input is read once, in the run's UTF-16 (NUL bytes and all) as a file is; a U+0000 or bytes that
    # do not decode stop it (/dev/zero and /dev/urandom are not read for ever)
    for given in ((), ("--encoding", "utf-16")):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(f.read_bytes()), encoding="utf-8"))
        code, stdout, err = run_cli(capsys, "eval", tmp_path / "o", "-", *given)
        assert code == 0 and stdout.count("characters: ") == 1, err
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("分开".encode("utf-16") + b"\x00" * 10), encoding="utf-8"))
    one_line_error(*run_cli(capsys, "eval", tmp_path / "o", "-")[::2],
                   "standard input: looks like a binary file (NUL bytes at offset 6), not text")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("分开".encode("utf-16") + b"\x00" * 6), encoding="utf-8"))
    one_line_error(*run_cli(capsys, "eval", tmp_path / "o", "-")[::2],
                   "standard input: looks like a binary file (U+0000 characters, read as utf-16), not text")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\xff\xfe" + bytes(range(256)) * 4), encoding="utf-8"))
    one_line_error(*run_cli(capsys, "eval", tmp_path / "o", "-")[::2], "standard input: cannot decode byte ")  # (/dev/urandom)


@pytest.mark.parametrize("flags,pattern", [
    (["--temperature", "0"], "temperature must be a number from 0.001 to 100"),
    (["--temperature", "-1"], "temperature must be a number from 0.001 to 100"),
    (["--temperature", "1e-300"], "temperature must be a number from 0.001 to 100"),  # would overflow the float32 logits: NaN, a crash
    (["--temperature", "nan"], "temperature must be a number from 0.001 to 100"),
    (["--temperature", "inf"], "temperature must be a number from 0.001 to 100"),
    (["--temperature", "1e39"], "temperature must be a number from 0.001 to 100"),  # (float32 overflowed: a warning)
    (["--top-k", "0"], "--top-k must be >= 1"),
    (["--top-p", "0"], "--top-p must be in (0, 1]"),
    (["--top-p", "1.5"], "--top-p must be in (0, 1]"),
    (["--length", "0"], "length must be >= 1"),
    (["--prefix", "分开XY"], "'X' 'Y'"),
])
def test_bad_generation_settings(capsys, tiny_run, flags, pattern):
    one_line_error(*run_cli(capsys, "generate", tiny_run, *flags)[::2], pattern)


def test_an_acrostic_needs_characters_the_model_holds_even_with_unk(capsys, tmp_path):
    from .conftest import train_tiny

    train_tiny(tmp_path, epochs=1, unk=True)  # with <unk>, a prefix's unknown character is read as <unk> ...
    run = tmp_path / "run"
    assert run_cli(capsys, "generate", run, "--prefix", "龙分开", "--length", 5, "--seed", 1)[0] == 0
    # ... but a line cannot start with it (was: KeyError traceback)
    one_line_error(*run_cli(capsys, "generate", run, "--acrostic", "龙我")[::2], "acrostic has characters the model's vocabulary does not know: '龙'")
    code, stdout, _ = run_cli(capsys, "generate", run, "--acrostic", "龙我", "--unknown", "skip", "--seed", 1)
    assert code == 0 and stdout.startswith("我") and len(stdout.strip().splitlines()) == 1
    one_line_error(*run_cli(capsys, "generate", run, "--acrostic", "龙", "--unknown", "skip")[::2],
                   "no character of the acrostic is in the model's vocabulary")


def test_unknown_prefix_can_be_skipped(capsys, tiny_run):
    code, stdout, _ = run_cli(capsys, "generate", tiny_run, "--prefix", "分X开", "--unknown", "skip", "--length", 5, "--seed", 0)
    assert code == 0 and stdout.startswith("分开")
    one_line_error(*run_cli(capsys, "generate", tiny_run, "--prefix", "☃X", "--unknown", "skip")[::2],
                   "no character of the prefix is in the model's vocabulary")


def test_bad_checkpoints(capsys, tiny_run, tmp_path):
    one_line_error(*run_cli(capsys, "generate", tmp_path / "missing")[::2], "no such checkpoint")
    bad = tmp_path / "bad"
    import shutil

    shutil.copytree(tiny_run / "best", bad)
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[:100])
    one_line_error(*run_cli(capsys, "generate", bad)[::2], "truncated")
    one_line_error(*run_cli(capsys, "eval", bad, bad / "checkpoint.json")[::2], "truncated")


def test_eval_skips_and_counts_unknown_characters(capsys, tiny_run, tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("分开的时候XYZ我说不分开\n", encoding="utf-8")
    code, stdout, _ = run_cli(capsys, "eval", tiny_run, f)
    assert code == 0 and "3 outside the vocabulary skipped" in stdout


def _charlm(*args, **kw):
    return subprocess.run([sys.executable, "-m", "charlm", *map(str, args)], capture_output=True, text=True, **kw)


def test_python_dash_m_and_no_traceback(tmp_path):
    r = _charlm("generate", tmp_path / "missing")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    r = _charlm("--help")
    assert r.returncode == 0 and "train" in r.stdout


def test_sigterm_writes_a_resumable_checkpoint(tmp_path, corpus):
    out = tmp_path / "run"
    big = tmp_path / "big.txt"
    big.write_text(LYRIC * 400, encoding="utf-8")
    p = subprocess.Popen([sys.executable, "-m", "charlm", "train", "--data", str(big), "--epochs", "50", "--out", str(out), *TINY],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not ((out / "metrics.jsonl").exists() and (out / "metrics.jsonl").read_text().strip()):
        time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 128 + signal.SIGTERM, err
    assert "charlm train --resume" in err and "Traceback" not in err
    assert (out / "curves.png").stat().st_size > 1000  # the plot of the epochs so far, as a finished run leaves it
    t = json.loads((out / "last" / "checkpoint.json").read_text())["trainer"]  # where the signal came (on a loaded
    n = t["epoch"] + 1  # machine, not always in epoch 2): the resume trains to the end of that epoch
    r = _charlm("train", "--resume", out, "--epochs", n)
    assert r.returncode == 0, r.stderr
    assert f"epoch {n}/{n}" in r.stdout  # counted as the progress lines count
    assert re.search(f"in epoch {n}( of {n})?, after batch {t['batch']}\n" if t["batch"] else f"after epoch {n - 1} of {n}\n", r.stdout)


@pytest.mark.parametrize("name", sorted(__import__("charlm.presets", fromlist=["PRESETS"]).PRESETS))
def test_every_preset_is_a_valid_config(name):
    from charlm.config import ModelConfig, TrainConfig, field_names
    from charlm.presets import get_preset

    values = get_preset(name)
    assert set(values) <= field_names(ModelConfig) | field_names(TrainConfig), set(values) - field_names(ModelConfig) - field_names(TrainConfig)
    ModelConfig(**{k: v for k, v in values.items() if k in field_names(ModelConfig)}, vocab_size=10)
    TrainConfig(**{k: v for k, v in values.items() if k in field_names(TrainConfig)})


def test_overwrite_clears_the_old_run_before_training(capsys, corpus, tmp_path, monkeypatch):
    from charlm.train import Trainer

    out = tmp_path / "run"
    assert run_cli(capsys, "train", "--data", corpus, "--epochs", 1, "--out", out, *TINY)[0] == 0
    assert (out / "best").is_dir() and (out / "curves.png").exists()
    (out / "notes.txt").write_text("mine")

    def stopped(self):  # the new run stopped in its first batch (Ctrl-C at once)
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_train_epoch", stopped)
    code, _, _ = run_cli(capsys, "train", "--data", corpus, "--epochs", 1, "--out", out, "--overwrite", *TINY)
    assert code == 130
    # nothing of the old run is left to be mistaken for the new one (generate would load the old best/)
    # (and the new one, stopped before its first checkpoint, left nothing either: no empty metrics.jsonl)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("how", ["--overwrite", "--resume"])
def test_a_checkpoint_this_user_may_not_replace_is_refused_before_anything_is_removed(capsys, corpus, tmp_path, monkeypatch, how):
    """(made read-only, or another user's): --overwrite removed best/ and then failed on last/ with a bare file name, and a
    resume left a full copy of the old checkpoint behind for good"""
    import charlm.checkpoint

    out = tmp_path / "run"
    assert run_cli(capsys, "train", "--data", corpus, "--epochs", 1, "--out", out, *TINY)[0] == 0
    before = sorted(p.name for p in out.rglob("*"))
    access = os.access
    locked = out / ("last" if how == "--overwrite" else "best")
    monkeypatch.setattr(charlm.checkpoint.os, "access", lambda p, mode, **kw: Path(p) != locked and access(p, mode, **kw))
    args = ["--data", corpus, "--epochs", 1, "--out", out, "--overwrite", *TINY] if how == "--overwrite" else ["--resume", out, "--epochs", 2]
    code, out_, err = run_cli(capsys, "train", *args)
    one_line_error(code, err, f"{locked} cannot be replaced: this user may not write it")
    assert "resuming" not in out_ and sorted(p.name for p in out.rglob("*")) == before


def test_a_writable_device_or_pipe_is_an_output_whatever_its_folder(tmp_path, monkeypatch):
    """(for a user other than root, /dev is not writable): inspect --out /dev/stdout, --png /dev/null were refused"""
    import charlm.checkpoint
    from charlm.checkpoint import check_writable

    access = os.access
    monkeypatch.setattr(charlm.checkpoint.os, "access", lambda p, mode, **kw: Path(p) != Path("/dev") and access(p, mode, **kw))
    assert check_writable("/dev/null", "--png") == Path("/dev/null")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert check_writable(fifo, "--out") == fifo
    with pytest.raises(CharlmError, match="--out /dev/x cannot be made: /dev is not writable"):
        check_writable("/dev/x", "--out")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_a_speed_flag_the_device_cannot_run_writes_nothing(capsys, corpus, tmp_path):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--data", corpus, "--out", out, *[a if a != "cpu" else "auto" for a in TINY], "--cuda-graph")
    one_line_error(code, err, "--cuda-graph needs a CUDA GPU")
    assert not out.exists() or not any(out.iterdir())
    assert run_cli(capsys, "train", "--data", corpus, "--epochs", 1, "--out", out, *TINY)[0] == 0  # the folder is free


def test_a_resume_with_nothing_left_to_train_says_how_to_go_on(capsys, tiny_run, tmp_path):
    epochs = json.loads((tiny_run / "last" / "checkpoint.json").read_text())["trainer"]["epoch"]
    one_line_error(*run_cli(capsys, "train", "--resume", tiny_run)[::2], f"has already trained its {epochs} epochs: give --epochs above {epochs}")
    one_line_error(*run_cli(capsys, "train", "--resume", tiny_run, "--epochs", 2)[::2],
                   f"has already trained {epochs} epochs, more than --epochs 2: give --epochs above {epochs}")  # (not "6 of 2")
    from .conftest import train_tiny

    train_tiny(tmp_path, epochs=2, max_minutes=1e-6)  # stopped by its time limit after one step
    timed = tmp_path / "run"
    one_line_error(*run_cli(capsys, "train", "--resume", timed)[::2], "minutes (--max-minutes): give a larger --max-minutes, or 0")


def test_a_run_cut_while_validating_its_last_epoch_resumes(capsys, corpus, tmp_path):
    out = tmp_path / "run"
    assert run_cli(capsys, "train", "--data", corpus, "--epochs", 1, "--out", out, *TINY)[0] == 0
    meta = json.loads((out / "last" / "checkpoint.json").read_text())
    meta["trainer"]["pending_validation"] = {"at_epoch_end": True, "over_time": False}  # as a Ctrl-C while validating leaves it
    meta["metrics"] = []
    (out / "last" / "checkpoint.json").write_text(json.dumps(meta))
    code, stdout, _ = run_cli(capsys, "train", "--resume", out)  # all epochs trained, one validation still to do
    assert code == 0 and "epoch 1/1" in stdout
    assert "after epoch 1 of 1; first the validation that was due when it stopped" in stdout
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


def test_a_relative_data_path_is_kept_absolute(capsys, corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(corpus.parent)
    assert run_cli(capsys, "train", "--data", corpus.name, "--epochs", 1, "--out", "run", *TINY)[0] == 0
    data = json.loads((tmp_path / "run" / "last" / "checkpoint.json").read_text())["train_config"]["data"]
    assert data == str(corpus.resolve())
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # the training text is found from anywhere (was: "lyrics.txt: no such file")
    code, _, err = run_cli(capsys, "generate", tmp_path / "run", "--length", 10, "--seed", 1, "--check-copy")
    assert code == 0 and "copy check" in err
    missing = tmp_path / "gone.txt"
    missing.write_text(LYRIC * 40, encoding="utf-8")
    assert run_cli(capsys, "train", "--data", missing, "--epochs", 1, "--out", tmp_path / "run2", *TINY)[0] == 0
    missing.unlink()
    code, out, err = run_cli(capsys, "eval", tmp_path / "run2", corpus, "--bigram")
    one_line_error(code, err, "--bigram needs the training text")
    assert out == ""  # checked before any scoring


def test_english_text_without_newlines(capsys, tmp_path):
    f = tmp_path / "en.txt"
    f.write_text("ROMEO: But soft, what light through yonder window breaks?\nJULIET: Ay me!\n" * 40, encoding="utf-8")
    out = tmp_path / "run"
    assert run_cli(capsys, "train", "--data", f, "--newlines", "space", "--epochs", 1, "--out", out, *TINY)[0] == 0
    # no newline in its vocabulary and no known --prefixes: a sample starts after a space, as a word does
    code, stdout, _ = run_cli(capsys, "generate", out, "--length", 20, "--seed", 1)
    assert code == 0 and len(stdout.rstrip("\n")) == 20
    code, stdout, _ = run_cli(capsys, "generate", out, "--acrostic", "R J", "--seed", 1)  # spaces in an acrostic start no line
    assert code == 0 and [line[0] for line in stdout.splitlines()] == ["R", "J"]
    one_line_error(*run_cli(capsys, "generate", out, "--acrostic", "  ")[::2], "the acrostic is only whitespace")
    # the copy report quotes English in plain quotes, not Chinese brackets
    code, _, err = run_cli(capsys, "generate", out, "--prefix", "ROMEO:", "--length", 20, "--seed", 1, "--check-copy")
    assert code == 0 and "characters \"" in err and "「" not in err
    # samples from generate: the markers part them, not the blank lines of a play
    samples = tmp_path / "samples.txt"
    samples.write_text("--- sample 1 ---\nROMEO: soft\n\nJULIET: Ay\n--- sample 2 (cut short) ---\nROMEO: light\n", encoding="utf-8")
    code, stdout, err = run_cli(capsys, "eval", out, samples, "--check-copy")
    assert code == 0 and "copy check over 2 samples" in err and "sample 3" not in err
    assert "outside the vocabulary" not in stdout  # the markers (a Ctrl-C's "(cut short)" too) are not scored
    assert 'sample 2: copy check: longest span also in the training text 7 characters "ROMEO: "' in err  # not " ROMEO: ": its line end is no space
    # the same file scores the same with and without --check-copy: the markers are left out either way, and said so
    plain = json.loads(run_cli(capsys, "eval", out, samples, "--json")[1])
    checked = json.loads(run_cli(capsys, "eval", out, samples, "--json", "--check-copy")[1])
    assert plain["loss"] == checked["loss"] and plain["characters"] == checked["characters"]
    assert plain["characters"]["read"] == len("ROMEO: soft\n\nJULIET: Ay\nROMEO: light\n")
    assert any("the 2 lines '--- sample N ---' that generate writes between samples are left out" in n for n in plain["notes"])
    rows = json.loads(run_cli(capsys, "eval", out, samples, "--json", "--each-line")[1])["lines"]
    assert [r["line"] for r in rows] == [2, 4, 6]  # the file's own line numbers, the markers' lines not rows
    # a line already at --max-line-length ends at once on a space (shown as the break), as it would on a newline
    code, stdout, err = run_cli(capsys, "generate", out, "--prefix", "ROMEO: But", "--lines", 1, "--max-line-length", 8, "--seed", 1)
    assert code == 0 and stdout == "ROMEO: But\n" and "it is ended at once" in err, (stdout, err)


def test_help_shows_the_named_presets_values(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--preset", "shakespeare-cpu", "--help"])
    assert "from the shakespeare-cpu preset" in capsys.readouterr().out


def test_a_folder_of_a_run_that_never_checkpointed_says_overwrite_not_resume(capsys, corpus, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text("")  # killed (kill -9) before its first checkpoint
    one_line_error(*run_cli(capsys, "train", "--data", corpus, "--out", out, *TINY)[::2],
                   "stopped before its first checkpoint, so it cannot be resumed; replace it with --overwrite")


def test_eval_shows_progress_as_plain_lines_without_a_terminal(capsys, tiny_run, tmp_path, monkeypatch):
    from charlm import progress

    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.0)
    f = tmp_path / "t.txt"
    f.write_text(LYRIC * 30, encoding="utf-8")
    code, stdout, err = run_cli(capsys, "eval", tiny_run, f)
    assert code == 0 and "perplexity" in stdout
    assert f"scoring: {len(LYRIC) * 30:,} of {len(LYRIC) * 30:,} characters (100%)" in err.splitlines()
    code, _, err = run_cli(capsys, "eval", tiny_run, f, "--each-line")  # a line at a time (it stayed at "1 of")
    shown = [x for x in err.splitlines() if x.startswith("scoring: ")]
    lines = int(shown[-1].split(" of ")[1].split()[0])
    assert code == 0 and lines >= LYRIC.count("\n") * 30 and shown[-3:] == [
        f"scoring: {n:,} of {lines:,} lines ({n / lines:.0%})" for n in (lines - 2, lines - 1, lines)]


def test_generate_says_the_seed_it_drew_and_that_seed_gives_the_text_again(capsys, tiny_run):
    code, first, err = run_cli(capsys, "generate", tiny_run, "--length", 30)
    assert code == 0
    seed = int(err.split("seed ", 1)[1].split()[0])
    assert f"--seed {seed} gives this text again" in err
    code, again, err = run_cli(capsys, "generate", tiny_run, "--length", 30, "--seed", seed)
    assert code == 0 and again == first and err == ""
    one_line_error(*run_cli(capsys, "generate", tiny_run, "--seed", 2**64)[::2], "seed must be -1 (random) or from 0 to")
    # a training's seed too: the CPU's generator reads 32 bits, so --seed 4294967296 trained the very run of --seed 0
    one_line_error(*run_cli(capsys, "train", "--seed", 2**32, "--epochs", 1, "--out", tiny_run.parent / "big-seed")[::2],
                   "seed must be from 0 to 4294967295, got 4294967296")
    # --momentum with Adam was left out unsaid, and the settings line showed it as in use
    one_line_error(*run_cli(capsys, "train", "--momentum", 0.9, "--epochs", 1, "--out", tiny_run.parent / "big-seed")[::2],
                   "--momentum works with --optimizer sgd, and this run's is adamw (whose moments are its own): it would do nothing")
    assert not (tiny_run.parent / "big-seed").exists()
    one_line_error(*run_cli(capsys, "generate", tiny_run, "--greedy", "--num-samples", 3)[::2],
                   "--greedy writes the same text every time, so --num-samples 3 would write it 3 times")
    code, greedy, err = run_cli(capsys, "generate", tiny_run, "--length", 30, "--greedy")  # the same with any seed: none said
    assert code == 0 and greedy and err == ""


@pytest.mark.parametrize("argv, message", [
    (["train", "--cell", "LSTM"], "charlm train: error: argument --cell: invalid choice: 'LSTM'"),
    (["generate", "run", "--lenght", "5"], "charlm generate: error: unrecognized arguments: --lenght 5 (did you mean --length?)"),
    (["eval"], "charlm eval: error: the following arguments are required: checkpoint"),
    ([], "charlm: error: give a command: train, generate, eval, serve, inspect"),
    (["bogus"], "charlm: error: argument command: invalid choice: 'bogus'"),
    (["--foo", "inspect", "run"], "charlm: error: unrecognized arguments: --foo"),  # charlm's, not inspect's
    (["generate", "run", "--prefix", "-Romeo"],  # a text starting with "-" reads as a flag: the way round it is said
     "charlm generate: error: argument --prefix: expected one argument; a text that starts with - goes after an = (--prefix=-text)"),
    (["train", "--prefixes", "-x"], "charlm train: error: argument --prefixes: expected at least one argument; a text that starts with - "),
    (["generate", "run", "--length"], "charlm generate: error: argument --length: expected one argument ("),  # not a text
])
def test_an_argument_error_is_one_line(capsys, argv, message):
    """What was wrong and where the options are, in one line (argparse printed the whole usage first: 30 lines for train)."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and err.startswith(message), err
    assert err.rstrip().endswith(f"(`{message.split(': error')[0]} --help` lists the options)")


def test_lines_end_without_a_blank_line(capsys, tiny_run):
    code, out, _ = run_cli(capsys, "generate", tiny_run, "--lines", 2, "--seed", 1)
    assert code == 0 and out.endswith("\n") and not out.endswith("\n\n") and out.count("\n") == 2


def test_ctrl_c_during_many_samples_prints_what_was_made(capsys, tiny_run, monkeypatch):
    from charlm import sampling

    real = sampling.generate

    def interrupted_at(n):  # a Ctrl-C as the n-th step comes
        def steps(*a, **k):
            for i, step in enumerate(real(*a, **k)):
                if i == n:
                    raise KeyboardInterrupt
                yield step
        return steps

    monkeypatch.setattr(sampling, "generate", interrupted_at(5))
    code, out, err = run_cli(capsys, "generate", tiny_run, "--num-samples", 3, "--seed", 1, "--prefix", "分开")
    assert code == 130 and "interrupted" in err
    assert out.count("(cut short) ---") == 3 and all(len(part.split("\n")[1]) >= 2 for part in out.split("---")[2::2])
    assert not out.endswith("\n\n")  # (an extra blank line came after the samples)
    code, out, _ = run_cli(capsys, "generate", tiny_run, "--seed", 1, "--prefix", "分开")  # one sample: ended on a line break
    assert code == 130 and out.endswith("\n") and not out.endswith("\n\n") and len(out) >= 4
    monkeypatch.setattr(sampling, "generate", interrupted_at(1))  # right after the prefix
    code, out, _ = run_cli(capsys, "generate", tiny_run, "--seed", 1, "--prefix", "分开\\n")  # written so far: its line break
    assert code == 130 and out == "分开\n"  # (was "分开\n\n")


def test_a_run_folder_in_use_by_a_running_training_is_refused(capsys, corpus, tmp_path):
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "run"
    assert run_cli(capsys, "train", "--data", corpus, "--epochs", 1, "--out", out, *TINY)[0] == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    fd = os.open(out, os.O_RDONLY)  # what a `charlm train` still writing this folder holds
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for extra in (["--overwrite"], ["--resume", out, "--epochs", 2]):
            flags = ["--data", corpus, *TINY] if extra[0] == "--overwrite" else []
            one_line_error(*run_cli(capsys, "train", *flags, "--out", out, *extra)[::2], "in use by another `charlm train` that is still running")
        assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # nothing deleted or rewritten
    finally:
        os.close(fd)
    assert run_cli(capsys, "train", "--resume", out, "--epochs", 2)[0] == 0  # the lock goes with the process holding it


def test_closed_and_narrow_outputs(capsys, tiny_run, monkeypatch):
    import io

    code, text, _ = run_cli(capsys, "generate", tiny_run, "--length", 8, "--seed", 1)
    monkeypatch.setattr(sys, "stderr", None)  # 2>&- : the seed's note went into the text
    assert main(["generate", str(tiny_run), "--length", "8", "--seed", "1"]) == 0 and capsys.readouterr().out == text
    monkeypatch.setattr(sys, "stdout", None)  # >&- : was an AttributeError traceback, then the text went nowhere with exit 0
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert main(["generate", str(tiny_run), "--length", "8", "--seed", "1"]) == 2
    assert "generate: error: standard output is closed" in sys.stderr.getvalue()
    narrow = io.TextIOWrapper(io.BytesIO(), encoding="ascii")  # PYTHONIOENCODING=ascii: was an error after the work
    monkeypatch.setattr(sys, "stdout", narrow)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert main(["generate", str(tiny_run), "--length", "8", "--seed", "1"]) == 0
    narrow.flush()
    assert narrow.buffer.getvalue().decode("ascii") == text.encode("ascii", "backslashreplace").decode("ascii")
    assert "cannot write Chinese characters, so they are written as \\u escapes" in sys.stderr.getvalue()
    gbk = io.TextIOWrapper(io.BytesIO(), encoding="gbk")  # a Chinese Windows console: Chinese, but no emoji
    monkeypatch.setattr(sys, "stdout", gbk)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    _usable_streams()
    print("分开😀", end="")
    gbk.flush()
    assert gbk.buffer.getvalue().decode("gbk") == "分开\\U0001f600" and "escapes" not in sys.stderr.getvalue()
    chosen = io.TextIOWrapper(io.BytesIO(), encoding="gbk", errors="replace")  # PYTHONIOENCODING=gbk:replace: as asked
    monkeypatch.setattr(sys, "stdout", chosen)
    _usable_streams()
    assert chosen.errors == "replace"


def test_a_resume_hint_is_quoted_for_the_shell_it_is_pasted_into():
    from charlm.cli import _shell

    assert (_shell("runs/a b"), _shell("-x"), _shell("runs/mine")) == ("'runs/a b'", "./-x", "runs/mine")
    windows = [_shell(p, windows=True) for p in ("runs\\a&b", "runs\\a b", "C:\\runs\\mine")]  # cmd.exe: " quotes; & runs a command
    assert windows == ['"runs\\a&b"', '"runs\\a b"', "C:\\runs\\mine"]


@pytest.mark.parametrize("both", [False, True])
def test_a_training_whose_output_is_closed_goes_on(corpus, tmp_path, monkeypatch, both):
    """`charlm train | head -3` (and `2>&1 | head`): the training used to stop after a few lines with exit 0."""
    import io

    class Pipe(io.StringIO):
        def __init__(self, room):
            super().__init__()
            self.room = room

        def write(self, text):
            if self.tell() + len(text) > self.room:
                raise BrokenPipeError(32, "Broken pipe")
            return super().write(text)

    monkeypatch.setattr(sys, "stdout", Pipe(100))
    monkeypatch.setattr(sys, "stderr", Pipe(0) if both else io.StringIO())  # both: `2>&1 | head`, one pipe for the two
    assert main(["train", "--data", str(corpus), "--epochs", "3", "--out", str(tmp_path / "run"), *map(str, TINY)]) == 0
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 3
    assert both or "the output was closed" in sys.stderr.getvalue()


def test_a_training_text_changed_since_is_not_compared_against(capsys, tmp_path):
    from .conftest import train_tiny

    train_tiny(tmp_path, epochs=1)
    run, corpus = tmp_path / "run", tmp_path / "corpus.txt"
    assert run_cli(capsys, "generate", run, "--check-copy", "--length", 5, "--seed", 1)[0] == 0
    corpus.write_text(corpus.read_text(encoding="utf-8").replace("分开", "开分"), encoding="utf-8")  # the same characters, changed
    for args in (["generate", run, "--check-copy", "--length", 5], ["eval", run, corpus, "--bigram"]):
        one_line_error(*run_cli(capsys, *args)[::2], f"{corpus} is no longer the text {run / 'best'} was trained on")



def test_a_held_out_part_changed_since_is_not_scored_as_the_trainings(capsys, tmp_path):
    """The training part unchanged, the held-out one changed (its end, or past --limit-chars): eval without FILE said
    "the same text and figure as the training's validation" of a figure that was not, and a resume validated on it."""
    from .conftest import train_tiny

    train_tiny(tmp_path, epochs=1)
    run, corpus = tmp_path / "run", tmp_path / "corpus.txt"
    assert run_cli(capsys, "eval", run)[0] == 0
    text = corpus.read_text(encoding="utf-8")
    corpus.write_text(text[:-3] + "开" + text[-2:], encoding="utf-8")  # one character of the last tenth
    one_line_error(*run_cli(capsys, "eval", run)[::2],
                   f"{corpus}: its held-out part is no longer the text {run / 'best'} was validated on (its checksum differs; "
                   f"the training part is unchanged)")
    one_line_error(*run_cli(capsys, "train", "--resume", run, "--epochs", 2)[::2],
                   f"{run / 'last'}: the held-out text differs from the one this run was validated on")
    assert run_cli(capsys, "eval", run, corpus)[0] == 0  # the file as it is now can be scored as a file
    corpus.write_text(text, encoding="utf-8")
    assert run_cli(capsys, "eval", run)[0] == 0

def test_a_pipe_as_the_training_text_is_refused(capsys, tmp_path, corpus):
    """Training from /dev/stdin worked, but --resume, --check-copy and --bigram then waited for stdin again."""
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    # a writer, so that a run that read the pipe after all would train (and fail this test) rather than wait for ever
    threading.Thread(target=lambda: fifo.write_bytes(Path(corpus).read_bytes()), daemon=True).start()
    one_line_error(*run_cli(capsys, "train", "--data", fifo, "--out", tmp_path / "run", *TINY)[::2],
                   f"--data {fifo} is not a regular file (a pipe, a device or a stream)")
    # /dev/stdin names a stream even when it leads to a file (charlm train --data /dev/stdin < lyrics.txt)
    one_line_error(*run_cli(capsys, "train", "--data", "/dev/stdin", "--out", tmp_path / "run", *TINY)[::2],
                   "--data /dev/stdin is not a regular file")
    assert not (tmp_path / "run").exists()
    with open(fifo, "rb") as f:  # let the writer go
        f.read()


def test_a_path_that_is_not_utf8_is_refused_before_training(capsys, corpus, tmp_path):
    """It trained an epoch, then failed to write checkpoint.json, leaving a folder that could be neither resumed nor reused."""
    odd = os.fsdecode(bytes(tmp_path) + b"/lat\xe9.txt")
    Path(odd).write_bytes(Path(corpus).read_bytes())
    one_line_error(*run_cli(capsys, "train", "--data", odd, "--out", tmp_path / "run", *TINY)[::2],
                   f"data: {tmp_path}/lat\\xe9.txt is not valid UTF-8, and a checkpoint stores it as text; rename it")
    one_line_error(*run_cli(capsys, "train", "--data", corpus, "--out", odd + ".run", *TINY)[::2], "out: ")
    one_line_error(*run_cli(capsys, "train", "--data", corpus, "--out", tmp_path / "run", *TINY[:-2], "--prefixes",
                            os.fsdecode(b"\xe5\x88"))[::2], "prefixes: \\xe5\\x88 is not valid UTF-8")
    one_line_error(*run_cli(capsys, "train", "--data", corpus, "--out", tmp_path / "run", *TINY[:-2], "--prefixes",
                            "\ud83d")[::2], "prefixes: \\ud83d is not valid UTF-8")  # a lone surrogate from a library caller
    assert not (tmp_path / "run").exists()


def test_a_full_disk_while_training_is_one_line(capsys, corpus, tmp_path, monkeypatch):
    import errno

    from safetensors import SafetensorError

    from charlm import checkpoint as ckpt_io

    def full(*a, **k):  # as safetensors 0.8 reports a full disk (a traceback before)
        raise SafetensorError(f"Error while serializing: I/O error: No space left on device (os error {errno.ENOSPC})")

    monkeypatch.setattr(ckpt_io, "save_file", full)
    one_line_error(*run_cli(capsys, "train", "--data", corpus, "--epochs", 1, "--out", tmp_path / "run", *TINY)[::2],
                   "No space left on device", expect_code=1)
    assert not (tmp_path / "run" / "last").exists() and not list((tmp_path / "run").glob(".*"))  # nothing half-written


def test_a_likely_wrong_encoding_is_one_note_and_the_command_goes_on(capsys, tiny_run, tmp_path):
    f = tmp_path / "gb.txt"
    f.write_bytes(("分开的时候我会让你不分开\n" * 20).encode("gb18030"))
    code, out, err = run_cli(capsys, "eval", tiny_run, f, "--encoding", "latin-1")
    assert code == 0 and "perplexity" in out
    assert err.strip().splitlines() == [f"note: {f} was read as latin-1 as asked, but its bytes read as Chinese text in gb18030; "
                                        "if its characters look wrong, try --encoding gb18030"]


def test_a_running_training_without_a_checkpoint_yet_is_named_as_such(capsys, tmp_path, tiny_run):
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "starting"
    out.mkdir()
    fd = os.open(out, os.O_RDONLY)  # a `charlm train` before its first checkpoint
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for args in (["train", "--resume", out], ["generate", out], ["eval", out, tiny_run]):
            one_line_error(*run_cli(capsys, *args)[::2], "no checkpoint yet; the `charlm train` still writing this folder")
    finally:
        os.close(fd)
    one_line_error(*run_cli(capsys, "generate", out)[::2], "not a charlm checkpoint")


def test_generate_reads_prefix_line_ends_as_newlines_and_refuses_length_with_lines(capsys, tiny_run):
    a = run_cli(capsys, "generate", tiny_run, "--prefix", "分开\r\n", "--length", 5, "--seed", 1)
    b = run_cli(capsys, "generate", tiny_run, "--prefix", "分开\n", "--length", 5, "--seed", 1)
    assert a[0] == 0 and a[1] == b[1]
    one_line_error(*run_cli(capsys, "generate", tiny_run, "--lines", 2, "--length", 5)[::2], "--length and --lines do not go together")


def test_a_large_text_of_ones_own_on_the_default_preset_is_pointed_to_a_larger_model(capsys, tmp_path, monkeypatch):
    from charlm.train import Trainer

    monkeypatch.setattr(Trainer, "fit", lambda self: [])  # (what is said before the training is what counts)
    big, small = tmp_path / "big.txt", tmp_path / "small.txt"
    big.write_text("To be, or not to be, that is the question.\n" * 7000, encoding="utf-8")  # 270,900 to train on
    small.write_text("To be, or not to be, that is the question.\n" * 6900, encoding="utf-8")
    said = "note: the model is the default preset's (jaychou: a small, heavily regularised model for 60,000 characters"
    for data, more, note in ((big, [], True), (small, [], False), (big, ["--preset", "jaychou"], False),
                             (big, ["--hidden-size", "512", "--embedding-size", "512"], False),  # (a model of one's own)
                             (big, ["--limit-chars", "9000"], False)):  # (trained on less)
        code, out, _ = run_cli(capsys, "train", "--data", data, *more, "--out", tmp_path / "r", "--overwrite", "--device", "cpu")
        assert code == 0 and (said in out) == note, (more, out)
    assert ("270,900 characters to train on may gain from a larger, less regularised one, such as --preset shakespeare-cpu's "
            "(2x384, made for 1.1M characters of English; give it your --data, an --out and --prefixes)") in run_cli(
        capsys, "train", "--data", big, "--out", tmp_path / "r", "--overwrite", "--device", "cpu")[1]
    import random

    rng = random.Random(0)  # Chinese of 2,000 characters: the songci preset, made for it
    big.write_text("".join(chr(0x4E00 + rng.randrange(2000)) + ("\n" if i % 20 == 19 else "") for i in range(290_000)), encoding="utf-8")
    assert "such as --preset songci's (1x512, made for 1.7M characters of Chinese; give it" in run_cli(
        capsys, "train", "--data", big, "--out", tmp_path / "r", "--overwrite", "--device", "cpu")[1]


def test_eval_notes_a_text_written_a_symbol_and_a_space_at_a_time(capsys, tiny_run, tmp_path):
    spaced = tmp_path / "spaced.txt"
    spaced.write_text(" ".join("分开的时候我说不分开") + "\n" + " ".join("雨下整夜我的爱溢出就像雨水") + "\n", encoding="utf-8")
    spaced.write_text(spaced.read_text(encoding="utf-8") * 5, encoding="utf-8")
    code, out, _ = run_cli(capsys, "eval", tiny_run, spaced)
    assert code == 0 and "note: every other character of the text is a space (as in Penn Treebank's character files" in out


def test_train_reads_a_typed_backslash_n_in_prefixes_as_a_line_break(capsys, corpus, tmp_path):
    out = tmp_path / "run"
    code, stdout, _ = run_cli(capsys, "train", "--data", corpus, "--epochs", 1, "--out", out, *TINY[:-1], "分开\\n")
    assert code == 0 and "note: the samples leave out" not in stdout  # (the vocabulary has no backslash)
    assert load_model(out)[2].train_config.prefixes == ("分开\n",)


def test_generate_reads_a_typed_backslash_n_as_a_line_break_as_inspect_does(capsys, tiny_run):
    typed = run_cli(capsys, "generate", tiny_run, "--prefix", "分开\\n", "--style-prefix", "我\\n", "--length", 5, "--seed", 1)
    real = run_cli(capsys, "generate", tiny_run, "--prefix", "分开\n", "--style-prefix", "我\n", "--length", 5, "--seed", 1)
    assert typed[0] == 0 and typed[1] == real[1] and typed[1].startswith("分开\n")



def test_generate_takes_an_acrostics_typed_line_breaks_and_names_a_prefix_that_is_not_utf8(capsys, tiny_run):
    typed = run_cli(capsys, "generate", tiny_run, "--acrostic", "我\\n你", "--seed", 1)
    assert typed[0] == 0 and typed[1] == run_cli(capsys, "generate", tiny_run, "--acrostic", "我你", "--seed", 1)[1]
    cut = "分开".encode()[:-1].decode("utf-8", "surrogateescape")  # a character cut in two, as the shell passes it
    for flag in ("--prefix", "--style-prefix", "--acrostic"):
        one_line_error(*run_cli(capsys, "generate", tiny_run, flag, cut)[::2], f"{flag} '分\\xe5\\xbc' is not valid UTF-8")


def test_a_checkpoints_own_file_reads_its_folder_and_a_best_without_one_is_said(capsys, tiny_run, tmp_path):
    import shutil

    want = run_cli(capsys, "generate", tiny_run / "best", "--length", 5, "--seed", 1)[1]
    for name in ("checkpoint.json", "model.safetensors"):  # (was: "not a charlm checkpoint (no checkpoint.json, …)")
        assert run_cli(capsys, "generate", tiny_run / "best" / name, "--length", 5, "--seed", 1)[:2] == (0, want)
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "best" / "checkpoint.json").unlink()  # other weights, used without a word
    code, _, err = run_cli(capsys, "generate", run, "--length", 5, "--seed", 1)
    assert code == 0 and f"note: {run / 'best'} holds no checkpoint.json: reading {run / 'last'} instead" in err

@pytest.mark.parametrize("key, value, message", [
    ("format_version", "1", "format_version is '1'"),
    ("format_version", None, "format_version is None"),
    ("sha256", [], "sha256 is []"),
    ("model_config", None, "model_config is None"),
    ("train_config", [], "train_config is []"),
    ("metrics", [1, 2], "metrics must be a list of objects"),
    ("metrics", [{"epoch": 1, "val_loss": "x"}], "metrics row 1's val_loss is 'x', not a number"),  # (serve answered 500)
    ("metrics", [{"epoch": 1, "step": True}], "metrics row 1's step is 'True', not a number"),
    ("model_config.hidden_size", 32.0, "hidden_size must be a whole number, got 32.0"),
    ("model_config.copy_window", 10**12, "copy_window must be from 0 to"),
    ("train_config.prefixes", [1, 2], "prefixes must be a list of texts"),
    ("vocab.itos", [1, 2], "vocabulary entries must be single characters"),
])
def test_a_tampered_checkpoint_json_is_a_one_line_error(capsys, tiny_run, tmp_path, key, value, message):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    meta_file = run / "best" / "checkpoint.json"
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    *parents, last = key.split(".")
    target = meta
    for k in parents:
        target = target[k]
    target[last] = value
    meta_file.write_text(json.dumps(meta), encoding="utf-8")
    for cmd in (["generate", run / "best", "--length", 5], ["eval", run / "best", run.parent / "run" / "metrics.jsonl"]):
        one_line_error(*run_cli(capsys, *cmd)[::2], message)


def test_a_tampered_training_state_is_a_one_line_error_on_resume(capsys, tiny_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    meta_file = run / "last" / "checkpoint.json"
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    for trainer in ({}, {**meta["trainer"], "epoch": "2"}, {**meta["trainer"], "best_val": "x"},
                    {**meta["trainer"], "pending_validation": 5}, {**meta["trainer"], "pending_validation": {"x": 1}},
                    {**meta["trainer"], "train_seconds": "x"}, {**meta["trainer"], "schedule_steps": "x"},
                    {**meta["trainer"], "batch": 10**6}, {**meta["trainer"], "step": -1}):
        meta_file.write_text(json.dumps({**meta, "trainer": trainer}), encoding="utf-8")
        one_line_error(*run_cli(capsys, "train", "--resume", run, "--epochs", 9)[::2], "damaged checkpoint")
    row = {"val_loss": None, "val_ppl": None, "step": 7, "epoch": 1}  # a metrics row without its training loss: was a
    meta_file.write_text(json.dumps({**meta, "metrics": [row]}), encoding="utf-8")  # traceback as the curves were drawn
    code, out, err = run_cli(capsys, "train", "--resume", run, "--epochs", 9)
    one_line_error(code, err, "metrics row 1 has no train_loss")


def _rewrite_tensors(ckpt, name: str, change) -> None:
    """The tensor file ``name`` of the checkpoint folder ``ckpt`` replaced by ``change(its tensors)``, its checksum made to match."""
    import hashlib

    from safetensors.torch import load_file, save_file

    tensors_file, meta_file = ckpt / name, ckpt / "checkpoint.json"
    save_file({k: v.contiguous() for k, v in change(load_file(tensors_file)).items()}, str(tensors_file))
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    meta["sha256"][name] = hashlib.sha256(tensors_file.read_bytes()).hexdigest()
    meta_file.write_text(json.dumps(meta), encoding="utf-8")


@pytest.mark.parametrize("change, message", [
    (lambda t: {**t, "optim.0.1.1": t["optim.0.1.1"][:-8]}, "the optimizer's exp_avg for a weight of shape"),  # read out of bounds: a crash
    (lambda t: {**t, "carried.h": torch.zeros(1, 2, 32), "carried.c": torch.zeros(1, 2, 32)}, "the carried h is [1, 2, 32]"),
    (lambda t: {**t, "carried.h": torch.zeros(1, 4, 32), "carried.c": torch.zeros(1, 4, 32, dtype=torch.float64)}, "the carried c is"),
])
def test_training_tensors_of_other_shapes_are_a_one_line_error_on_resume(capsys, tiny_run, tmp_path, change, message):
    """trainer.safetensors written by something else (its checksum made to match): refused before any step reads it."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    _rewrite_tensors(run / "last", "trainer.safetensors", change)
    one_line_error(*run_cli(capsys, "train", "--resume", run, "--epochs", 9)[::2], message)


def test_weights_to_start_from_that_do_not_fit_are_a_one_line_error(capsys, tiny_run, corpus, tmp_path):
    """--init-from checks the weights as generate does: of another shape, or a name missing (a tied model's decoder
    bias was once passed over: strict loading was off for tied models)."""
    import shutil

    for change, message in ((lambda w: {**w, "rnn.weight_ih_l0": w["rnn.weight_ih_l0"][:64]}, "rnn.weight_ih_l0 is [64, 16] there, [128, 16] in the model"),
                            (lambda w: {("decoder.biqs" if k == "decoder.bias" else k): v for k, v in w.items()}, "missing ['decoder.bias'], unexpected ['decoder.biqs']")):
        run = tmp_path / "base"
        shutil.rmtree(run, ignore_errors=True)
        shutil.copytree(tiny_run, run)
        _rewrite_tensors(run / "best", "model.safetensors", change)
        for cmd in (["train", "--init-from", run / "best", "--data", corpus, "--out", tmp_path / "ft", "--epochs", 1, "--device", "cpu"],
                    ["generate", run / "best", "--length", 5]):
            one_line_error(*run_cli(capsys, *cmd)[::2], message)


def test_resume_into_a_folder_holding_another_run_needs_overwrite(capsys, corpus, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        assert run_cli(capsys, "train", "--data", corpus, "--epochs", 1, "--out", out, *TINY)[0] == 0
    before = (b / "metrics.jsonl").read_text()
    one_line_error(*run_cli(capsys, "train", "--resume", a, "--epochs", 2, "--out", b)[::2], "already holds a training run")
    assert (b / "metrics.jsonl").read_text() == before
    one_line_error(*run_cli(capsys, "train", "--resume", a, "--epochs", 2, "--overwrite")[::2], "--overwrite does not go with --resume")
    from charlm.train import Trainer

    real = Trainer._train_epoch

    def stopped(self):  # the resumed run stopped in its first batch: nothing of b's own run may be left to be loaded
        raise KeyboardInterrupt

    Trainer._train_epoch = stopped
    try:
        assert run_cli(capsys, "train", "--resume", a, "--epochs", 2, "--out", b, "--overwrite")[0] == 130
    finally:
        Trainer._train_epoch = real
    assert sorted(p.name for p in b.iterdir()) == ["best", "metrics.jsonl"]  # best/: the resumed run's, carried along
    assert (b / "best" / "model.safetensors").read_bytes() == (a / "best" / "model.safetensors").read_bytes()
    assert run_cli(capsys, "train", "--resume", a, "--epochs", 2, "--out", b, "--overwrite")[0] == 0
    assert [m["epoch"] for m in map(json.loads, (b / "metrics.jsonl").read_text().splitlines())] == [1, 2]


@pytest.mark.parametrize("flags, message", [
    (["--lr", "inf"], "lr must be a finite number, got inf"),
    (["--weight-decay", "inf"], "--weight-decay must be a finite number"),
    (["--schedule", "cosine", "--min-lr", "1"], "--min-lr (1) must not be above --lr (0.01)"),
    (["--copy-window", "99999999999999999999"], "--copy-window must be from 0 to"),
    (["--hidden-size", "1000000000000", "--no-tie-weights"], "--hidden-size must be from 1 to"),
    (["--num-layers", "100000"], "--num-layers must be from 1 to 64"),
    (["--preset", ""], "unknown preset ''"),
])
def test_numbers_beyond_any_model_are_refused_before_anything_is_written(capsys, corpus, tmp_path, flags, message):
    out = tmp_path / "run"
    one_line_error(*run_cli(capsys, "train", "--data", corpus, "--out", out, *TINY, *flags)[::2], message)
    assert not out.exists()


def test_generate_and_eval_refuse_what_would_do_nothing_or_diverge(capsys, tiny_run, corpus):
    one_line_error(*run_cli(capsys, "generate", tiny_run, "--greedy", "--temperature", 0.5)[::2], "--temperature would do nothing")
    one_line_error(*run_cli(capsys, "generate", tiny_run, "--num-samples", 10**12)[::2], "--num-samples must be from 1 to 4096")
    one_line_error(*run_cli(capsys, "eval", tiny_run, corpus, "--dynamic", "1e300")[::2], "--dynamic must be a learning rate from 0 to 10")


def test_an_existing_read_only_out_folder_is_refused_before_training(capsys, corpus, tmp_path, monkeypatch):
    out = tmp_path / "ro"
    out.mkdir()
    real = os.access
    # chmod 555 does not stop root (the test may run as root): the folder is reported read-only instead
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == out else real(p, mode, **kw))
    one_line_error(*run_cli(capsys, "train", "--data", corpus, "--out", out, *TINY)[::2], "is not writable")
    assert list(out.iterdir()) == []


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("charlm ")


def test_a_failed_resume_into_a_new_folder_makes_no_folder(capsys, tmp_path):
    corpus = tmp_path / "gone.txt"
    corpus.write_text(LYRIC * 40, encoding="utf-8")
    run = tmp_path / "run"
    assert run_cli(capsys, "train", "--data", corpus, "--epochs", 1, "--out", run, *TINY)[0] == 0
    corpus.unlink()
    assert run_cli(capsys, "train", "--resume", run, "--epochs", 2, "--out", tmp_path / "new")[0] == 2
    assert not (tmp_path / "new").exists()


def test_help_for_an_unknown_preset_is_the_unknown_preset_error(capsys):
    one_line_error(*run_cli(capsys, "train", "--preset", "nosuch", "--help")[::2], "unknown preset 'nosuch'; known presets:")


DOCS = ["README.md", "BENCHMARKS.md", "docs/lstm.md", "docs/zh.md"]


def _documented_commands(text: str) -> list[str]:
    """Every `charlm CMD ...` of a document: the lines of its ```sh blocks (comments cut), the ``$`` lines of its
    ```console blocks, and its inline code."""
    found = []
    for kind, block in re.findall(r"```(sh|console)\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if kind == "console" and not line.startswith("$ "):  # a console block's output lines are not commands
                continue
            m = re.search(r"(?:^|\s)(?:\.venv/bin/)?charlm ([a-z].*)$", line.split(" #")[0])
            if m:
                found.append(m.group(1))
    return found + re.findall(r"`(?:\.venv/bin/)?charlm ([a-z][^`]*)`", text)


@pytest.mark.parametrize("doc", DOCS)
def test_documented_commands_use_real_commands_and_flags(doc):
    """The docs' examples cannot drift from the CLI: each `charlm CMD --flag` they show is a command with that flag."""
    import argparse

    from charlm.cli import build_parser

    subs = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    flags = {name: {f for a in sub._actions for f in a.option_strings} for name, sub in subs.items()}
    commands = _documented_commands((Path(__file__).parents[1] / doc).read_text(encoding="utf-8"))
    assert commands, f"{doc} shows no charlm command"
    wrong = []
    for command in commands:
        words = re.sub(r"[\[\]|]", " ", command).split()
        if words[0] not in flags:
            wrong.append(f"{command!r}: no command {words[0]}")
            continue
        wrong += [f"{command!r}: {words[0]} has no {w}" for w in words[1:] if w.startswith("--") and w.split("=")[0] not in flags[words[0]]]
    assert not wrong, wrong


@pytest.mark.parametrize("doc", [d for d in DOCS if "```python" in (Path(__file__).parents[1] / d).read_text(encoding="utf-8")])
def test_documented_python_runs_as_written(doc, tmp_path):
    """Each ```python block of the docs runs as it stands (in a folder of its own: README's trains one epoch into runs/)."""
    import subprocess

    blocks = re.findall(r"```python\n(.*?)```", (Path(__file__).parents[1] / doc).read_text(encoding="utf-8"), re.S)
    for block in blocks:
        run = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, f"{doc}:\n{block}\n{run.stderr[-2000:]}"


def test_a_tampered_schedule_or_optimizer_setting_is_a_one_line_error_on_resume(capsys, corpus, tmp_path):
    run = tmp_path / "run"
    assert run_cli(capsys, "train", "--data", corpus, "--epochs", 1, "--schedule", "cosine", "--out", run, *TINY)[0] == 0
    meta_file = run / "last" / "checkpoint.json"
    text = meta_file.read_text(encoding="utf-8")
    t = json.loads(text)["trainer"]
    for changed, message in (
            (json.dumps({**json.loads(text), "trainer": {**t, "schedule_steps": -1}}), "schedule_steps is -1, not a count"),
            (json.dumps({**json.loads(text), "trainer": {**t, "scheduler": {**t["scheduler"], "last_epoch": "x"}}}),
             "the scheduler's last_epoch is 'x', not a number"),
            (re.sub(r'"lr",(\s*)[0-9.e-]+', r'"lr",\1"x"', text, count=1), "the optimizer's lr is 'x', not a number"),
            (json.dumps({**json.loads(text), "trainer": {**t, "scheduler": {**t["scheduler"], "base_lrs": [None]}}}),
             "the scheduler's base_lrs is '[None]', not a list of numbers"),
            (json.dumps({**json.loads(text), "trainer": {**t, "scheduler": {**t["scheduler"], "base_lrs": [10**400]}}}),
             "the scheduler's base_lrs is '[1000"),  # (too large for a float: was an OverflowError)
            (json.dumps({**json.loads(text), "trainer": {**t, "step": 10**30}}), "as whole numbers from 0 to 2**62"),
            (json.dumps({**json.loads(text), "metrics": [{k: v for k, v in m.items() if k != "val_loss"}
                                                         for m in json.loads(text)["metrics"]]}), None)):
        assert changed != text
        meta_file.write_text(changed, encoding="utf-8")
        if message is None:  # a metrics row without its validation loss trains on, and reports without it
            assert run_cli(capsys, "train", "--resume", run, "--epochs", 2)[0] == 0
            continue
        one_line_error(*run_cli(capsys, "train", "--resume", run, "--epochs", 3)[::2], message)


def test_a_stop_right_after_an_epochs_last_batch_resumes(capsys, corpus, tmp_path, monkeypatch):
    """Stopped (Ctrl-C, SIGTERM) after the last batch of an epoch, before its end: last/ holds batch == n_batches."""
    from charlm.train import Trainer

    real = Trainer._stop_signal

    def stop_at_the_last_batch(self):
        if self.batch == self.n_batches:
            self._signal = signal.SIGTERM
        return real(self)

    monkeypatch.setattr(Trainer, "_stop_signal", stop_at_the_last_batch)
    run = tmp_path / "run"
    assert run_cli(capsys, "train", "--data", corpus, "--epochs", 2, "--out", run, *TINY)[0] == 128 + signal.SIGTERM
    assert json.loads((run / "last" / "checkpoint.json").read_text(encoding="utf-8"))["trainer"]["batch"] > 0
    monkeypatch.setattr(Trainer, "_stop_signal", real)
    code, out, err = run_cli(capsys, "train", "--resume", run)
    assert code == 0, err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_after_the_training_ended_says_what_was_kept(capsys, corpus, tmp_path, monkeypatch, sig):
    """Ctrl-C or SIGTERM while the finished run plots and reports: a line naming its checkpoints (SIGTERM was silent)."""
    import charlm.train

    def signalled(*args, **kwargs):
        os.kill(os.getpid(), sig)
        time.sleep(5)  # (the handler raises here)

    monkeypatch.setattr(charlm.train, "plot_metrics", signalled)
    run = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", "--data", corpus, "--epochs", 1, "--out", run, *TINY)
    assert code == 128 + sig and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (f"interrupted after the training had ended, while writing its report: "
                                            f"checkpoints {run / 'best'} (best) and {run / 'last'} (last)")
    assert (run / "best" / "checkpoint.json").is_file() and (run / "last" / "checkpoint.json").is_file()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # given back


def test_a_plot_that_cannot_be_written_is_a_note_not_a_failed_run(capsys, corpus, tmp_path, monkeypatch):
    """A full disk as curves.png was written ended a finished run with exit 1 and without its held-out report (and an
    interrupted one with 1, not 128 + the signal), its checkpoints written."""
    from charlm import checkpoint as ckpt_io
    from charlm.train import Trainer

    real = ckpt_io.write_atomic

    def full(*files):
        if any(path.name == "curves.png" for path, _ in files):
            raise CharlmError(f"cannot write {files[0][0]}: No space left on device", exit_code=1)
        return real(*files)

    monkeypatch.setattr(ckpt_io, "write_atomic", full)
    run = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", "--data", corpus, "--epochs", 1, "--out", run, *TINY)
    assert code == 0 and "held-out perplexity" in out and out.rstrip().endswith("plot: not drawn")
    assert f"note: the plot was not drawn: cannot write {run / 'curves.png'}: No space left on device" in err
    assert not (run / "curves.png").exists()

    def stop_in_epoch_2(self):  # (after epoch 1's row: a plot to draw)
        if self.epoch >= 1:
            self._signal = signal.SIGTERM
        return self._signal

    monkeypatch.setattr(Trainer, "_stop_signal", stop_in_epoch_2)
    code, out, err = run_cli(capsys, "train", "--data", corpus, "--epochs", 3, "--out", tmp_path / "cut", *TINY)
    assert code == 128 + signal.SIGTERM and "note: the plot was not drawn" in err and "Traceback" not in err


def test_a_second_ctrl_c_while_an_interrupted_run_plots_keeps_the_resume_line(capsys, corpus, tmp_path, monkeypatch):
    import charlm.train
    from charlm.train import Trainer

    def stop_at_once(self):
        self._signal = signal.SIGINT
        return self._signal

    def interrupted_again(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)

    monkeypatch.setattr(Trainer, "_stop_signal", stop_at_once)
    monkeypatch.setattr(charlm.train, "plot_metrics", interrupted_again)
    run = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", "--data", corpus, "--epochs", 2, "--out", run, *TINY)
    assert code == 130 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"interrupted: checkpoint written to {run / 'last'}; continue with: charlm train --resume")


def test_max_line_length_without_lines_or_an_acrostic_is_refused(capsys, tiny_run):
    code, out, err = run_cli(capsys, "generate", tiny_run, "--length", 50, "--max-line-length", 30, "--seed", 1)
    assert code == 2 and out == "" and err.strip() == ("charlm: error: --max-line-length ends the lines of --lines and "
                                                      "--acrostic, and neither is in use: it would do nothing")  # (was ignored)
    code, out, err = run_cli(capsys, "generate", tiny_run, "--acrostic", "  ", "--max-line-length", 30)  # said as it is
    assert code == 2 and "the acrostic is only whitespace" in err
    code, out, err = run_cli(capsys, "generate", tiny_run, "--acrostic", "分开", "--max-line-length", 30, "--seed", 1)
    assert code == 0 and out.count("\n") == 2


def test_a_prefix_line_already_at_max_line_length_is_said_to_end_at_once(capsys, tiny_run):
    code, out, err = run_cli(capsys, "generate", tiny_run, "--prefix", "分开的时候我说不分开", "--lines", 1, "--max-line-length", 8, "--seed", 1)
    assert code == 0 and out == "分开的时候我说不分开\n"  # nothing written: the line was ended at once
    assert "the prefix's last line is 10 characters already, at --max-line-length 8: it is ended at once" in err
    code, out, err = run_cli(capsys, "generate", tiny_run, "--prefix", "分开\n的时候", "--lines", 1, "--max-line-length", 8, "--seed", 1)
    assert code == 0 and "prefix's last line" not in err  # its last line is 3 characters


def test_the_long_prefix_line_note_of_a_model_without_newlines_or_spaces(capsys, tmp_path):
    from charlm.config import ModelConfig, TrainConfig
    from charlm.data import corpus_from_text
    from charlm.train import Trainer

    cfg = TrainConfig(out=str(tmp_path / "run"), epochs=1, batch_size=2, num_steps=8, device="cpu", prefixes=())
    corpus = corpus_from_text("分开的时候我说不分开" * 30, cfg)  # neither a newline nor a space: a line is cut, one more character on
    Trainer(ModelConfig(vocab_size=len(corpus.vocab), embedding_size=8, hidden_size=16, copy_window=0), cfg, corpus, log=None).fit()
    code, out, err = run_cli(capsys, "generate", tmp_path / "run", "--prefix", "分开的时候我说不分开", "--lines", 1, "--max-line-length", 8, "--seed", 1)
    assert code == 0 and len(out) == len("分开的时候我说不分开") + 2  # one character, then the cut
    assert "it is ended after one more character" in err


def test_a_run_trained_on_a_folders_hidden_files_before_they_were_left_out_still_resumes(capsys, tmp_path, monkeypatch):
    """charlm read hidden .txt files until 2026-11-30: a run trained so is read as it was trained, not called changed."""
    from charlm import data
    from charlm.data import training_text
    from charlm.errors import CharlmWarning

    folder = tmp_path / "songs"
    (folder / ".ipynb_checkpoints").mkdir(parents=True)
    (folder / "a.txt").write_text(LYRIC * 20, encoding="utf-8")
    (folder / ".ipynb_checkpoints" / "a-checkpoint.txt").write_text(LYRIC[::-1] * 20, encoding="utf-8")
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(data, "_folder_files", lambda f, hidden=False: (sorted(f.rglob("*.txt")), []))  # as it read them then
        assert main(["train", "--data", str(folder), "--epochs", "1", "--out", str(run), *TINY]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 0
    err = capsys.readouterr().err
    assert "read with its hidden .txt files, as" in err and "left out" not in err
    with pytest.warns(CharlmWarning, match="read with its hidden .txt files"):
        assert LYRIC[::-1] in training_text(load_model(run)[2])  # the copy check's text too
    (folder / ".ipynb_checkpoints" / "a-checkpoint.txt").write_text("变了", encoding="utf-8")  # changed since: still an error
    code, out, err = run_cli(capsys, "train", "--resume", run, "--epochs", 3)
    assert code == 2 and "the training text differs from the one this checkpoint was trained on" in err
    assert "resuming" not in out  # said only once the run's state is restored
    drafts = tmp_path / "drafts"  # its only .txt files hidden ones: read again as trained, not "no .txt file"
    (drafts / ".old").mkdir(parents=True)
    (drafts / ".old" / "a.txt").write_text(LYRIC * 20, encoding="utf-8")
    with monkeypatch.context() as m:
        m.setattr(data, "_folder_files", lambda f, hidden=False: (sorted(f.rglob("*.txt")), []))
        assert main(["train", "--data", str(drafts), "--epochs", "1", "--out", str(tmp_path / "run2"), *TINY]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "run2"), "--epochs", "2"]) == 0
    assert "read with its hidden .txt files" in capsys.readouterr().err


def test_the_prefix_line_note_counts_the_last_line_from_its_full_length_and_only_with_lines(capsys, tiny_run):
    # exactly at --max-line-length: ended at once, and said so
    code, out, err = run_cli(capsys, "generate", tiny_run, "--prefix", "分开的时候我说不", "--lines", 1, "--max-line-length", 8, "--seed", 1)
    assert code == 0 and out == "分开的时候我说不\n" and "the prefix's last line is 8 characters already" in err, (out, err)
    # a long prefix whose last line is short: its earlier lines do not count
    code, out, err = run_cli(capsys, "generate", tiny_run, "--prefix", "分开的时候我说不分开\n你", "--lines", 1, "--max-line-length", 8, "--seed", 1)
    assert code == 0 and "prefix's last line" not in err
    # without --lines no line is ended: --max-line-length is refused, not noted
    code, out, err = run_cli(capsys, "generate", tiny_run, "--prefix", "分开的时候我说不分开", "--length", 3, "--max-line-length", 8, "--seed", 1)
    assert code == 2 and "prefix's last line" not in err and "--max-line-length ends the lines of --lines" in err


def test_a_skipped_style_prefix_character_is_noted_in_words(capsys, tiny_run):
    code, out, err = run_cli(capsys, "generate", tiny_run, "--style-prefix", "分X开", "--unknown", "skip", "--length", 3, "--seed", 1)
    assert code == 0 and "note: skipped in the style prefix, outside the vocabulary: 'X'" in err, err


def test_a_utf8_output_is_left_strict():
    """Only an encoding that cannot write everything escapes what it cannot: UTF-8 keeps its error handler."""
    import io
    import sys

    from charlm import cli

    for encoding in ("utf-8", "utf-16"):
        out, err = io.TextIOWrapper(io.BytesIO(), encoding=encoding), io.StringIO()
        real = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        try:
            cli._usable_streams()
        finally:
            sys.stdout, sys.stderr = real
        assert out.errors == "strict" and err.getvalue() == "", encoding


def test_eval_without_a_file_scores_the_held_out_part_as_the_training_validated_it(capsys, tiny_run):
    code, stdout, _ = run_cli(capsys, "eval", tiny_run, "--json")
    report = json.loads(stdout)
    best = min(json.loads(line)["val_loss"] for line in (tiny_run / "metrics.jsonl").read_text().splitlines())
    assert code == 0 and report["loss"] == pytest.approx(best, rel=1e-6)
    assert report["text"].startswith("the held-out part of ") and report["text"].endswith("(its last 10%), never trained on")
    assert report["notes"] == ["the same text and figure as the training's validation, by which this checkpoint was chosen as the best"]
    assert report["checkpoint"] == str(tiny_run / "best") and report["scoring"] == "static"
    code, text, _ = run_cli(capsys, "eval", tiny_run)  # the plain report says the same
    assert code == 0 and text.startswith("text: the held-out part of ") and f"loss: {report['loss']:.4f} nats/char" in text
    for flags, how in ((["--dynamic", "0.1"], "adapting to it as it reads (--dynamic)"), (["--each-line"], "each line by itself")):
        report = json.loads(run_cli(capsys, "eval", tiny_run, "--json", *flags)[1])  # (said the figure was the validation's)
        assert report["notes"][0].startswith(f"the same text as the training's validation, but read {how}")
        assert not any("same text and figure" in n for n in report["notes"])
    assert f"model: {tiny_run / 'best'} (after epoch {report['epoch']:g}, step {report['step']:,}; vocabulary {report['vocabulary']:,})" in text
    one_line_error(*run_cli(capsys, "eval", tiny_run, "--check-copy")[::2], "--check-copy needs a FILE of samples")
    # (it was ignored: not even an unknown name was said)
    one_line_error(*run_cli(capsys, "eval", tiny_run, "--encoding", "no-such-codec")[::2], "--encoding is the encoding of FILE; without FILE")


def test_eval_without_a_file_needs_a_held_out_part_and_the_unchanged_training_text(capsys, tmp_path):
    from .conftest import train_tiny

    train_tiny(tmp_path / "none", epochs=1, val_fraction=0.0)
    one_line_error(*run_cli(capsys, "eval", tmp_path / "none" / "run")[::2],
                   f"give a FILE to score: {tmp_path / 'none' / 'run' / 'best'} was trained with nothing held out (--val-fraction 0)")
    train_tiny(tmp_path / "changed", epochs=1)
    (tmp_path / "changed" / "corpus.txt").write_text(LYRIC * 39 + "新的一行\n", encoding="utf-8")
    one_line_error(*run_cli(capsys, "eval", tmp_path / "changed" / "run")[::2],
                   "scoring the held-out text needs the training text: ")


def test_eval_reads_standard_input_given_as_a_dash(capsys, tiny_run, tmp_path, monkeypatch):
    import io

    text = "分开的时候我说不分开\n"
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    from_file = json.loads(run_cli(capsys, "eval", tiny_run, tmp_path / "t.txt", "--json")[1])
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode("gb18030")), encoding="gb18030"))
    code, stdout, _ = run_cli(capsys, "eval", tiny_run, "-", "--encoding", "gb18030", "--json")
    report = json.loads(stdout)
    assert code == 0 and report["text"] == "standard input" and report["loss"] == from_file["loss"]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\xff\xfe\xfa")))
    one_line_error(*run_cli(capsys, "eval", tiny_run, "-")[::2], "standard input: cannot decode byte 0 (0xff) as utf-8")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    one_line_error(*run_cli(capsys, "eval", tiny_run, "-")[::2], "standard input: nothing came in (it is empty)")
    monkeypatch.setattr(sys, "stdin", None)  # charlm eval run - <&-
    one_line_error(*run_cli(capsys, "eval", tiny_run, "-")[::2], "- reads standard input, and there is none (it is closed)")


def test_eval_stops_reading_a_stream_of_binary_bytes_at_once(capsys, tiny_run, tmp_path, monkeypatch):
    """/dev/zero as standard input, or a pipe of binary bytes as the FILE, is a binary file's one-line error after the
    first chunk, not a read that fills the memory; a pipe of text (as <(…) gives) is read whole."""
    import io
    import threading

    from charlm import data

    class Zeros(io.RawIOBase):  # /dev/zero: it never ends
        reads = 0

        def readable(self):
            return True

        def readinto(self, b):
            Zeros.reads += 1
            assert Zeros.reads < 1000, "read on past the NUL bytes"
            b[:] = bytes(len(b))
            return len(b)

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(Zeros())))
    one_line_error(*run_cli(capsys, "eval", tiny_run, "-")[::2], "standard input: looks like a binary file (a NUL byte at offset 0), not text")

    def through_a_pipe(payload: bytes) -> tuple:
        fifo = tmp_path / "fifo"
        fifo.unlink(missing_ok=True)
        os.mkfifo(fifo)
        sent = []

        def write():
            with open(fifo, "wb") as f, contextlib.suppress(BrokenPipeError):
                for i in range(0, len(payload), 1 << 16):
                    f.write(payload[i:i + (1 << 16)])
                    sent.append(i)

        writer = threading.Thread(target=write)
        writer.start()
        result = run_cli(capsys, "eval", tiny_run, fifo)
        writer.join(timeout=30)
        return result, len(sent) << 16

    (code, _, err), sent = through_a_pipe(bytes(16 * data.STREAM_CHUNK))
    one_line_error(code, err, "fifo: looks like a binary file (a NUL byte at offset 0), not text")
    assert sent <= 4 * data.STREAM_CHUNK  # the reading stopped (a pipe's buffer and a chunk or two were sent)
    text = "分开的时候我说不分开\n" * 50
    (code, stdout, _), _ = through_a_pipe(text.encode())
    assert code == 0 and f"{len(text):,} read" in stdout


def test_eval_of_a_last_checkpoint_written_between_validations_names_its_own_step(capsys, tmp_path):
    """A training stopped part-way through an epoch writes last/ after its last validation: the report gives the
    checkpoint's own epoch and step, and does not call its figure the validation's."""
    from charlm.config import ModelConfig
    from charlm.train import Trainer, TrainingInterrupted

    from .conftest import tiny_train_config

    cfg = tiny_train_config(tmp_path, epochs=2)
    corpus = load_corpus(cfg)
    t = Trainer(ModelConfig(vocab_size=len(corpus.vocab), embedding_size=8, hidden_size=8), cfg, corpus, log=lambda *_: None)
    real, calls = t._train_step, []

    def ctrl_c_in_the_second_epoch(model):  # Ctrl-C during the second epoch's third batch
        step = real(model)

        def counted(*a):
            if len(calls) == t.n_batches + 2:
                t._on_signal(signal.SIGINT, None)
            calls.append(1)
            return step(*a)

        return counted

    t._train_step = ctrl_c_in_the_second_epoch
    with pytest.raises(TrainingInterrupted):
        t.fit()
    n = t.n_batches
    code, stdout, _ = run_cli(capsys, "eval", tmp_path / "run" / "last", "--json")
    report = json.loads(stdout)
    assert code == 0 and (report["epoch"], report["step"]) == (round(1 + 3 / n, 3), n + 3)
    assert report["notes"] == [f"the same text as the training's validation; this checkpoint was written at step {n + 3:,}, "
                               f"after its last validation (step {n:,}), so the figure is its own"]
    best = json.loads(run_cli(capsys, "eval", tmp_path / "run", "--json")[1])
    assert (best["epoch"], best["step"]) == (1, n) and best["notes"][0].startswith("the same text and figure as the training's")


def test_eval_json_is_json_where_the_output_cannot_write_every_character(capsys, tiny_run, tmp_path, monkeypatch):
    """On a GBK stdout (a Chinese Windows' file or pipe) an emoji would be backslashreplace's \\U0001f600: not JSON."""
    import io

    f = tmp_path / "t.txt"
    f.write_text("分开😀的时候\n", encoding="utf-8")
    out = io.TextIOWrapper(io.BytesIO(), encoding="gbk")
    monkeypatch.setattr(sys, "stdout", out)
    assert main(["eval", str(tiny_run), str(f), "--json"]) == 0
    out.flush()
    report = json.loads(out.buffer.getvalue().decode("gbk"))
    assert report["characters"]["outside_vocabulary"] == ["😀"]
    odd = tmp_path / os.fsdecode(b"x\xff.txt")  # a file name that is not UTF-8 (a lone surrogate in Python)
    odd.write_text("分开的时候\n", encoding="utf-8")
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")  # strict, as an en_US.UTF-8 locale's
    monkeypatch.setattr(sys, "stdout", out)
    assert main(["eval", str(tiny_run), str(odd), "--json"]) == 0
    out.flush()
    assert json.loads(out.buffer.getvalue().decode("utf-8"))["text"] == str(odd)


def test_eval_of_a_checkpoint_whose_counts_were_edited_names_what_it_knows(capsys, tiny_run, tmp_path):
    import shutil

    ckpt = tmp_path / "edited"
    shutil.copytree(tiny_run / "last", ckpt)
    meta = json.loads((ckpt / "checkpoint.json").read_text(encoding="utf-8"))
    meta["trainer"]["step"] = "13"
    for row in meta["metrics"]:
        del row["step"]
    (ckpt / "checkpoint.json").write_text(json.dumps(meta), encoding="utf-8")
    code, stdout, _ = run_cli(capsys, "eval", ckpt, "--json")
    report = json.loads(stdout)
    assert code == 0 and report["step"] is None and report["epoch"] == meta["trainer"]["epoch"]
    assert report["notes"] == ["the same text as the training's validation"]
    code, stdout, _ = run_cli(capsys, "eval", ckpt)
    assert code == 0 and f"model: {ckpt} (after epoch {report['epoch']:g}; vocabulary " in stdout


def test_eval_names_what_it_skipped_and_says_the_figure_covers_only_the_rest(capsys, tiny_run, tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("分开😀的时候XYZ我说不分开X\n", encoding="utf-8")
    code, stdout, _ = run_cli(capsys, "eval", tiny_run, f)
    assert code == 0 and "characters: 16 read, 10 scored, 5 outside the vocabulary skipped (X 😀 Y Z)" in stdout
    assert ("note: the 5 characters outside the vocabulary (31% of the text) are left out of the figure, and the character after each "
            "is predicted across the gap: compare the figure only with figures over the same characters") in stdout
    report = json.loads(run_cli(capsys, "eval", tiny_run, f, "--json")[1])
    assert report["characters"] == {"read": 16, "scored": 10, "skipped": 5, "as_unk": 0, "outside_vocabulary": ["X", "😀", "Y", "Z"]}
    f.write_text("XXXXXXXX分开\n", encoding="utf-8")
    assert "note: most of the text is outside the vocabulary: the 8 characters outside it (73% of the text)" in run_cli(capsys, "eval", tiny_run, f)[1]
    one_line_error(*run_cli(capsys, "eval", tiny_run, f, "--unknown", "error")[::2],
                   f"{f}: 8 characters outside the model's vocabulary: 'X' (--unknown skip scores the rest)")
    f.write_text("分开\f的时候\u2028我说\x1c不\ue4c7分开\n", encoding="utf-8")  # the invisible ones by their code points
    assert "4 outside the vocabulary skipped (U+000C U+2028 U+001C U+E4C7)" in run_cli(capsys, "eval", tiny_run, f)[1]
    f.write_text("😀🎵分", encoding="utf-8")
    one_line_error(*run_cli(capsys, "eval", tiny_run, f)[::2],
                   f"{f}: too little to score: 1 of its 3 characters is in the model's vocabulary, and it takes two (outside it: '😀' '🎵')")


def test_eval_says_when_unknown_characters_were_scored_as_unk_and_how_line_breaks_were_read(capsys, tmp_path):
    from .conftest import train_tiny

    train_tiny(tmp_path, epochs=1, unk=True, newlines="space")
    f = tmp_path / "t.txt"
    f.write_text("分开的时候X我说不分开\n", encoding="utf-8")
    code, stdout, _ = run_cli(capsys, "eval", tmp_path / "run", f)
    assert code == 0 and "characters: 12 read, 11 scored, 1 outside the vocabulary read as <unk> (X)" in stdout
    assert "; line breaks read as spaces, as it was trained)" in stdout.splitlines()[1]
    assert ("note: the 1 character outside the vocabulary was read and scored as its one <unk>, easier to predict than "
            "each character itself: compare the figure only with models of this vocabulary") in stdout
    assert "this model reads line breaks as spaces" not in stdout  # (a text of one line has none to read so)
    copy = tmp_path / "copy.txt"  # its lines, short ones joined by spaces as its training text has them, are found
    copy.write_text((tmp_path / "corpus.txt").read_text(encoding="utf-8")[:400], encoding="utf-8")
    assert "are in the training text word for word" in run_cli(capsys, "eval", tmp_path / "run", copy)[1]
    report = json.loads(run_cli(capsys, "eval", tmp_path / "run", copy, "--each-line", "--json")[1])
    assert report["lines"][1]["text"] == "你说我们还会再见" and report["lines"][1]["in_training_text"] is None  # (no lines to tell)
    assert any(n.startswith("this model was trained with line breaks read as spaces, so its training text has no lines") for n in report["notes"])
    held = run_cli(capsys, "eval", tmp_path / "run")[1]  # its held-out text had line breaks, read as spaces already
    assert "note: this model reads line breaks as spaces (as it was trained)" in held
    f.write_text("分开的时候X我说不分开\n你说我们还会再见\n", encoding="utf-8")
    assert ("note: this model reads line breaks as spaces (as it was trained): where the text has them, it predicts one "
            "character for the two, so compare the figure only with models that read the text so") in run_cli(capsys, "eval", tmp_path / "run", f)[1]


def test_eval_says_when_the_file_is_the_one_the_model_was_trained_on(capsys, tiny_run):
    code, stdout, _ = run_cli(capsys, "eval", tiny_run, tiny_run.parent / "corpus.txt")
    assert code == 0 and ("note: this is the text the model was trained on, and its first 90% was trained on: the figure "
                          f"mixes seen and unseen text; `charlm eval {tiny_run}` alone scores the held-out part") in stdout



def test_eval_says_when_a_file_under_another_name_holds_the_training_text(capsys, tiny_run, tmp_path):
    """Not only the training file itself: a copy of it (or of a piece) is found by its lines, an unseen text is not."""
    copy, new = tmp_path / "copy.txt", tmp_path / "new.txt"
    copy.write_bytes((tiny_run.parent / "corpus.txt").read_bytes())
    code, stdout, _ = run_cli(capsys, "eval", tiny_run, copy)
    assert code == 0 and ("note: 80 of the 80 lines checked (its lines of 10 characters or more, shorter ones joined to those "
                          "after them) are in the training text word for word: the figure is largely of text the model was "
                          "trained on") in stdout  # (its 8- and 9-character lines in pairs: they were not checked at all)
    short = tmp_path / "short.txt"  # lines under 10 characters alone, as most of a song's are
    short.write_text("你说我们还会再见\n不分开的是我们的爱\n快乐的日子在心里面\n\n" * 6, encoding="utf-8")
    assert "note: 6 of the 6 lines checked (its lines of 10 characters or more, shorter" in run_cli(capsys, "eval", tiny_run, short)[1]
    samples = tmp_path / "samples.txt"  # generate's markers are not lines checked (5 of 10, "partly", with them)
    samples.write_text("".join(f"--- sample {i} ---\n分开的时候我说不分开\n\n" for i in range(1, 6)), encoding="utf-8")
    assert "note: 5 of the 5 lines checked (its lines of 10 characters or more) are in the training text" in run_cli(capsys, "eval", tiny_run, samples)[1]
    new.write_text("开分不说我候时的开分\n" * 6 + "分开的时候我说不分开\n" * 2, encoding="utf-8")  # 2 of 8: under a quarter
    code, stdout, _ = run_cli(capsys, "eval", tiny_run, new)
    assert code == 0 and "note:" not in stdout
    new.write_text("开分不说我候时的开分\n" * 5 + "分开的时候我说不分开\n" * 3, encoding="utf-8")  # 3 of 8
    code, stdout, _ = run_cli(capsys, "eval", tiny_run, new)
    assert code == 0 and "note: 3 of the 8 lines checked" in stdout and "the figure is partly of text" in stdout
    for order in (1, -1):  # half of a long file copied: the lines checked are spread over all of it, whichever half it is
        halves = ["开分不说我候时的开分\n" * 150, "分开的时候我说不分开\n" * 150]
        new.write_text("".join(halves[::order]), encoding="utf-8")
        code, stdout, _ = run_cli(capsys, "eval", tiny_run, new)
        assert code == 0 and "note: 100 of the 200 lines checked (its lines of 10 characters or more, evenly spread)" in stdout

def test_eval_of_the_training_file_says_how_much_of_it_limit_chars_trained_on(capsys, tmp_path):
    from .conftest import train_tiny

    train_tiny(tmp_path, epochs=1, limit_chars=300)
    code, stdout, _ = run_cli(capsys, "eval", tmp_path / "run", tmp_path / "corpus.txt")
    assert code == 0 and "note: this is the text the model was trained on, and at most its first 300 characters were trained on" in stdout


def test_eval_json_holds_the_copy_reports_and_nothing_else_is_on_stdout(capsys, tiny_run, tmp_path):
    f = tmp_path / "samples.txt"
    f.write_text("--- sample 1 ---\n分开的时候我说不分开\n--- sample 2 ---\n快乐的日子在心里面\n", encoding="utf-8")
    code, stdout, err = run_cli(capsys, "eval", tiny_run, f, "--check-copy", "--json")
    report = json.loads(stdout)
    assert code == 0 and [c["longest"] for c in report["copies"]] == [10, 9] and "sample 1:" not in err
    code, stdout, err = run_cli(capsys, "eval", tiny_run, f, "--check-copy")
    assert code == 0 and "sample 1: " in err and "sample 2: " in err


def test_eval_each_line_scores_every_line_by_itself_after_a_line_break(capsys, tiny_run, tmp_path):
    f = tmp_path / "lines.txt"
    f.write_text("分开的时候我说不分开\n\n你说我们还会再见☃\n快乐的日子", encoding="utf-8")
    code, stdout, _ = run_cli(capsys, "eval", tiny_run, f, "--each-line", "--json")
    report = json.loads(stdout)
    model, vocab, _ = load_model(tiny_run)
    expected = [(1, "分开的时候我说不分开"), (3, "你说我们还会再见☃"), (4, "快乐的日子")]  # the blank line 2 is left out
    assert code == 0 and [(r["line"], r["text"]) for r in report["lines"]] == expected
    for row, (_, line) in zip(report["lines"], expected):  # from a fresh state, the line break before and after it read
        loss, n = evaluate(model, torch.tensor(vocab.encode_known("\n" + line + "\n")[0]))
        assert row["scored"] == n and row["loss"] == pytest.approx(loss, rel=1e-6)
    assert report["lines"][1]["skipped"] == 1 and report["characters"]["scored"] == 11 + 9 + 6
    pooled = sum(r["loss"] * r["scored"] for r in report["lines"]) / report["characters"]["scored"]
    assert report["loss"] == pytest.approx(pooled) and report["how"].startswith("static, each line by itself")
    code, stdout, _ = run_cli(capsys, "eval", tiny_run, f, "--each-line")
    row = report["lines"][2]
    assert code == 0 and f"   4       6  {row['bits_per_character']:9.4f}  {row['perplexity']:10.3f}  快乐的日子" in stdout.splitlines()
    one_line_error(*run_cli(capsys, "eval", tiny_run, f, "--each-line", "--dynamic", "0.1")[::2],
                   "--each-line scores each line by itself, and --dynamic reads the text as one: give one of them")
    one_line_error(*run_cli(capsys, "eval", tiny_run, f, "--each-line", "--check-copy")[::2],
                   "--each-line scores each line by itself, and --check-copy checks each sample: give one of them")
    f.write_text("分\n开\n", encoding="utf-8")  # a line and its line breaks: 2 characters scored each
    assert json.loads(run_cli(capsys, "eval", tiny_run, f, "--each-line", "--json")[1])["characters"]["scored"] == 4
    f.write_text("分开\n☃\n", encoding="utf-8")  # a line of nothing known has a row, not a figure
    code, stdout, _ = run_cli(capsys, "eval", tiny_run, f, "--each-line")
    assert code == 0 and "   2       0          -           -  ☃  [1 outside the vocabulary skipped]" in stdout.splitlines()
    f.write_text("分", encoding="utf-8")  # one known character: with the line breaks around it, enough
    assert json.loads(run_cli(capsys, "eval", tiny_run, f, "--each-line", "--json")[1])["characters"]["scored"] == 2
    f.write_text("☃\n☃☃\n", encoding="utf-8")
    one_line_error(*run_cli(capsys, "eval", tiny_run, f, "--each-line")[::2],
                   "too little to score: no line holds a character the model knows (outside it: '☃')")


def test_eval_each_line_counts_the_lines_a_file_has(capsys, tiny_run, tmp_path, monkeypatch):
    """(its progress said "of 5,001 lines" for 5,000, counting what follows the last line break)"""
    import charlm.progress

    totals, init = [], charlm.progress.Progress.__init__
    monkeypatch.setattr(charlm.progress.Progress, "__init__", lambda self, total, *a, **kw: totals.append(total) or init(self, total, *a, **kw))
    f = tmp_path / "lines.txt"
    for text, lines in (("分开\n不分开\n", 2), ("分开\n不分开", 2), ("分开\n\n", 2)):
        f.write_text(text, encoding="utf-8")
        assert run_cli(capsys, "eval", tiny_run, f, "--each-line")[0] == 0 and totals[-1] == lines, (text, totals)


def test_eval_each_line_of_the_held_out_text_needs_line_breaks(capsys, tmp_path):
    from .conftest import train_tiny

    train_tiny(tmp_path, epochs=1, newlines="space")
    one_line_error(*run_cli(capsys, "eval", tmp_path / "run", "--each-line")[::2],
                   "--each-line needs a FILE for this model: it reads line breaks as spaces")


def test_a_torch_built_for_numpy_1_beside_numpy_2_is_a_one_line_error(capsys, monkeypatch):
    """torch 2.2 (which charlm allows) with NumPy 2 (which pip picks): every .numpy() raises; say what to install."""
    from charlm import cli

    def numpy_gone(args):
        raise RuntimeError("Numpy is not available")

    monkeypatch.setitem(cli.COMMANDS, "eval", numpy_gone)
    one_line_error(*run_cli(capsys, "eval", "run", "t.txt")[::2], "(it was built for NumPy 1): pip install 'numpy<2'", expect_code=1)


@pytest.mark.parametrize("argv,flag", [
    (["train", "--resume", ""], "--resume"),  # (it trained the default preset afresh into runs/jaychou)
    (["train", "--init-from", "", "--epochs", "1"], "--init-from"),  # (the same, with no pre-trained weights)
    (["train", "--data", ""], "--data/--corpus"),
    (["generate", ""], "checkpoint"),
    (["eval", "RUN", ""], "file"),  # (it scored the bundled lyrics)
    (["inspect", "RUN", "--text", "分开", "--png", ""], "--png"),  # (it wrote no picture, and said nothing)
    (["inspect", "RUN", "--context-file", "", "--text", "分开"], "--context-file"),
])
def test_an_empty_path_is_refused_not_taken_for_the_default(capsys, tiny_run, tmp_path, monkeypatch, argv, flag):
    """An empty path, as an unset shell variable gives ("$RUN"), names the flag; it used to stand for its default."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main([str(tiny_run) if a == "RUN" else a for a in argv])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith(f"charlm {argv[0]}: error: argument {flag}: is empty: give a path") and err.count("\n") == 1
    assert not any(tmp_path.iterdir())  # nothing trained, nothing written


def test_a_signal_during_the_closing_samples_exits_as_interrupted_and_says_the_training_ended(capsys, corpus, tmp_path, monkeypatch):
    import signal

    from charlm.train import Trainer

    real = Trainer._epoch_line

    def epoch_line(self, r, improved):  # the signal arrives as the last epoch's samples are about to be written
        self._signal = signal.SIGINT
        return real(self, r, improved)

    monkeypatch.setattr(Trainer, "_epoch_line", epoch_line)
    code, out, err = run_cli(capsys, "train", "--data", corpus, "--epochs", 1, "--out", tmp_path / "run", *TINY)
    assert code == 130 and "the training had ended (its last epoch)" in err and "--resume" not in err
    assert "held-out perplexity" not in out  # not the report of a run that finished undisturbed
    code, out, err = run_cli(capsys, "train", "--data", corpus, "--epochs", 3, "--max-minutes", 1e-6, "--out", tmp_path / "t", *TINY)
    assert code == 130 and "time limit: stopped after" in out  # said before the signal is
    assert f"reached --max-minutes 1e-06: checkpoint written to {tmp_path / 't' / 'last'}; continue with: charlm train --resume" in err


def test_evals_file_may_follow_its_options(capsys, tiny_run, tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("分开的时候我说不分开\n", encoding="utf-8")
    code, out, _ = run_cli(capsys, "eval", tiny_run, "--json", f)  # argparse took the file for an unknown argument
    assert code == 0 and json.loads(out)["text"] == str(f)
    assert run_cli(capsys, "eval", tiny_run, "--unknown", "skip", f)[0] == 0
    for argv, message in (([f, f], "unrecognized arguments: " + str(f)), (["--json", ""], "argument file: is empty")):
        with pytest.raises(SystemExit) as e:
            main(["eval", str(tiny_run), *map(str, argv)])
        assert e.value.code == 2 and message in capsys.readouterr().err


def test_a_resume_from_behind_last_says_that_the_later_epochs_are_replaced(capsys, corpus, tmp_path):
    import shutil

    run = tmp_path / "run"
    assert run_cli(capsys, "train", "--data", corpus, "--epochs", 1, "--out", run, *TINY)[0] == 0
    shutil.copytree(run / "last", tmp_path / "after1")
    assert run_cli(capsys, "train", "--resume", run, "--epochs", 2)[0] == 0
    shutil.rmtree(run / "best")
    shutil.copytree(tmp_path / "after1", run / "best")  # best/ one epoch behind last/
    code, _, err = run_cli(capsys, "train", "--resume", run / "best", "--epochs", 3)
    assert code == 0 and re.search(rf"note: resuming from {re.escape(str(run / 'best'))} \(step (\d+)\), behind "
                                   rf"{re.escape(str(run / 'last'))} \(step (\d+)\)", err)
    code, _, err = run_cli(capsys, "train", "--resume", run, "--epochs", 4)
    assert code == 0 and "behind" not in err


def test_a_resume_of_a_run_whose_last_is_gone_says_it_goes_on_from_best(capsys, corpus, tmp_path):
    """last/ deleted: the resume fell back to best/ with nothing but "resuming run/best" to tell."""
    import shutil

    out = tmp_path / "run"
    assert run_cli(capsys, "train", "--data", corpus, *TINY, "--epochs", 1, "--sample-every", 0, "--out", out)[0] == 0
    shutil.rmtree(out / "last")
    code, _, err = run_cli(capsys, "train", "--resume", out, "--epochs", 2)
    assert code == 0 and f"note: {out / 'last'} is not there: resuming from {out / 'best'} (step " in err


def test_generate_says_which_prefix_characters_a_model_with_unk_reads_as_unk(capsys, tmp_path):
    """`--unknown error` (the default) did nothing on a model trained with --unk: 東風 were read as <unk> in silence."""
    from .conftest import train_tiny

    train_tiny(tmp_path, epochs=1, unk=True)
    code, out, err = run_cli(capsys, "generate", tmp_path / "run", "--prefix", "分开☃", "--length", 3, "--seed", 1, "--style-prefix", "★你")
    assert code == 0 and out.startswith("分开☃")
    assert "note: read as <unk> in the prefix (outside the vocabulary; this model was trained to read rare characters so): '☃'" in err
    assert "note: read as <unk> in the style prefix (outside the vocabulary; this model was trained to read rare characters so): '★'" in err
    code, _, err = run_cli(capsys, "generate", tmp_path / "run", "--prefix", "分开", "--length", 3)
    assert code == 0 and "<unk>" not in err


def test_each_line_marks_the_lines_of_the_training_text_and_those_with_characters_skipped(capsys, tiny_run, tmp_path):
    """Ranking candidates: two copied from the training text ranked first, unmarked; a line scored on its known
    characters alone looked like any other."""
    f = tmp_path / "candidates.txt"
    f.write_text("分开的时候我说不分开\n我说你好XYZ\n的时候分开我\n", encoding="utf-8")
    code, out, _ = run_cli(capsys, "eval", tiny_run, f, "--each-line")
    rows = [line for line in out.splitlines() if line[:4].strip().isdigit()]
    assert code == 0 and rows[0].endswith("分开的时候我说不分开  [a line it was trained on]")
    assert rows[1].endswith("我说你好XYZ  [4 outside the vocabulary skipped]") and rows[2].endswith("的时候分开我")
    assert "note: 1 line of the 3 scored also occurs as a line of the training text, word for word" in out
    report = json.loads(run_cli(capsys, "eval", tiny_run, f, "--each-line", "--json")[1])
    assert [r["in_training_text"] for r in report["lines"]] == [True, False, False]
    f.write_text("分开\n分开的时候我说不分开\n", encoding="utf-8")  # a line too short to tell: not marked either way
    report = json.loads(run_cli(capsys, "eval", tiny_run, f, "--each-line", "--json")[1])
    assert [r["in_training_text"] for r in report["lines"]] == [None, True]


def test_a_sample_of_lines_short_of_those_asked_is_said(capsys, tmp_path):
    """--lines stops at a number of characters too (so that it always ends): a model that writes blank lines, which do
    not count, can use them up first; the sample comes back short, and a note says so rather than nothing."""
    from charlm.config import ModelConfig, TrainConfig
    from charlm.data import corpus_from_text
    from charlm.train import Trainer

    cfg = TrainConfig(out=str(tmp_path / "run"), epochs=3, batch_size=2, num_steps=16, lr=1e-2, device="cpu", prefixes=())
    corpus = corpus_from_text(("ab" + "\n" * 30) * 20, cfg)  # a model that writes little but blank lines
    Trainer(ModelConfig(vocab_size=len(corpus.vocab), embedding_size=8, hidden_size=16, copy_window=0), cfg, corpus, log=None).fit()
    code, out, err = run_cli(capsys, "generate", tmp_path / "run", "--prefix", "a", "--lines", 3, "--max-line-length", 4,
                             "--num-samples", 3, "--seed", 1)
    assert code == 0
    shown = [sum(bool(s) for s in t.split("\n")) for t in re.split(r"--- sample \d ---\n", out)[1:]]  # (blank ones not shown)
    said = {int(i): int(k) for i, k in re.findall(r"note: sample (\d) has (\d) whole lines? of the 3 asked: the model wrote "
                                                  r"blank lines, which do not count, and a sample of --lines stops at 18 "
                                                  r"characters", err)}
    assert said and len(err.strip().splitlines()) == len(said), err  # a note a short sample, and nothing else
    for i, n in enumerate(shown, 1):  # a sample cut short may end on a line the budget cut: shown, but not whole
        assert (i in said and said[i] < 3 and n in (said[i], said[i] + 1)) if n < 3 else (i not in said or n == said[i] + 1), (out, err)
    code, out, err = run_cli(capsys, "generate", tmp_path / "run", "--prefix", "a", "--lines", 3, "--max-line-length", 4, "--seed", 2)
    assert code == 0 and re.search(r"note: the text has \d whole lines? of the 3 asked", err), (out, err)


def test_an_nfd_copy_of_the_training_text_is_said_to_be_text_it_was_trained_on(capsys, tmp_path):
    """The seen-lines note compared the file's lines as typed, not in the form the vocabulary holds (the form it is
    scored in): an NFD copy of an NFC training text scored as the text itself, and was called unseen."""
    import unicodedata

    from .conftest import train_tiny

    text = "café crème brûlée à la fenêtre\nnaïve résumé of a déjà vu\nle garçon mange une pêche\n" * 40
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "corpus.txt").write_text(text, encoding="utf-8")
    train_tiny(tmp_path, epochs=1, prefixes=())
    nfd = tmp_path / "nfd.txt"
    nfd.write_text(unicodedata.normalize("NFD", text[:1000]), encoding="utf-8")
    out = run_cli(capsys, "eval", tmp_path / "run", nfd)[1]
    assert "are in the training text word for word" in out and "Unicode" in out, out


def test_control_characters_in_one_line_reports_are_shown_not_acted_on(capsys, tmp_path):
    """A training's samples, eval's rows and a copied span are one line each of a terminal's report: an escape
    sequence in them set the window's title or cleared the screen, a U+2028 broke the line. Shown as ⟨001B⟩ now."""
    from charlm.copycheck import CopyIndex
    from charlm.progress import one_line

    assert one_line("a\x1b]0;pwned\x07b\nc\u2028d\u202ee\tf\x85") == "a⟨001B⟩]0;pwned⟨0007⟩b / c⟨2028⟩d⟨202E⟩e\tf⟨0085⟩"
    assert one_line("分开\n") == "分开 / "  # (text as it is, but for those)
    report = CopyIndex("hello \x1b[2J world\n" * 3).check("hello \x1b[2J world")
    assert "\x1b" not in report.line() and "⟨001B⟩[2J" in report.line()
    from .conftest import train_tiny

    text = "hello \x1b]0;pwned\x07 world\nclear \x1b[2J\x1b[H screen\n" * 60
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "corpus.txt").write_text(text, encoding="utf-8")
    lines = []
    train_tiny(tmp_path, epochs=1, prefixes=("hello",), sample_every=1, sample_length=200, log=lines.append)
    samples = [line for line in lines if line.startswith(" - ")]
    assert samples and not any(c in line for line in samples for c in "\x1b\x07")
    f = tmp_path / "esc.txt"
    f.write_text(text[:200], encoding="utf-8")
    code, out, _ = run_cli(capsys, "eval", tmp_path / "run", f, "--each-line")
    assert code == 0 and "\x1b" not in out and "hello ⟨001B⟩]0;pwned⟨0007⟩ world" in out


def test_each_line_says_the_line_break_it_adds_after_a_last_line_without_one(capsys, tiny_run, tmp_path):
    """A file whose last line has no line break: --each-line scores each line with the break that ends it, so one more
    character was scored than read ("5 read, 6 scored"), unexplained."""
    f = tmp_path / "t.txt"
    for text, added in (("分开的时候\n我说不分开", True), ("分开的时候\n我说不分开\n", False)):
        f.write_text(text, encoding="utf-8")
        report = json.loads(run_cli(capsys, "eval", tiny_run, f, "--each-line", "--json")[1])
        ch = report["characters"]
        assert ch["scored"] - ch["read"] == (1 if added else 0), ch  # (each line's characters and the break after it)
        assert any(n.startswith("the last line has no line break after it") for n in report["notes"]) == added
    f.write_text("分开的时候\nxyz", encoding="utf-8")  # a last line with nothing scored: no break was added to any figure
    report = json.loads(run_cli(capsys, "eval", tiny_run, f, "--each-line", "--json", "--unknown", "skip")[1])
    assert not any(n.startswith("the last line has no line break") for n in report["notes"]), report["notes"]


def test_eval_names_the_other_width_of_an_unknown_character_it_knows(capsys, tmp_path):
    """eval --unknown error named an ASCII ',' but not the '，' the model knows, as generate and the server do."""
    from .conftest import train_tiny

    (tmp_path / "corpus.txt").write_text("分开的时候，我说不分开\n你说我们还会再见\n" * 40, encoding="utf-8")
    train_tiny(tmp_path, epochs=1)
    f = tmp_path / "t.txt"
    f.write_text("分开的时候,我说不分开\n", encoding="utf-8")
    one_line_error(*run_cli(capsys, "eval", tmp_path / "run", f, "--unknown", "error")[::2],
                   f"{f}: 1 character outside the model's vocabulary: ','; it knows '，' for ',', in the other width "
                   f"(--unknown skip scores the rest)")


def test_a_text_too_short_says_what_was_held_out_of_it(capsys, tmp_path):
    """A one-character file: "the training text has 0 characters", with nothing said of the 10% held out of it."""
    f = tmp_path / "one.txt"
    f.write_text("a", encoding="utf-8")
    one_line_error(*run_cli(capsys, "train", "--data", f, "--out", tmp_path / "run")[::2],
                   "the training text has 0 characters (of the text's 1, 1 held out by --val-fraction 0.1), fewer than one batch needs")
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_under_the_output_names_the_output(tmp_path, tiny_ckpt):
    """charlm train > log on a full disk stopped with "charlm: error: No space left on device", naming no file."""
    cmd = [sys.executable, "-m", "charlm", "generate", str(tiny_ckpt), "--length", "20", "--seed", "1"]
    with open("/dev/full", "w") as full:
        done = subprocess.run(cmd, stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr == "charlm: error: standard output: No space left on device\n"


def test_a_double_dash_after_an_equals_sign_is_the_flags_value(capsys, tiny_run, tmp_path, monkeypatch):
    """--prefix=-- (the way a text starting with - is given): Python 3.11's argparse handed the flag an empty list, a
    traceback further on; --resume=-- trained the default preset into runs/jaychou."""
    monkeypatch.chdir(tmp_path)
    for argv, message in ((["generate", tiny_run, "--prefix=--", "--length", 5], "the prefix has characters the model's vocabulary does not know: '-'"),
                          (["train", "--resume=--"], "--: no such checkpoint folder"),
                          (["eval", tiny_run, "--dynamic=--"], "argument --dynamic: invalid float value: '--'"),
                          (["inspect", tiny_run, "--text", "分开", "--units=--"], "--units takes unit numbers separated by commas")):
        try:
            code, out, err = run_cli(capsys, *argv)
        except SystemExit as e:  # (argparse's own errors)
            code, err = e.code, capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (argv, err)
    assert not (tmp_path / "runs").exists()


def test_a_run_is_not_written_inside_a_checkpoint(capsys, corpus, tiny_run, tmp_path):
    """--out RUN/best (a resume, or a new run) was taken: the next save of RUN's best/ replaced the folder and the run in it."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    one_line_error(*run_cli(capsys, "train", "--resume", run, "--epochs", 7, "--out", run / "best")[::2],
                   f"--out {run / 'best'} is the checkpoint {run / 'best'}: a run written there is lost when that checkpoint's "
                   f"training saves it anew (it replaces the folder whole); give another --out")
    one_line_error(*run_cli(capsys, "train", "--data", corpus, *TINY, "--out", run / "last" / "mine")[::2],
                   f"is inside the checkpoint {run / 'last'}: a run written there is lost")
    assert sorted(p.name for p in (run / "last").iterdir()) == sorted(p.name for p in (tiny_run / "last").iterdir())
    (tmp_path / "link").symlink_to(run / "best")  # the same, through a link
    one_line_error(*run_cli(capsys, "train", "--data", corpus, *TINY, "--out", tmp_path / "link" / "mine")[::2],
                   f"is inside the checkpoint {run / 'best'}: a run written there is lost")
    # a checkpoint kept apart (no run saves it again), or another tool's checkpoint.json above: nothing to lose
    shutil.copytree(run / "best", tmp_path / "kept")
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "checkpoint.json").write_text('{"step": 3}')
    for out in (tmp_path / "kept" / "mine", tmp_path / "proj" / "runs" / "x"):
        assert run_cli(capsys, "train", "--data", corpus, *TINY, "--epochs", 1, "--out", out)[0] == 0


def test_a_training_that_failed_before_its_first_checkpoint_leaves_no_run_to_refuse_a_retry(capsys, corpus, tmp_path, monkeypatch):
    """The loss diverging at once left the --out folder with an empty metrics.jsonl: the same command with a better --lr
    was refused ("holds a training run that stopped before its first checkpoint ... --overwrite")."""
    (tmp_path / "mine").mkdir()  # an empty folder of the user's own, above: kept
    for out in (tmp_path / "new" / "run", tmp_path / "mine" / "a" / "run"):
        argv = ["train", "--data", corpus, *TINY, "--epochs", 1, "--out", out, "--optimizer", "sgd"]
        one_line_error(*run_cli(capsys, *argv, "--lr", 1e30)[::2], "stopped, no checkpoint was written yet", expect_code=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lyrics.txt", "mine"] and not any((tmp_path / "mine").iterdir())
    code, stdout, _ = run_cli(capsys, *argv, "--lr", 0.1)
    assert code == 0 and (out / "last" / "checkpoint.json").is_file()
    # a resume into a new folder, whose first save fails: no run there either (it held the rows it was resumed with)
    import charlm.checkpoint as ckpt_io

    def full(ckpt, path):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(ckpt_io, "_save", full)
        code, _, err = run_cli(capsys, "train", "--resume", out, "--epochs", 2, "--out", tmp_path / "more")
    assert code == 1 and "No space left on device" in err and not (tmp_path / "more").exists()
    assert run_cli(capsys, "train", "--resume", out, "--epochs", 2, "--out", tmp_path / "more")[0] == 0


@pytest.mark.parametrize("command", [["eval", "{run}", "{corpus}"], ["inspect", "{run}", "--file", "{corpus}"]])
def test_an_empty_encoding_is_unknown_not_utf8(capsys, corpus, tiny_run, command):
    """eval and inspect took --encoding '' as not given (train refused it)."""
    argv = [a.format(run=tiny_run, corpus=corpus) for a in command]
    one_line_error(*run_cli(capsys, *argv, "--encoding", "")[::2], "unknown encoding ''")
