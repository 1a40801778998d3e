import json

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
    assert g["decoder.bias"][2] <= 0.2 + 1e-6


def test_init_from_fine_tunes_with_new_characters(capsys, tiny_run, tmp_path):
    f = tmp_path / "new.txt"
    f.write_text(("分开的时候我说不分开\n雨下整夜我的爱溢出就像雨水\n") * 40, encoding="utf-8")
    base = load(tiny_run)
    code = main(["train", "--data", str(f), "--init-from", str(tiny_run), "--epochs", "1", "--out", str(tmp_path / "ft"),
                 "--batch-size", "4", "--num-steps", "16", "--device", "cpu", "--prefixes", "分开", "--dropout", "0.1"])
    out = capsys.readouterr().out
    assert code == 0 and "new" in out
    model, vocab, ck = load_model(tmp_path / "ft" / "last")
    assert vocab.itos[: len(base.vocab)] == base.vocab.itos and "雨" in vocab
    assert ck.model_config.hidden_size == base.model_config.hidden_size and ck.model_config.dropout == 0.1
    assert json.loads((tmp_path / "ft" / "last" / "checkpoint.json").read_text())["train_config"]["init_from"] == str(tiny_run)


def test_init_from_refuses_another_architecture(capsys, tiny_run, tmp_path):
    code = main(["train", "--init-from", str(tiny_run), "--num-layers", "3", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and "cannot change --num-layers" in err


def test_fine_tuning_preset_needs_a_model(capsys, tmp_path):
    code = main(["train", "--preset", "jaychou-ft", "--out", str(tmp_path / "x")])
    assert code == 2 and "preset 'jaychou-ft' needs --init-from" in capsys.readouterr().err
