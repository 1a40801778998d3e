import dataclasses
import json
import os

import pytest
import torch

from charlm.checkpoint import load, load_model
from charlm.cli import main
from charlm.transfer import extend_vocab, grow_weights
from charlm.vocab import Vocab


def test_extend_vocab_keeps_the_old_ids():
    old = Vocab(("a", "b", "c"))
    new = extend_vocab(old, Vocab(("c", "x", "a", "y")))
    assert new.itos == ("a", "b", "c", "x", "y")


def test_grown_rows_are_generic_and_unlikely():
    old, new = Vocab(("a", "b")), Vocab(("a", "b", "z"))
    w = {"embedding.weight": torch.tensor([[1.0, 3.0], [3.0, 5.0]]), "decoder.weight": torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
         "decoder.bias": torch.tensor([0.0, 2.0])}
    g = grow_weights(w, old, new)
    assert torch.equal(g["embedding.weight"][2], torch.tensor([2.0, 4.0]))
    assert torch.equal(g["decoder.weight"][:2], w["decoder.weight"])
    assert torch.equal(g["decoder.weight"][2], torch.tensor([0.5, 0.5]))  # the mean output row: no character favoured
    assert g["decoder.bias"][2] <= 0.2 + 1e-6


def test_init_from_fine_tunes_with_new_characters(capsys, tiny_run, tmp_path):
    f = tmp_path / "new.txt"
    f.write_text(("分开的时候我说不分开\n雨下整夜我的爱溢出就像雨水\n") * 40, encoding="utf-8")
    base = load(tiny_run)
    code = main(["train", "--data", str(f), "--init-from", str(tiny_run), "--epochs", "1", "--out", str(tmp_path / "ft"),
                 "--batch-size", "4", "--num-steps", "16", "--device", "cpu", "--prefixes", "分开", "--dropout", "0.1"])
    out = capsys.readouterr().out
    gone = len(set(base.vocab.itos) - set(f.read_text(encoding="utf-8")))  # the lyric's 你, 们, ...: kept, and said
    assert code == 0 and f"its vocabulary of {len(base.vocab)} characters, and " in out and " new in this text; " in out
    assert gone and f"; {gone} of its characters are not in this text (kept: the model may still write them)" in out
    model, vocab, ck = load_model(tmp_path / "ft" / "last")
    assert vocab.itos[: len(base.vocab)] == base.vocab.itos and "雨" in vocab
    assert ck.model_config.hidden_size == base.model_config.hidden_size and ck.model_config.dropout == 0.1
    assert json.loads((tmp_path / "ft" / "last" / "checkpoint.json").read_text())["train_config"]["init_from"] == str(tiny_run / "best")  # the checkpoint read, not the run


def test_fine_tuning_from_python_starts_from_the_pre_trained_weights(tiny_run, tmp_path):
    import dataclasses

    from charlm.data import load_corpus
    from charlm.errors import CharlmError
    from charlm.train import Trainer
    from charlm.transfer import fine_tune_setup

    f = tmp_path / "new.txt"
    f.write_text(("分开的时候我说不分开\n雨下整夜我的爱溢出就像雨水\n") * 40, encoding="utf-8")
    base = load(tiny_run)
    cfg = dataclasses.replace(base.train_config, data=str(f), init_from=str(tiny_run), out=str(tmp_path / "ft"), epochs=1)
    corpus = load_corpus(cfg)
    with pytest.raises(CharlmError, match="fine_tune_setup"):  # init_from alone was recorded, and the run began from scratch
        Trainer(base.model_config, cfg, dataclasses.replace(corpus, vocab=base.vocab), log=None)
    with pytest.raises(CharlmError, match="keeps the pre-trained architecture of .*; cannot change hidden_size"):
        fine_tune_setup(str(tiny_run), corpus, {"dropout": 0.2, "hidden_size": 999})
    with pytest.raises(CharlmError, match="the corpus was read with newlines='space', but .* was trained with newlines='keep'"):
        fine_tune_setup(base, load_corpus(dataclasses.replace(cfg, newlines="space")))
    with pytest.raises(CharlmError, match="trained without <unk>, and <unk> must be id 0: read the corpus with unk=False"):
        fine_tune_setup(base, load_corpus(dataclasses.replace(cfg, unk=True)))  # (its <unk> was silently no <unk>)
    weights, model_cfg, grown = fine_tune_setup(str(tiny_run), corpus, {"dropout": 0.2, "hidden_size": base.model_config.hidden_size})
    assert model_cfg.dropout == 0.2 and model_cfg.hidden_size == base.model_config.hidden_size
    trainer = Trainer(model_cfg, cfg, grown, init_weights=weights, log=None)
    known = len(base.vocab)
    assert torch.equal(trainer.model.embedding.weight[:known].detach(), base.weights["embedding.weight"]) and "雨" in grown.vocab
    assert trainer.cfg.init_from == os.path.abspath(tiny_run)  # recorded absolute, for --check-copy from anywhere


@pytest.mark.parametrize("cell", ["lstm", "scratch", "gru"])
def test_a_one_hot_model_grows_its_input_weights(cell):
    from charlm.config import ModelConfig
    from charlm.model import CharLM

    old, new = Vocab(("a", "b", "c")), Vocab(("a", "b", "c", "x", "y"))
    torch.manual_seed(0)
    base = CharLM(ModelConfig(vocab_size=3, embedding_size=0, hidden_size=8, cell=cell, tie_weights=False, copy_window=0))
    grown = CharLM(ModelConfig(vocab_size=5, embedding_size=0, hidden_size=8, cell=cell, tie_weights=False, copy_window=0))
    grown.load_state_dict(grow_weights(base.state_dict(), old, new, one_hot=True))
    w = grown.rnn.weight_ih_l0.detach()
    assert torch.equal(w[:, 3], base.rnn.weight_ih_l0.detach().mean(1)) and torch.equal(w[:, 3], w[:, 4])
    # text of the known characters: the same logits for them as before the vocabulary grew
    ids = torch.tensor([[0, 2, 1, 1, 0, 2]])
    with torch.no_grad():
        assert torch.allclose(grown(ids)[0][..., :3], base(ids)[0], atol=1e-6)


def test_init_from_a_one_hot_model_with_new_characters(capsys, tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("分开的时候我说不分开\n你说我们还会再见\n" * 40, encoding="utf-8")
    b.write_text("分开的时候我说不分开\n雨下整夜我的爱溢出就像雨水\n" * 40, encoding="utf-8")
    small = ["--batch-size", "4", "--num-steps", "16", "--device", "cpu", "--epochs", "1", "--sample-every", "0"]
    assert main(["train", "--data", str(a), "--embedding-size", "0", "--hidden-size", "16", "--no-tie-weights",
                 "--copy-window", "0", "--out", str(tmp_path / "base"), *small]) == 0
    assert main(["train", "--data", str(b), "--init-from", str(tmp_path / "base"), "--out", str(tmp_path / "ft"), *small]) == 0
    model, vocab, _ = load_model(tmp_path / "ft" / "last")
    assert "雨" in vocab and model.rnn.weight_ih_l0.shape[1] == len(vocab)


def test_init_from_refuses_another_architecture(capsys, tiny_run, tmp_path):
    code = main(["train", "--init-from", str(tiny_run), "--num-layers", "3", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and "cannot change --num-layers" in err
    # checked against the pre-trained model, not the preset it is fine-tuned under (was: the preset's tie-weights error)
    code = main(["train", "--init-from", str(tiny_run), "--embedding-size", "128", "--out", str(tmp_path / "x")])
    assert code == 2 and "cannot change --embedding-size" in capsys.readouterr().err


def test_init_from_a_model_without_unk_refuses_unk(capsys, tiny_run, tmp_path):
    # <unk> must be id 0: a grown vocabulary cannot get it (was: '<unk>' added as an ordinary 5-letter character)
    code = main(["train", "--init-from", str(tiny_run), "--unk", "--min-freq", "2", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and "--unk:" in err and "trained without <unk>" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
    assert "<unk>" not in extend_vocab(Vocab(("a",)), Vocab(("<unk>", "a", "b"), unk=True)).itos


def test_fine_tuning_preset_needs_a_model(capsys, tmp_path):
    code = main(["train", "--preset", "jaychou-ft", "--out", str(tmp_path / "x")])
    assert code == 2 and "preset 'jaychou-ft' needs --init-from" in capsys.readouterr().err


def test_a_fine_tuned_models_copy_check_also_looks_at_its_pre_training_text(capsys, tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("明月几时有把酒问青天\n不知天上宫阙今夕是何年\n" * 40, encoding="utf-8")
    b.write_text("分开的时候我说不分开\n雨下整夜我的爱溢出就像雨水\n" * 40, encoding="utf-8")
    small = ["--batch-size", "4", "--num-steps", "16", "--device", "cpu", "--epochs", "1", "--sample-every", "0",
             "--embedding-size", "16", "--hidden-size", "16", "--no-tie-weights", "--copy-window", "0"]
    assert main(["train", "--data", str(a), "--out", str(tmp_path / "base"), *small]) == 0
    small = small[:-7]  # the architecture is the base's
    assert main(["train", "--data", str(b), "--init-from", str(tmp_path / "base"), "--out", str(tmp_path / "ft"), *small]) == 0
    capsys.readouterr()
    line = tmp_path / "line.txt"
    line.write_text("不知天上宫阙今夕是何年\n", encoding="utf-8")
    assert main(["eval", str(tmp_path / "ft"), str(line), "--check-copy"]) == 0
    err = capsys.readouterr().err
    assert "against the training text and the pre-training text of" in err
    assert "longest span also in the training text 11 characters" in err  # a line of the pre-training text, whole
    a.unlink()  # the pre-training text gone: checked against the fine-tuning text alone, and said so
    assert main(["eval", str(tmp_path / "ft"), str(line), "--check-copy"]) == 0
    err = capsys.readouterr().err
    assert "the pre-training text of" in err and "is left out" in err and "11 characters" not in err


def test_fine_tuning_keeps_the_bases_newlines_and_unk(capsys, tmp_path):
    a = tmp_path / "a.txt"
    a.write_text("明月几时有把酒问青天\n不知天上宫阙今夕是何年\n" * 40, encoding="utf-8")
    small = ["--batch-size", "4", "--num-steps", "16", "--device", "cpu", "--epochs", "1", "--sample-every", "0", "--prefixes", "明月"]
    assert main(["train", "--data", str(a), "--unk", "--embedding-size", "16", "--hidden-size", "16", "--no-tie-weights",
                 "--out", str(tmp_path / "base"), *small]) == 0
    capsys.readouterr()
    code = main(["train", "--data", str(a), "--init-from", str(tmp_path / "base"), "--newlines", "space", "--out", str(tmp_path / "x"), *small])
    assert code == 2 and "was trained with --newlines keep" in capsys.readouterr().err
    # a preset's settings: its unk=False gives way to the pre-trained model's <unk>, and a note says so
    assert main(["train", "--preset", "jaychou", "--data", str(a), "--init-from", str(tmp_path / "base"), "--out", str(tmp_path / "ft"), *small]) == 0
    assert "has <unk>, so the fine-tuned model has it too" in capsys.readouterr().out
    ck = load(tmp_path / "ft")
    assert ck.train_config.unk and ck.vocab.unk and ck.vocab.itos[0] == "<unk>"
    import dataclasses

    from charlm.data import load_corpus
    from charlm.errors import CharlmError
    from charlm.transfer import fine_tune_setup

    with pytest.raises(CharlmError, match="trained with <unk>: read the corpus with unk=True"):  # in Python, as --init-from
        fine_tune_setup(tmp_path / "base", load_corpus(dataclasses.replace(ck.train_config, unk=False)))
    # a resume that repeats the run's own settings changes nothing, so it is no error
    assert main(["train", "--resume", str(tmp_path / "ft"), "--epochs", "2", "--batch-size", "4", "--init-from", str(tmp_path / "base")]) == 0


def test_fine_tuning_takes_the_bases_newlines_and_a_resume_may_repeat_relative_paths(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_text("明月几时有 把酒问青天\n不知天上宫阙 今夕是何年\n" * 40, encoding="utf-8")
    small = ["--batch-size", "4", "--num-steps", "16", "--device", "cpu", "--epochs", "1", "--sample-every", "0", "--prefixes", "明月"]
    assert main(["train", "--data", "a.txt", "--newlines", "space", "--embedding-size", "16", "--hidden-size", "16",
                 "--no-tie-weights", "--out", "base", *small]) == 0
    capsys.readouterr()
    assert main(["train", "--preset", "jaychou", "--data", "a.txt", "--init-from", "base", "--out", "ft0", *small]) == 0
    assert "trained with --newlines space, so the fine-tuning reads its text so too" in capsys.readouterr().out  # (the preset's keep)
    assert main(["train", "--data", "a.txt", "--init-from", "base", "--out", "ft", *small]) == 0  # --newlines not given
    assert "note: fine-tuning with the settings base was trained with, where not given" in capsys.readouterr().out
    assert load(tmp_path / "ft").train_config.newlines == "space"
    # the first command again, with --resume: its relative paths are the ones stored (absolute)
    assert main(["train", "--resume", "ft", "--epochs", "2", "--data", "a.txt", "--init-from", "base", "--batch-size", "4"]) == 0
    # a chain that comes back to itself (base fine-tuned from ft, which came from base) ends
    from charlm.data import pretraining_texts

    assert main(["train", "--data", "a.txt", "--init-from", "ft", "--out", "base", "--overwrite", *small]) == 0
    found, notes = pretraining_texts(load(tmp_path / "base"))
    assert [str(tmp_path / "ft") in name for name, _ in found] == [True] and notes == []


def test_pre_training_texts_of_checkpoint_folders_side_by_side(capsys, tmp_path):
    import shutil

    from charlm.data import pretraining_texts

    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("明月几时有把酒问青天\n" * 60, encoding="utf-8")
    b.write_text("分开的时候我说不分开\n" * 60, encoding="utf-8")
    small = ["--batch-size", "4", "--num-steps", "16", "--device", "cpu", "--epochs", "1", "--sample-every", "0", "--prefixes", "明月"]
    assert main(["train", "--data", str(a), "--embedding-size", "16", "--hidden-size", "16", "--no-tie-weights",
                 "--out", str(tmp_path / "ra"), *small]) == 0
    models = tmp_path / "models"
    shutil.copytree(tmp_path / "ra" / "best", models / "base")  # checkpoint folders kept side by side, not in runs
    assert main(["train", "--data", str(b), "--init-from", str(models / "base"), "--out", str(tmp_path / "rb"), *small]) == 0
    shutil.copytree(tmp_path / "rb" / "best", models / "ft")
    found, notes = pretraining_texts(load(models / "ft"))
    assert [name for name, _ in found] == [str(models / "base")] and notes == []


def test_a_fine_tuning_without_a_preset_goes_on_with_the_pre_trained_runs_settings(capsys, tmp_path):
    """(a char-rnn user's "continue with a lower rate"): without --preset, the default preset's dropouts, batches and
    epochs replaced the pre-trained run's unseen, and the validation loss got worse at once"""
    a = tmp_path / "a.txt"
    a.write_text("明月几时有把酒问青天\n不知天上宫阙今夕是何年\n" * 40, encoding="utf-8")
    assert main(["train", "--data", str(a), "--preset", "seed", "--epochs", "2", "--batch-size", "4", "--num-steps", "12",
                 "--dropout", "0.05", "--max-minutes", "9", "--out", str(tmp_path / "base"), "--prefixes", "明月"]) == 0
    capsys.readouterr()
    meta = tmp_path / "base" / "best" / "checkpoint.json"  # as if trained on a GPU in fp16: not for this machine
    meta.write_text(meta.read_text(encoding="utf-8").replace('"precision": "fp32"', '"precision": "fp16"'), encoding="utf-8")
    assert load(tmp_path / "base", with_weights=False).train_config.precision == "fp16"
    assert main(["train", "--data", str(a), "--init-from", str(tmp_path / "base"), "--lr", "5e-4", "--out", str(tmp_path / "ft")]) == 0
    base, ft = load(tmp_path / "base", with_weights=False), load(tmp_path / "ft", with_weights=False)
    assert ft.train_config.precision == "fp32"
    assert ft.model_config == dataclasses.replace(base.model_config)  # its dropout 0.05, not the default preset's 0.4
    from charlm.cli import NOT_CARRIED_OVER

    kept = {k: v for k, v in vars(base.train_config).items() if k not in NOT_CARRIED_OVER | {"lr"}}
    assert {k: getattr(ft.train_config, k) for k in kept} == kept and ft.train_config.lr == 5e-4
    assert kept["newlines"] == "space" and kept["epochs"] == 2 and kept["optimizer"] == "adam"  # (the seed's, not the default preset's)
    # the same text: its cut and prefixes too (so that the held-out text is the one it never saw); another text's, not (as
    # test_a_fine_tuning_of_its_own_text_keeps_its_split_and_names_what_it_took checks)
    assert (ft.train_config.limit_chars, ft.train_config.prefixes) == (10_000, ("明月",))
    assert ft.train_config.max_minutes == 9  # (its length: its epochs, and its time limit with them)


def test_a_fine_tuning_of_its_own_text_keeps_its_split_and_names_what_it_took(capsys, tmp_path):
    """Training on with other settings (`--init-from RUN --lr ...` on the same text): the pre-trained run's 1% split was
    replaced by the preset's 10%, so "held-out, not trained on" scored text the model had learned; and the note named
    "dropouts, optimiser, schedule, batches and epochs" while --max-minutes, --unk and --min-freq came too, unsaid."""
    a = tmp_path / "a.txt"
    a.write_text("明月几时有把酒问青天\n不知天上宫阙今夕是何年\n" * 40 + "我欲乘风归去又恐琼楼玉宇\n" * 8, encoding="utf-8")
    small = ["--batch-size", "4", "--num-steps", "16", "--device", "cpu", "--epochs", "1", "--sample-every", "0"]
    assert main(["train", "--data", str(a), "--embedding-size", "16", "--hidden-size", "16", "--copy-window", "0", "--unk",
                 "--min-freq", "2", "--max-minutes", "5", "--val-fraction", "0.05", "--out", str(tmp_path / "base"), *small]) == 0
    capsys.readouterr()
    assert main(["train", "--init-from", str(tmp_path / "base"), "--data", str(a), "--lr", "1e-4", "--out", str(tmp_path / "ft")]) == 0
    out = capsys.readouterr().out
    note = next(line for line in out.splitlines() if line.startswith("note: fine-tuning with the settings"))
    for flag in ("--val-fraction 0.05", "--min-freq 2", "--unk", "--max-minutes 5.0", "--batch-size 4", "--num-steps 16"):
        assert flag in note, note
    assert "--lr" not in note and "last 5% of the corpus, not trained on" in out
    base, ft = load(tmp_path / "base", with_weights=False), load(tmp_path / "ft", with_weights=False)
    assert ft.train_config.val_fraction == base.train_config.val_fraction == 0.05
    b = tmp_path / "b.txt"  # another text: its own split, as a fine-tuning's
    b.write_text("分开的时候我说不分开\n雨下整夜我的爱溢出就像雨水\n" * 40, encoding="utf-8")
    assert main(["train", "--init-from", str(tmp_path / "base"), "--data", str(b), "--out", str(tmp_path / "ft2")]) == 0
    ft2 = load(tmp_path / "ft2", with_weights=False).train_config
    assert (ft2.val_fraction, ft2.limit_chars) == (0.1, 0) and ft2.prefixes == ()  # (that text's own: no prefixes of its own)
    capsys.readouterr()
    for preset in ([], ["--preset", "jaychou-ft"]):  # an <unk> model's row cannot go: said, not overridden or a min-freq error
        code = main(["train", *preset, "--init-from", str(tmp_path / "base"), "--data", str(b), "--no-unk", "--out", str(tmp_path / "x")])
        err = capsys.readouterr().err
        assert code == 2 and "--no-unk: " in err and "was trained with <unk>" in err and len(err.strip().splitlines()) == 1


def test_a_fine_tuning_may_not_write_over_the_checkpoint_it_starts_from(capsys, tiny_run, tmp_path):
    """--out the same as --init-from, with --overwrite, wiped the pre-trained run and recorded itself as its own base."""
    import shutil

    f = tmp_path / "new.txt"
    f.write_text("分开的时候我说不分开\n" * 40, encoding="utf-8")
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    for src, out in ((run, run), (run, run / "best"), (run / "best", run)):
        code = main(["train", "--data", str(f), "--init-from", str(src), "--out", str(out), "--overwrite", "--epochs", "1"])
        err = capsys.readouterr().err
        assert code == 2 and f"the checkpoint --init-from starts from ({run / 'best'}): the fine-tuning would write over" in err, err
    assert load(run).trainer == load(tiny_run).trainer  # untouched
    # recorded as the checkpoint read, and a resume may name it by its run folder or itself
    small = ["--batch-size", "4", "--num-steps", "16", "--device", "cpu", "--epochs", "1", "--prefixes", "分开"]
    assert main(["train", "--data", str(f), "--init-from", str(run), "--out", str(tmp_path / "ft"), *small]) == 0
    assert load(tmp_path / "ft", with_weights=False).train_config.init_from == str(run / "best")
    for epochs, named in ((2, run), (3, run / "best")):  # (was: "cannot change --init-from" for the run folder's best/)
        assert main(["train", "--resume", str(tmp_path / "ft"), "--init-from", str(named), "--epochs", str(epochs)]) == 0
    assert "cannot change" not in capsys.readouterr().err


def test_held_out_text_the_pre_trained_model_learned_is_said_in_training_and_in_eval(capsys, tmp_path):
    """A fine-tuning text that repeats lines of the pre-training text: "held-out, not trained on" said nothing of them,
    and `charlm eval` of such lines noted them for a pre-trained model but not for the fine-tuned one."""
    import random

    rng = random.Random(1)
    lines = ["".join(rng.choice("明月几时有把酒问青天不知天上宫阙今夕是何年我欲乘风归去") for _ in range(12)) for _ in range(120)]
    (tmp_path / "pre.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "ft.txt").write_text("\n".join(lines[:20] * 3 + lines[100:110]) + "\n", encoding="utf-8")
    small = ["--batch-size", "4", "--num-steps", "16", "--device", "cpu", "--epochs", "1", "--sample-every", "0"]
    assert main(["train", "--data", str(tmp_path / "pre.txt"), "--hidden-size", "16", "--embedding-size", "16", "--copy-window", "0",
                 "--out", str(tmp_path / "pre"), *small]) == 0
    capsys.readouterr()
    assert main(["train", "--data", str(tmp_path / "ft.txt"), "--init-from", str(tmp_path / "pre"), "--out", str(tmp_path / "ft"), *small]) == 0
    out = capsys.readouterr().out
    assert "note: held out from this fine-tuning, but not unseen: " in out and f"are in the text {tmp_path / 'pre' / 'best'} was trained on" in out
    (tmp_path / "held.txt").write_text("\n".join(lines[60:80]) + "\n", encoding="utf-8")  # in the pre-training text only
    assert main(["eval", str(tmp_path / "ft"), str(tmp_path / "held.txt")]) == 0
    assert "note: 20 of the 20 lines checked (its lines of 10 characters or more) are in the training text or its pre-training text" in capsys.readouterr().out
    assert main(["eval", str(tmp_path / "ft"), str(tmp_path / "held.txt"), "--each-line"]) == 0  # each row, too
    out = capsys.readouterr().out
    assert out.count("[a line it was trained on]") == 20 and "also occur as lines of the training text or its pre-training text" in out
    (tmp_path / "new.txt").write_text("\n".join("".join(rng.choice("分开的时候我说不") for _ in range(12)) for _ in range(20)) + "\n", encoding="utf-8")
    assert main(["eval", str(tmp_path / "ft"), str(tmp_path / "new.txt")]) == 0
    assert "lines checked" not in capsys.readouterr().out


def test_training_on_from_a_run_of_the_bundled_lyrics_keeps_its_split(capsys, tmp_path):
    """No --data either time: both read the bundled lyrics ("" in the config), the same text, so its split is kept."""
    small = ["--hidden-size", "16", "--embedding-size", "16", "--no-tie-weights", "--copy-window", "0", "--epochs", "1",
             "--batch-size", "4", "--num-steps", "16", "--device", "cpu", "--sample-every", "0"]
    assert main(["train", *small, "--limit-chars", "2000", "--val-fraction", "0.2", "--out", str(tmp_path / "base")]) == 0
    capsys.readouterr()
    assert main(["train", "--init-from", str(tmp_path / "base"), "--lr", "1e-4", "--out", str(tmp_path / "ft")]) == 0
    assert "where not given: --val-fraction 0.2 --limit-chars 2000" in capsys.readouterr().out
    assert load(tmp_path / "ft", with_weights=False).train_config.val_fraction == 0.2
