import dataclasses
import json
import math
import re
import signal
from pathlib import Path

import pytest
import torch

from charlm import checkpoint as ckpt_io
from charlm import train as train_mod
from charlm.config import ModelConfig
from charlm.data import load_corpus
from charlm.errors import CharlmError
from charlm.model import CharLM
from charlm.train import Trainer, TrainingInterrupted, evaluate, surprisal

from .conftest import tiny_train_config, train_tiny


def _one_step_update_norm(tmp_path, grad_clip):
    cfg = tiny_train_config(tmp_path, epochs=1, val_fraction=0.0, optimizer="sgd", lr=1.0, grad_clip=grad_clip,
                            batch_size=4, num_steps=16, out=str(tmp_path / f"run{grad_clip}"))
    corpus = load_corpus(cfg)
    corpus = type(corpus)(corpus.train_text[:68], "", corpus.vocab, 68)  # exactly one batch
    t = Trainer(ModelConfig(vocab_size=len(corpus.vocab), embedding_size=8, hidden_size=8), cfg, corpus, log=lambda *_: None)
    before = torch.cat([p.detach().flatten().clone() for p in t.params])
    t.fit()
    after = torch.cat([p.detach().flatten() for p in t.params])
    return float((after - before).norm())  # plain SGD at lr 1: the update is the gradient used


def test_weights_that_diverged_in_the_step_before_a_checkpoint_are_not_saved(tmp_path):
    """The loss is checked as it is computed, with the weights before the step: the last step before a checkpoint can
    make them NaN unseen (without a held-out text nothing else tells). They were saved as best/ and last/, which then
    neither generate nor --resume could read, while the error called last/ "the last good checkpoint"."""
    cfg = tiny_train_config(tmp_path, epochs=2, val_fraction=0.0, optimizer="sgd", lr=1e39, grad_clip=0.0,
                            batch_size=4, num_steps=16)
    corpus = load_corpus(cfg)
    corpus = type(corpus)(corpus.train_text[:68], "", corpus.vocab, 68)  # exactly one batch: its step is the epoch's last
    t = Trainer(ModelConfig(vocab_size=len(corpus.vocab), embedding_size=8, hidden_size=8, tie_weights=False), cfg, corpus,
                log=lambda *_: None)
    with pytest.raises(CharlmError, match=r"the weights became NaN or infinite \(in [\w.]+\) after step 1: training diverged; "
                                          r"stopped, no checkpoint was written yet; try a lower --lr") as e:
        t.fit()
    assert e.value.exit_code == 1
    assert not (tmp_path / "run").exists()  # nothing saved: no run left behind (the folder was made for it)
    (tmp_path / "run").mkdir()  # a folder there before, with something of its own: kept, with that
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(CharlmError, match="training diverged"):
        Trainer(t.model_cfg, cfg, corpus, log=lambda *_: None).fit()
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["notes.txt"]


def test_a_checkpoint_that_cannot_be_written_leaves_metrics_as_the_checkpoints_have_them(tmp_path, monkeypatch):
    """A full disk at epoch 2's save: metrics.jsonl holds epoch 1's row, as last/ does (it had epoch 2's too)."""
    real, calls = ckpt_io._save, []

    def full(ckpt, path):
        calls.append(path.name)
        if len(calls) > 2:
            raise OSError(28, "No space left on device")
        return real(ckpt, path)

    monkeypatch.setattr(ckpt_io, "_save", full)
    with pytest.raises(CharlmError, match="cannot write the checkpoint .*: No space left on device"):
        train_tiny(tmp_path, epochs=3)
    assert calls[:2] == ["best", "last"] and len(calls) == 3
    assert [m["epoch"] for m in _metrics(tmp_path / "run")] == [1] == [m["epoch"] for m in ckpt_io.load(tmp_path / "run", prefer="last").metrics]


def test_clipping_really_clips(tmp_path):
    raw = _one_step_update_norm(tmp_path, 0.0)
    clipped = _one_step_update_norm(tmp_path, 1e-3)
    assert raw > 1e-2
    assert clipped == pytest.approx(1e-3, rel=1e-3)


def test_the_training_loss_is_the_mean_loss_per_character_of_the_epoch(tmp_path):
    """metrics' train_loss: the mean over every character predicted in the epoch's batches (a rate too small to move the
    weights, so the model before training scores them as the trainer did)."""
    import copy

    import torch.nn.functional as F

    from charlm.data import batches

    cfg = tiny_train_config(tmp_path, epochs=1, optimizer="sgd", lr=1e-30)
    corpus = load_corpus(cfg)
    t = Trainer(ModelConfig(vocab_size=len(corpus.vocab), embedding_size=16, hidden_size=32), cfg, corpus, log=lambda *_: None)
    before = copy.deepcopy(t.model).eval()
    t.fit()
    total, count, state = 0.0, 0, None
    with torch.no_grad():
        for x, y in batches(t.train_ids, cfg.batch_size, cfg.num_steps, cfg.sampling):
            logits, state = before(x, state)
            total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum"))
            count += y.numel()
    assert count == t.n_batches * cfg.batch_size * cfg.num_steps
    row = _metrics(tmp_path / "run")[0]
    assert row["train_loss"] == pytest.approx(total / count, rel=1e-5)
    assert row["train_ppl"] == pytest.approx(math.exp(total / count), rel=1e-5)


def test_metrics_and_outputs(tmp_path):
    logs = []
    train_tiny(tmp_path, epochs=2, log=logs.append, sample_every=1)
    run = tmp_path / "run"
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in recs] == [1, 2]
    for r in recs:
        for key in ("epoch", "train_loss", "train_ppl", "val_loss", "val_ppl", "chars_per_s"):
            assert key in r
        assert r["train_ppl"] == pytest.approx(math.exp(r["train_loss"]))
        assert r["val_ppl"] == pytest.approx(math.exp(r["val_loss"]))
    assert (run / "best" / "model.safetensors").exists() and (run / "last" / "trainer.safetensors").exists()
    assert sum(line.startswith(" - 分开") for line in logs) == 2  # a sample per epoch
    assert recs[-1]["train_loss"] < recs[0]["train_loss"]


@pytest.mark.parametrize("sampling", ["consecutive", "random"])
def test_consecutive_batches_get_the_state_the_batch_before_left_and_random_ones_none(tmp_path, monkeypatch, sampling):
    real, calls = Trainer._train_step, []

    def recording(self, model):
        step = real(self, model)

        def call(x, y, state):
            loss, new = step(x, y, state)
            calls.append((self.epoch, self.batch, state, new))
            return loss, new
        return call

    monkeypatch.setattr(Trainer, "_train_step", recording)
    t = train_tiny(tmp_path, epochs=2, sampling=sampling)
    assert len(calls) == 2 * t.n_batches > 4
    for (epoch, batch, given, _), before in zip(calls, [None] + calls[:-1]):
        if sampling == "random" or batch == 0:  # a new epoch starts from nothing, as does every random batch
            assert given is None
            continue
        assert before[0] == epoch and before[1] == batch - 1
        given, left = torch.cat([s.flatten() for s in given]), torch.cat([s.flatten() for s in before[3]])
        assert torch.equal(given, left) and not given.requires_grad  # carried, and cut from the graph before


def test_the_validation_loss_is_the_held_out_text_read_as_one_stream(tmp_path):
    t = train_tiny(tmp_path, epochs=1)
    model, _, _ = ckpt_io.load_model(tmp_path / "run", prefer="last")
    loss, scored = evaluate(model, t.corpus.val_ids()[0])
    assert scored == len(t.corpus.val_text) - 1
    assert json.loads((tmp_path / "run" / "metrics.jsonl").read_text())["val_loss"] == pytest.approx(loss, abs=1e-6)


def test_metrics_are_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    import os

    train_tiny(tmp_path, epochs=1)
    metrics = tmp_path / "run" / "metrics.jsonl"
    before = metrics.read_bytes()
    real = os.replace

    def failing(src, dst):
        if str(dst).endswith("metrics.jsonl"):
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    c = ckpt_io.load(tmp_path / "run", prefer="last")
    cfg = dataclasses.replace(c.train_config, epochs=2)
    with pytest.raises(CharlmError, match=f"cannot write {metrics}: No space left on device"):
        Trainer(c.model_config, cfg, load_corpus(cfg, vocab=c.vocab), resume=c, log=lambda *_: None).fit()
    assert metrics.read_bytes() == before and not list(metrics.parent.glob(".metrics.jsonl*"))


def test_no_validation_split_writes_null(tmp_path):
    train_tiny(tmp_path, epochs=1, val_fraction=0.0)
    rec = json.loads((tmp_path / "run" / "metrics.jsonl").read_text())
    assert rec["val_loss"] is None and rec["val_ppl"] is None


def test_without_a_held_out_part_best_is_the_last_checkpoint(tmp_path):
    """--val-fraction 0: best/ is last/ (README), not the epoch of the lowest running training loss, which is measured
    with dropout on and the weights changing; generate and eval read best/ by default."""
    train_tiny(tmp_path, model_kw=dict(tie_weights=False), epochs=5, val_fraction=0.0, lr=1.0, grad_clip=0.0,
               schedule="constant", early_stop=0)
    losses = [m["train_loss"] for m in _metrics(tmp_path / "run")]
    assert min(losses) < losses[-1], losses  # (the case: a later epoch's training loss above an earlier one's)
    steps = [json.loads((tmp_path / "run" / d / "checkpoint.json").read_text())["trainer"]["step"] for d in ("best", "last")]
    assert steps[0] == steps[1] == _metrics(tmp_path / "run")[-1]["step"]


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("sampling,extra", [
    ("consecutive", {}),
    ("random", {}),
    ("consecutive", {"copy_window": 24, "eval_every": 7, "label_smoothing": 0.1}),  # the copy memory carried; validations inside epochs
    ("consecutive", {"eval_every": 25, "schedule": "plateau"}),  # stopped at step 25, where a validation falls due: done on resume
    ("consecutive", {"schedule": "cosine", "warmup_steps": 40}),  # stopped inside the warm-up: the schedule goes on from there
])
def test_interrupted_run_resumes_exactly(tmp_path, monkeypatch, sampling, extra):
    kw = dict(epochs=3, dropout=0.3, sampling=sampling, **extra)
    model_kw = {"dropout": kw.pop("dropout")}
    if "copy_window" in kw:
        model_kw["copy_window"] = kw.pop("copy_window")
    train_tiny(tmp_path / "a", model_kw=model_kw, **kw)
    full = _metrics(tmp_path / "a" / "run")

    # the same run, stopped by SIGTERM in the middle of epoch 2, then resumed
    real_batches = train_mod.batches
    box = {}

    def interrupting(*args, **kwargs):
        for i, b in enumerate(real_batches(*args, **kwargs)):
            if kwargs.get("epoch", args[5] if len(args) > 5 else 0) == 1 and i == 2:
                box["trainer"]._signal = signal.SIGTERM
            yield b

    monkeypatch.setattr(train_mod, "batches", interrupting)
    cfg = tiny_train_config(tmp_path / "b", **kw)
    corpus = load_corpus(cfg)
    t = Trainer(ModelConfig(vocab_size=len(corpus.vocab), embedding_size=16, hidden_size=32, **model_kw), cfg, corpus, log=lambda *_: None)
    box["trainer"] = t
    with pytest.raises(TrainingInterrupted):
        t.fit()
    monkeypatch.setattr(train_mod, "batches", real_batches)
    c = ckpt_io.load(tmp_path / "b" / "run", prefer="last")
    assert c.trainer["epoch"] == 1 and c.trainer["batch"] == 3
    t2 = Trainer(c.model_config, c.train_config, load_corpus(c.train_config, vocab=c.vocab), resume=c, log=lambda *_: None)
    t2.fit()
    resumed = _metrics(tmp_path / "b" / "run")
    for a, b in zip(full, resumed, strict=True):
        assert a["train_loss"] == b["train_loss"] and a["val_loss"] == b["val_loss"] and a["lr"] == b["lr"]


def _worsening(monkeypatch):
    """Validation losses that grow as the model learns (10 minus the real one): every validation after the first is
    worse, so each counts towards an early stop and lowers a plateau schedule's rate."""
    real = train_mod.evaluate

    def worse(model, ids, **kw):
        loss, n = real(model, ids, **kw)
        return 10.0 - loss, n

    monkeypatch.setattr(train_mod, "evaluate", worse)


def _extended(tmp_path, first: int, then: int, **kw) -> Path:
    """A run of ``first`` epochs, resumed with --epochs ``then`` (as ``charlm train --resume OUT --epochs then``)."""
    train_tiny(tmp_path, epochs=first, **kw)
    c = ckpt_io.load(tmp_path / "run", prefer="last")
    cfg = dataclasses.replace(c.train_config, epochs=then)
    Trainer(c.model_config, cfg, load_corpus(cfg, vocab=c.vocab), resume=c, log=lambda *_: None).fit()
    return tmp_path / "run"


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = (ckpt_io.load(x, with_trainer=False).weights for x in (a, b))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_run_given_more_epochs_goes_on_as_one_given_them_from_the_start_with_eval_every(tmp_path, monkeypatch):
    """The validation that closes a run between two --eval-every steps is reported and checkpointed, but does not
    lower the plateau schedule's rate, count towards an early stop or restart the running training loss: 1 epoch
    resumed to 3 is 3 in one run, with that one row more."""
    _worsening(monkeypatch)
    kw = dict(eval_every=7, schedule="plateau", plateau_patience=0, plateau_factor=0.5, early_stop=0)  # 22 batches an epoch
    train_tiny(tmp_path / "a", epochs=3, **kw)
    b = _extended(tmp_path / "b", 1, 3, **kw)
    one, two = _metrics(tmp_path / "a" / "run"), _metrics(b)
    closing = [m for m in two if m["step"] % 7]
    assert [(m["epoch"], m["step"]) for m in closing] == [(1, 22), (3, 66)] and one[-1]["step"] == 66
    assert [m for m in two if m["step"] != 22] == [{**m, **{k: n[k] for k in ("chars_per_s", "seconds", "train_seconds", "val_seconds")}}
                                                   for m, n in zip(one, [m for m in two if m["step"] != 22])]
    assert len({m["lr"] for m in one}) > 3  # each validation but the first lowered the rate: the test can tell
    assert _same_weights(tmp_path / "a" / "run" / "last", b / "last") and _same_weights(tmp_path / "a" / "run" / "best", b / "best")


def test_an_equal_validation_loss_is_no_improvement_for_an_early_stop(tmp_path, monkeypatch):
    """"No validation loss below": a loss equal to the best counts towards the stop, as a worse one does."""
    monkeypatch.setattr(train_mod, "evaluate", lambda model, ids, **kw: (2.5, max(0, len(ids) - 1)))
    train_tiny(tmp_path, epochs=6, early_stop=2)
    assert [m["val_loss"] for m in _metrics(tmp_path / "run")] == [2.5, 2.5, 2.5]


def test_an_early_stop_due_as_a_run_ended_stops_it_when_given_more_epochs(tmp_path, monkeypatch):
    """The last epoch ends a run without an early stop's line; resumed with more epochs, the run stops there, as
    one given them from the start did, and says how to train on."""
    _worsening(monkeypatch)
    train_tiny(tmp_path / "a", epochs=4, early_stop=1)
    logs = []
    train_tiny(tmp_path / "b", epochs=2, early_stop=1)
    c = ckpt_io.load(tmp_path / "b" / "run", prefer="last")
    cfg = dataclasses.replace(c.train_config, epochs=4)
    Trainer(c.model_config, cfg, load_corpus(cfg, vocab=c.vocab), resume=c, log=logs.append).fit()
    assert [m["epoch"] for m in _metrics(tmp_path / "a" / "run")] == [1, 2] == [m["epoch"] for m in _metrics(tmp_path / "b" / "run")]
    assert _same_weights(tmp_path / "a" / "run" / "last", tmp_path / "b" / "run" / "last")
    assert any(re.match(r"early stop: no validation loss below \d\.\d{4} for 1 validation;", line) and "--early-stop 0" in line for line in logs)

    # a Ctrl-C while the last epoch's validation reads: the resume finishes it, and ends as the run would have, with
    # no early stop's line (the last epoch ends the run; it said one was due, and that --early-stop 0 trains on)
    real, box = train_mod.evaluate, {}

    def cut_at_the_second(model, ids, **kw):
        box["calls"] = box.get("calls", 0) + 1
        if box["calls"] == 2:
            box["trainer"]._signal = signal.SIGINT
        return real(model, ids, **kw)

    monkeypatch.setattr(train_mod, "evaluate", cut_at_the_second)
    cfg = tiny_train_config(tmp_path / "c", epochs=2, early_stop=1)
    corpus = load_corpus(cfg)
    t = box["trainer"] = Trainer(ModelConfig(vocab_size=len(corpus.vocab), embedding_size=16, hidden_size=32), cfg, corpus, log=lambda *_: None)
    with pytest.raises(TrainingInterrupted):
        t.fit()
    c = ckpt_io.load(tmp_path / "c" / "run", prefer="last")
    assert c.trainer["pending_validation"] == {"at_epoch_end": True, "over_time": False}
    logs.clear()
    Trainer(c.model_config, c.train_config, load_corpus(c.train_config, vocab=c.vocab), resume=c, log=logs.append).fit()
    assert [m["epoch"] for m in _metrics(tmp_path / "c" / "run")] == [1, 2] and not any(line.startswith("early stop") for line in logs)


@pytest.mark.parametrize("eval_every,which,at_end", [
    (7, 0, False),  # the first validation inside epoch 1 (22 batches an epoch)
    (7, 6, True),  # the last one, at the end of the last epoch: the resume has only it left to do
    (0, 0, True),  # at the end of epoch 1
])
def test_a_signal_while_validating_stops_and_the_resume_validates_first(tmp_path, monkeypatch, eval_every, which, at_end):
    kw = dict(epochs=2, eval_every=eval_every)
    train_tiny(tmp_path / "a", model_kw={"dropout": 0.3}, **kw)
    full = _metrics(tmp_path / "a" / "run")

    real = train_mod.evaluate
    calls = []

    def interrupted_evaluate(model, ids, progress=None, **k):
        calls.append(1)
        if len(calls) == which + 1:
            box["trainer"]._signal = signal.SIGINT  # Ctrl-C while the held-out text is read
        return real(model, ids, progress=progress, **k)

    box = {}
    monkeypatch.setattr(train_mod, "evaluate", interrupted_evaluate)
    cfg = tiny_train_config(tmp_path / "b", **kw)
    corpus = load_corpus(cfg)
    t = box["trainer"] = Trainer(ModelConfig(vocab_size=len(corpus.vocab), embedding_size=16, hidden_size=32, dropout=0.3),
                                 cfg, corpus, log=lambda *_: None)
    with pytest.raises(TrainingInterrupted) as e:
        t.fit()
    assert e.value.signum == signal.SIGINT
    assert len(_metrics(tmp_path / "b" / "run")) == which  # that validation left no record
    monkeypatch.setattr(train_mod, "evaluate", real)
    c = ckpt_io.load(tmp_path / "b" / "run", prefer="last")
    assert c.trainer["pending_validation"] == {"at_epoch_end": at_end, "over_time": False}
    t2 = Trainer(c.model_config, c.train_config, load_corpus(c.train_config, vocab=c.vocab), resume=c, log=lambda *_: None)
    t2.fit()
    resumed = _metrics(tmp_path / "b" / "run")
    assert [(m["epoch"], m["train_loss"], m["val_loss"]) for m in resumed] == [(m["epoch"], m["train_loss"], m["val_loss"]) for m in full]


def test_a_time_limit_validation_cut_short_trains_on_when_the_limit_is_raised(tmp_path, monkeypatch):
    cfg = tiny_train_config(tmp_path, epochs=2, max_minutes=1e-6)  # the time limit's validation comes after one step
    corpus = load_corpus(cfg)
    t = Trainer(ModelConfig(vocab_size=len(corpus.vocab), embedding_size=16, hidden_size=32), cfg, corpus, log=lambda *_: None)
    real = train_mod.evaluate

    def cut(model, ids, progress=None, **k):
        t._signal = signal.SIGINT
        return real(model, ids, progress=progress, **k)

    monkeypatch.setattr(train_mod, "evaluate", cut)
    with pytest.raises(TrainingInterrupted):
        t.fit()
    monkeypatch.setattr(train_mod, "evaluate", real)
    c = ckpt_io.load(tmp_path / "run", prefer="last")
    assert c.trainer["pending_validation"] == {"at_epoch_end": False, "over_time": True}
    more = dataclasses.replace(c.train_config, max_minutes=0)  # resumed with the limit lifted
    t2 = Trainer(c.model_config, more, load_corpus(more, vocab=c.vocab), resume=c, log=lambda *_: None)
    t2.fit()
    assert t2.epoch == 2 and _metrics(tmp_path / "run")[-1]["epoch"] == 2  # not stopped by the old limit's validation


def test_progress_without_a_terminal_is_plain_lines(tmp_path, monkeypatch, capsys):
    from charlm import progress

    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.0)  # a line whenever there is something to show
    train_tiny(tmp_path, epochs=1)
    err = capsys.readouterr().err  # pytest's stderr is no terminal
    assert "\r" not in err
    lines = err.splitlines()
    assert any(line.startswith("epoch 1/1: ") and " of 22 batches (" in line and ", loss " in line and ", chars/s " in line for line in lines), err
    assert any(line.startswith("validation: ") and " characters (" in line for line in lines), err


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    train_tiny(tmp_path, epochs=1)
    good = ckpt_io.load(tmp_path / "run", prefer="last")
    real_ce = train_mod.F.cross_entropy
    calls = {"n": 0}

    def poisoned(*a, **k):
        calls["n"] += 1
        out = real_ce(*a, **k)
        return out * float("nan") if calls["n"] == 3 else out

    monkeypatch.setattr(train_mod.F, "cross_entropy", poisoned)
    cfg = good.train_config.__class__(**{**good.train_config.__dict__, "epochs": 2})
    t = Trainer(good.model_config, cfg, load_corpus(cfg, vocab=good.vocab), resume=good, log=lambda *_: None)
    with pytest.raises(CharlmError, match=r"NaN or infinite at step \d+ \(epoch 2\).*last good checkpoint") as e:
        t.fit()
    assert e.value.exit_code == 1
    kept = ckpt_io.load(tmp_path / "run", prefer="last")
    assert kept.trainer["epoch"] == 1
    assert all(torch.isfinite(w).all() for w in kept.weights.values())


def test_a_nan_validation_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    train_tiny(tmp_path, epochs=1)
    before = (tmp_path / "run" / "last" / ckpt_io.META_FILE).read_bytes()
    monkeypatch.setattr(train_mod, "evaluate", lambda *a, **k: (float("nan"), 1))
    good = ckpt_io.load(tmp_path / "run", prefer="last")
    cfg = dataclasses.replace(good.train_config, epochs=2)
    t = Trainer(good.model_config, cfg, load_corpus(cfg, vocab=good.vocab), resume=good, log=lambda *_: None)
    with pytest.raises(CharlmError, match=r"the validation loss is NaN or infinite at epoch 2: training diverged; stopped, "
                                          r"the last good checkpoint is .*last") as e:
        t.fit()
    assert e.value.exit_code == 1
    assert (tmp_path / "run" / "last" / ckpt_io.META_FILE).read_bytes() == before


def test_cosine_schedule_reaches_min_lr(tmp_path):
    train_tiny(tmp_path, epochs=3, schedule="cosine", lr=1e-2, min_lr=1e-4)
    recs = _metrics(tmp_path / "run")
    assert recs[0]["lr"] > recs[1]["lr"] > recs[2]["lr"] == pytest.approx(1e-4)


def test_plateau_schedule_lowers_the_rate(tmp_path, monkeypatch):
    monkeypatch.setattr(train_mod, "evaluate", lambda *a, **k: (5.0, 10))  # validation never improves
    train_tiny(tmp_path, epochs=4, schedule="plateau", lr=1e-2, plateau_patience=0, plateau_factor=0.5)
    lrs = [r["lr"] for r in _metrics(tmp_path / "run")]
    assert lrs[0] == pytest.approx(1e-2) and lrs[-1] < lrs[0]


def test_an_overflowed_perplexity_is_written_as_null_and_read_back(tmp_path, monkeypatch):
    """A loss that stays finite while its exp overflows (the seed's lr 1e2): metrics.jsonl and checkpoint.json stay JSON
    that any reader takes (null, not Python's Infinity), and a resume has the perplexity, and the plateau's state, back."""
    monkeypatch.setattr(train_mod, "evaluate", lambda *a, **k: (1e4, 10))
    train_tiny(tmp_path, epochs=1, schedule="plateau")

    def strict(text: str):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in a JSON file"))

    run = tmp_path / "run"
    rec = strict((run / "metrics.jsonl").read_text(encoding="utf-8"))
    assert rec["val_loss"] == 1e4 and rec["val_ppl"] is None and rec["train_ppl"] > 1
    for which in ("best", "last"):
        assert strict((run / which / "checkpoint.json").read_text(encoding="utf-8"))["metrics"][0]["val_ppl"] is None
    c = ckpt_io.load(run, prefer="last")
    cfg = dataclasses.replace(c.train_config, epochs=2)
    t = Trainer(c.model_config, cfg, load_corpus(cfg, vocab=c.vocab), resume=c, log=lambda *_: None)
    assert t.metrics[0]["val_ppl"] == math.inf and t.metrics[0]["train_ppl"] == pytest.approx(rec["train_ppl"])
    assert t.plateau.mode_worse == math.inf and t.plateau.best == 1e4
    assert len(t.fit()) == 2


def test_the_training_curve_says_what_the_objective_had_on(tmp_path):
    """curves.png's training label: "dropout on" only with a dropout (the seed preset has none)."""
    cfg = tiny_train_config(tmp_path)
    corpus = load_corpus(cfg)

    def label(cfg=cfg, **kw):
        mcfg = ModelConfig(vocab_size=len(corpus.vocab), embedding_size=16, hidden_size=32, **kw)
        return Trainer(mcfg, cfg, corpus, log=lambda *_: None).curve_label

    assert label() == "training (running mean)"
    assert label(dropout=0.2) == label(embed_dropout=0.1) == label(weight_drop=0.1) == "training (running mean, dropout on)"
    assert label(dataclasses.replace(cfg, label_smoothing=0.1), dropout=0.2) == "training (running mean, dropout on, label smoothing on)"


def test_early_stopping(tmp_path, monkeypatch):
    vals = iter([3.0, 2.0, 2.5, 2.6, 2.7, 2.8])
    monkeypatch.setattr(train_mod, "evaluate", lambda *a, **k: (next(vals), 10))
    logs = []
    train_tiny(tmp_path, epochs=6, early_stop=2, log=logs.append)
    assert len(_metrics(tmp_path / "run")) == 4
    assert any("early stop" in line for line in logs)
    assert ckpt_io.load(tmp_path / "run", prefer="best").trainer["epoch"] == 2


def test_evaluate_is_stateful_over_the_whole_text():
    torch.manual_seed(0)
    m = CharLM(ModelConfig(vocab_size=12, embedding_size=6, hidden_size=6))
    ids = torch.randint(0, 12, (300,))
    a, n = evaluate(m, ids, chunk=7)
    b, _ = evaluate(m, ids, chunk=512)
    assert n == 299 and a == pytest.approx(b, rel=1e-6)


def test_warmup_raises_the_rate_linearly():
    from charlm.train import lr_factor

    from charlm.config import TrainConfig

    c = TrainConfig(warmup_steps=4, schedule="constant")
    assert [lr_factor(c, s, 100) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    c = TrainConfig(warmup_steps=4, schedule="cosine", lr=1e-2, min_lr=0.0)
    assert lr_factor(c, 0, 100) == pytest.approx(0.25 * 1.0, rel=1e-3) and lr_factor(c, 100, 100) == pytest.approx(0.0, abs=1e-9)
    # the warm-up reaches --lr, and the cosine falls from it to --min-lr over the steps after the warm-up (it used to run
    # beneath the warm-up from step 0: half the run's warm-up peaked at 0.54 of --lr)
    c = TrainConfig(warmup_steps=50, schedule="cosine", lr=1e-2, min_lr=1e-3)
    rates = [lr_factor(c, s, 100) for s in range(101)]
    assert rates[:50] == pytest.approx([(s + 1) / 50 for s in range(50)]) and max(rates) == rates[49] == rates[50] == 1.0
    assert rates[75] == pytest.approx(0.1 + 0.9 * 0.5) and rates[100] == pytest.approx(0.1) and rates[50:] == sorted(rates[50:], reverse=True)


def test_evaluate_and_surprisal_refuse_a_chunk_or_rows_that_is_not_a_positive_whole_number():
    import numpy as np

    model = CharLM(ModelConfig(vocab_size=5, embedding_size=4, hidden_size=8))
    ids = torch.tensor([0, 1, 2, 3, 4] * 4)
    assert evaluate(model, ids, chunk=3)[1] == 19 == evaluate(model, ids, chunk=np.int64(3), rows=np.int64(1))[1]
    for chunk in (0, -5, 2.0, True):
        with pytest.raises(ValueError, match="chunk must be a whole number >= 1"):
            evaluate(model, ids, chunk=chunk)
        with pytest.raises(ValueError, match="chunk must be a whole number >= 1"):  # (0 was range()'s bare error)
            surprisal(model, ids, chunk=chunk)
        with pytest.raises(ValueError, match="rows must be a whole number >= 1"):  # (0 was read as 1, silently)
            evaluate(model, ids, rows=chunk)


def test_paths_may_be_given_as_pathlib_paths(tmp_path):
    """data, out and init_from as Path objects are read as their text, which is what the checkpoint keeps."""
    cfg = dataclasses.replace(tiny_train_config(tmp_path, epochs=1), out=tmp_path / "p")
    cfg = dataclasses.replace(cfg, data=Path(cfg.data))
    assert (cfg.data, cfg.out) == (str(tmp_path / "corpus.txt"), str(tmp_path / "p"))
    corpus = load_corpus(cfg)
    Trainer(ModelConfig(vocab_size=len(corpus.vocab), embedding_size=8, hidden_size=16), cfg, corpus, log=None).fit()
    ck = ckpt_io.load(tmp_path / "p" / "best")
    assert ck.train_config.out == str(tmp_path / "p")
    assert dataclasses.replace(cfg, init_from=tmp_path / "p").init_from == str(tmp_path / "p")


def test_eval_every_validates_and_checkpoints_inside_epochs(tmp_path):
    t = train_tiny(tmp_path, epochs=2, eval_every=5)
    m = _metrics(tmp_path / "run")
    steps = [r["step"] for r in m]
    n = t.n_batches
    assert steps == sorted({*range(5, 2 * n + 1, 5), 2 * n})  # every 5 steps, and at the end of training
    assert any(r["epoch"] != int(r["epoch"]) for r in m)  # fractional epochs for validations inside one
    best = min(m, key=lambda r: r["val_loss"])
    c = ckpt_io.load(tmp_path / "run" / "best")
    assert c.trainer["step"] == best["step"]


def test_sample_every_prints_each_epochs_samples_with_eval_every(tmp_path):
    """--sample-every counts epochs whether their ends are validated or not: with --eval-every off an epoch's end, the
    samples of epochs 1 and 2 were never printed, only the last's. Printing them leaves the training as it was."""
    logs = []
    t = train_tiny(tmp_path / "a", epochs=3, eval_every=7, sample_every=1, log=logs.append)
    assert t.n_batches % 7 and sum(line.startswith(" - 分开") for line in logs) == 3, logs  # (no epoch ends on a validation)
    train_tiny(tmp_path / "b", epochs=3, eval_every=7, sample_every=0)
    losses = [[(r["step"], r["train_loss"], r["val_loss"]) for r in _metrics(tmp_path / x / "run")] for x in "ab"]
    assert losses[0] == losses[1]


def test_max_minutes_stops_with_a_validation(tmp_path):
    logs = []
    t = train_tiny(tmp_path, epochs=50, max_minutes=1e-6, log=logs.append)
    m = _metrics(tmp_path / "run")
    assert len(m) == 1 and m[0]["step"] == 1 and m[0]["val_loss"] is not None  # stopped after the first step
    assert t.epoch == 0 and any(line.startswith("time limit: stopped") for line in logs)
    # under a minute in seconds: "0.0 minutes (--max-minutes 1e-06)" said nothing
    assert any(line.endswith(" seconds of training (--max-minutes 1e-06)") for line in logs), logs
    assert ckpt_io.load(tmp_path / "run", prefer="last").trainer["step"] == 1
    logs = []  # a cosine schedule spread over the epochs, cut off by the minutes: said (it never fell, unsaid)
    t = train_tiny(tmp_path / "cos", epochs=50, max_minutes=1e-6, schedule="cosine", log=logs.append)
    assert any(line.endswith(f"; the cosine schedule, spread over --epochs 50 ({t.total_steps:,} steps), was 0% through "
                             f"(lr {t.metrics[-1]['lr']:.2e}): fewer --epochs let it fall within the time") for line in logs), logs


def test_dynamic_evaluation_adapts_to_what_it_read_and_leaves_the_model_alone():
    from charlm.train import evaluate_dynamic

    torch.manual_seed(0)
    m = CharLM(ModelConfig(vocab_size=30, embedding_size=16, hidden_size=32))
    before = {k: v.clone() for k, v in m.state_dict().items()}
    line = torch.randint(0, 30, (40,))
    ids = line.repeat(20)  # a random line, 20 times: what was read predicts what comes
    static, n = evaluate(m, ids)
    tiny, n2 = evaluate_dynamic(m, ids, lr=1e-9)
    adapted, _ = evaluate_dynamic(m, ids, lr=10.0)
    assert n == n2 == ids.numel() - 1
    assert tiny == pytest.approx(static, rel=1e-5)  # no step: the static figure
    assert adapted < 0.8 * static
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in before.items())  # scored on a copy


def test_a_run_stopped_by_the_time_limit_resumes_with_more_time(tmp_path):
    import dataclasses

    train_tiny(tmp_path, epochs=2, max_minutes=1e-6)
    c = ckpt_io.load(tmp_path / "run", prefer="last")
    assert c.trainer["step"] == 1 and c.trainer["train_seconds"] > 0
    cfg = dataclasses.replace(c.train_config, max_minutes=0.0)  # what `--resume --max-minutes 0` does
    t = Trainer(c.model_config, cfg, load_corpus(cfg, vocab=c.vocab), resume=c, log=lambda *_: None)
    m = t.fit()
    assert t.epoch == 2 and m[-1]["step"] == 2 * t.n_batches and m[-1]["train_seconds"] > c.trainer["train_seconds"]
    # the same checkpoint read for its model alone cannot resume, and says how to read it so that it can
    lean = ckpt_io.load(tmp_path / "run", prefer="last", with_trainer=False)
    with pytest.raises(CharlmError, match=r"loaded without its training state .*charlm\.load\(path\) \(charlm\.checkpoint\.load\)"):
        Trainer(lean.model_config, cfg, load_corpus(cfg, vocab=lean.vocab), resume=lean, log=None)


# --- used as a library ---------------------------------------------------------------------------


def test_a_corpus_given_as_a_string_is_recorded_as_such(tmp_path, capsys):
    from charlm.cli import main
    from charlm.data import IN_MEMORY, corpus_from_text

    cfg = tiny_train_config(tmp_path, epochs=1)
    cfg = dataclasses.replace(cfg, data="")  # the default, which names the bundled lyrics
    corpus = corpus_from_text("the cat sat on the mat\n" * 80, cfg)
    Trainer(ModelConfig(vocab_size=len(corpus.vocab), embedding_size=8, hidden_size=8), cfg, corpus, log=lambda *_: None).fit()
    assert ckpt_io.load(tmp_path / "run").train_config.data == IN_MEMORY  # not "": the lyrics were never read
    assert main(["train", "--resume", str(tmp_path / "run"), "--epochs", "2"]) == 2
    assert "trained on a text given in memory" in capsys.readouterr().err
    # a Corpus made by hand under the default data is checked against the bundled text
    hand = dataclasses.replace(corpus, source=None)
    t = Trainer(ModelConfig(vocab_size=len(corpus.vocab), embedding_size=8, hidden_size=8),
                dataclasses.replace(cfg, out=str(tmp_path / "b")), hand, log=lambda *_: None)
    assert t.cfg.data == IN_MEMORY
    # a corpus read from a file is recorded as that file, whatever the config given to the Trainer says
    f = tmp_path / "other.txt"
    f.write_text("the cat sat on the mat\n" * 80, encoding="utf-8")
    read = load_corpus(dataclasses.replace(cfg, data=str(f)))
    t = Trainer(ModelConfig(vocab_size=len(read.vocab), embedding_size=8, hidden_size=8),
                dataclasses.replace(cfg, out=str(tmp_path / "c")), read, log=lambda *_: None)
    assert t.cfg.data == str(f)


def test_library_misuse_is_a_clear_error(tmp_path):
    cfg = tiny_train_config(tmp_path, epochs=1)
    corpus = load_corpus(cfg)
    with pytest.raises(ValueError, match="vocab_size is 50, the corpus's vocabulary has"):
        Trainer(ModelConfig(vocab_size=50, embedding_size=8, hidden_size=8), cfg, corpus)
    short = dataclasses.replace(corpus, vocab=type(corpus.vocab)(corpus.vocab.itos[:-1]))
    with pytest.raises(CharlmError, match="a character its vocabulary lacks"):
        Trainer(ModelConfig(vocab_size=len(short.vocab), embedding_size=8, hidden_size=8), cfg, short)
    mcfg = ModelConfig(vocab_size=len(corpus.vocab), embedding_size=8, hidden_size=8)
    Trainer(mcfg, cfg, corpus, log=lambda *_: None).fit()
    with pytest.raises(CharlmError, match="already holds a training run"):  # a second model into the same out
        Trainer(mcfg, cfg, corpus)
    again = Trainer(dataclasses.replace(mcfg, hidden_size=16, embedding_size=16), cfg, corpus, log=lambda *_: None, overwrite=True)
    again.fit()
    assert ckpt_io.load(tmp_path / "run").model_config.hidden_size == 16


def test_fit_leaves_no_global_side_effects_and_goes_on_after_an_interruption(tmp_path, monkeypatch):
    import matplotlib

    backend, threads = matplotlib.get_backend(), torch.get_num_threads()
    cfg = tiny_train_config(tmp_path, epochs=2)
    corpus = load_corpus(cfg)
    t = Trainer(ModelConfig(vocab_size=len(corpus.vocab), embedding_size=8, hidden_size=8), cfg, corpus, log=lambda *_: None)
    real, calls = t._train_step, []

    def ctrl_c_once(model):  # Ctrl-C during the first batch
        if not calls:
            t._on_signal(signal.SIGINT, None)
        calls.append(1)
        return real(model)

    t._train_step = ctrl_c_once
    with pytest.raises(TrainingInterrupted):
        t.fit()
    stopped_at = t.step
    metrics = t.fit()  # called again: it goes on (it used to stop again after one batch, every time)
    assert t.epoch == 2 and t.step > stopped_at + 1 and [m["epoch"] for m in metrics] == [1, 2]
    train_mod.plot_metrics(metrics, tmp_path / "c.png")
    assert matplotlib.get_backend() == backend and torch.get_num_threads() == threads


def test_evaluate_takes_a_list_of_ids(tiny_ckpt):
    from charlm.checkpoint import load_model

    model, vocab, _ = load_model(tiny_ckpt)
    ids = vocab.encode("分开的时候我说不分开\n")
    assert evaluate(model, ids) == evaluate(model, torch.tensor(ids))


def test_samples_without_a_usable_prefix_begin_as_generate_does(tmp_path):
    """No prefix the vocabulary knows: a newline model's samples begin a line, a --newlines space model's begin after a
    space (they began with the corpus's first character, against the note's "start a line")."""
    for newlines, words, prefix in (("keep", "begin a line", ""), ("space", "begin after a space", "")):
        cfg = tiny_train_config(tmp_path / newlines, newlines=newlines, prefixes=("Hello",))
        corpus = load_corpus(cfg)
        t = Trainer(ModelConfig(vocab_size=len(corpus.vocab), embedding_size=16, hidden_size=32), cfg, corpus, log=lambda *_: None)
        assert t.sample_starts() == ([(0, prefix)], words)
        assert f"'Hello': the vocabulary lacks 'H' 'e' 'l' 'o'; they {words} instead" in train_mod.describe(t)
    cfg = tiny_train_config(tmp_path / "both", prefixes=("Hello", "分开", "不分开"))
    corpus = load_corpus(cfg)
    t = Trainer(ModelConfig(vocab_size=len(corpus.vocab), embedding_size=16, hidden_size=32), cfg, corpus, log=lambda *_: None)
    assert t.sample_starts() == ([(1, "分开"), (2, "不分开")], "")


def test_scoring_from_python_checks_its_ids_and_gives_per_character_bits(tiny_ckpt):
    """evaluate/surprisal: ids out of the vocabulary, a 2-D or float tensor are CharlmErrors (torch's IndexError, or a
    (2, 3) tensor read as one 6-character stream, before); surprisal reads in eval mode, agrees with evaluate, and is
    empty for fewer than two characters."""
    from charlm.checkpoint import load_model
    from charlm.train import surprisal

    model, vocab, _ = load_model(tiny_ckpt)
    ids = vocab.encode("分开的时候我说不分开\n你说我们还会再见\n")
    for bad, message in (([1, 2, 99999], "ids must be from 0 to"), (torch.zeros(2, 3, dtype=torch.long), "1-D integer tensor"),
                         (torch.zeros(4), "1-D integer tensor"), (["a"], "sequence of whole numbers"),
                         ([1.5, 2.7, 3.2], "1-D integer tensor"), ([True, False], "1-D integer tensor")):  # not cut to 1, 2, 3
        for fn in (evaluate, surprisal):
            with pytest.raises(CharlmError, match=message):
                fn(model, bad)
    model.train()  # training mode: surprisal must leave it so (that it reads without dropout: the test below)
    bits = surprisal(model, ids)
    assert model.training and torch.equal(bits, surprisal(model, ids)) and bits.shape == (len(ids) - 1,)
    loss, n = evaluate(model, ids)
    assert n == len(ids) - 1 and float(bits.mean()) * math.log(2) == pytest.approx(loss, rel=1e-6)
    assert surprisal(model, ids[:1]).shape == (0,) and surprisal(model, []).shape == (0,)


def test_scoring_reads_without_dropout_and_carries_the_state_across_chunks():
    """evaluate and surprisal switch dropout off themselves (the trainer validates a model in training mode), and the
    hidden state runs on from chunk to chunk: a text scored in chunks of 7 characters gets the figures of one chunk
    (surprisal's state was once dropped at each chunk: /v1/score reads up to 20,000 characters, 512 at a time)."""
    torch.manual_seed(0)
    m = CharLM(ModelConfig(vocab_size=30, embedding_size=16, hidden_size=32, dropout=0.5, embed_dropout=0.2, weight_drop=0.3))
    ids = torch.randint(0, 30, (12,)).repeat(8)  # a line repeated: what was read before a chunk predicts what is in it
    m.eval()
    loss, n = evaluate(m, ids)
    bits = surprisal(m, ids)
    m.train()
    assert evaluate(m, ids) == (loss, n) and torch.equal(surprisal(m, ids), bits) and m.training
    assert evaluate(m, ids, chunk=7)[0] == pytest.approx(loss, rel=1e-5)
    assert torch.allclose(surprisal(m, ids, chunk=7), bits, rtol=1e-4, atol=1e-5)
    assert float(bits.mean()) * math.log(2) == pytest.approx(loss, rel=1e-5)


def test_dynamic_evaluation_clips_its_updates():
    """--grad-clip bounds each adaptive step: a huge rate clipped to a tiny norm leaves the static figure."""
    from charlm.train import evaluate_dynamic

    torch.manual_seed(0)
    m = CharLM(ModelConfig(vocab_size=30, embedding_size=16, hidden_size=32))
    ids = torch.randint(0, 30, (40,)).repeat(10)
    static, _ = evaluate(m, ids)
    assert evaluate_dynamic(m, ids, lr=10.0, grad_clip=1e-9)[0] == pytest.approx(static, rel=1e-5)
    assert evaluate_dynamic(m, ids, lr=10.0, grad_clip=0.0)[0] < 0.8 * static  # unclipped, the same rate adapts


def test_a_python_trainer_holds_its_folder_as_charlm_train_does(tmp_path, capsys, monkeypatch):
    """A folder another training is writing is refused (a Python Trainer with overwrite=True replaced it); the lock is
    let go when fit() ends; an out that is a file, or cannot be made, is a CharlmError; log=None is silent, its
    progress lines too."""
    import fcntl
    import os

    import charlm.progress

    monkeypatch.setattr(charlm.progress, "PLAIN_EVERY_S", 0)  # a progress line after every batch, were there any

    cfg = tiny_train_config(tmp_path, epochs=1)
    corpus = load_corpus(cfg)
    mcfg = ModelConfig(vocab_size=len(corpus.vocab), embedding_size=16, hidden_size=32)
    out = tmp_path / "run"
    out.mkdir()
    fd = os.open(out, os.O_RDONLY)  # what a running `charlm train` holds
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        with pytest.raises(CharlmError, match="is in use by another `charlm train`"):
            Trainer(mcfg, cfg, corpus, log=None, overwrite=True).fit()
    finally:
        os.close(fd)
    assert list(out.iterdir()) == []
    Trainer(mcfg, cfg, corpus, log=None, overwrite=True).fit()
    assert not ckpt_io.in_use(out) and (out / "best").is_dir()  # let go at the end
    assert capsys.readouterr() == ("", "")  # log=None: nothing printed, nor any progress
    (tmp_path / "afile").write_text("x")
    with pytest.raises(CharlmError, match="is a file"):
        Trainer(mcfg, dataclasses.replace(cfg, out=str(tmp_path / "afile")), corpus, log=None).fit()
    train_mod.plot_metrics([{"epoch": 1, "train_ppl": 9.0, "val_ppl": None}], str(tmp_path / "c.png"))  # a str path
    assert (tmp_path / "c.png").stat().st_size > 0


@pytest.mark.parametrize("metrics", [
    [{"epoch": 1, "train_ppl": 395.0, "val_ppl": 301.0}],  # one validation (one epoch, or a --max-minutes stop in the first)
    [{"epoch": e, "train_ppl": 400.0 - 40 * e, "val_ppl": 300.0 - 20 * e} for e in range(1, 5)],
    [{"epoch": e / 4, "train_ppl": 3.5 + 9 / e, "val_ppl": 4.2 + 8 / e} for e in range(1, 60)],  # validations within epochs
    [{"epoch": e, "train_ppl": 2583.0 / e, "val_ppl": float("inf") if e == 1 else 2000.0 / e} for e in range(1, 17)],
    [{"epoch": e, "train_ppl": 79 + 0.1 * e, "val_ppl": 79.3 + 0.05 * e} for e in range(1, 6)],  # a narrow range: 79.2, 79.4
    [{"epoch": e, "train_ppl": 1.0 + 0.01 * e, "val_ppl": 1.02 + 0.005 * e} for e in range(1, 6)],  # near 1
    [{"epoch": 0.5, "train_ppl": 395.0, "val_ppl": 301.0}],  # one validation half-way through the first epoch
    [{"epoch": e, "train_ppl": v, "val_ppl": 1.1 * v} for e, v in enumerate([3000, 200, 50, 1e12, 1e20], 1)],  # diverging
    [{"epoch": e, "train_ppl": 10.0 ** e, "val_ppl": 2 * 10.0 ** e} for e in range(1, 8)],  # seven decades
    [{"epoch": e, "train_ppl": float("inf") if e != 40 else 300.0, "val_ppl": float("inf") if e != 40 else 350.0}
     for e in range(1, 80)],  # one finite point among many overflowed ones
])
def test_the_curves_show_each_validation_and_read_in_plain_numbers(metrics, tmp_path):
    """Every validation is seen (a lone one was an invisible line of one point) and the perplexity axis has at least
    two labels, none repeated, written as numbers (300, not 3×10²; 1e12 past a million); the legend, above the plot,
    leaves it the figure's width even with the default preset's long training label."""
    import matplotlib.image
    import numpy as np
    from matplotlib.figure import Figure

    seen = {}
    real_savefig = Figure.savefig

    def keep_labels(fig, *a, **kw):
        real_savefig(fig, *a, **kw)  # (drawn: the tick labels are set)
        seen["labels"] = [t.get_text() for t in fig.axes[0].get_yticklabels() if t.get_text()]
        seen["width"] = fig.axes[0].get_position().width

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Figure, "savefig", keep_labels)
        train_mod.plot_metrics(metrics, tmp_path / "c.png", "training (running mean, dropout on, label smoothing on)")
        assert seen["width"] > 0.75, seen["width"]  # (the axes' share of the figure's width)
    labels = seen["labels"]
    assert len(labels) >= 2 and len(set(labels)) == len(labels), labels  # no two ticks with the same label
    assert all(re.fullmatch(r"[0-9][0-9,]*(\.[0-9]+)?|[1-9]e[1-9][0-9]*", s) for s in labels), labels  # 1e7, not 1e07
    pixels = matplotlib.image.imread(tmp_path / "c.png")[..., :3]
    orange = np.abs(pixels - np.array([1.0, 0.498, 0.055])).max(-1) < 0.08  # the validation curve's colour (C1)
    assert orange[pixels.shape[0] // 6 :].sum() > 20  # below the legend (above the plot): the points themselves

def test_the_curves_of_a_run_that_overflowed_are_still_drawn(tmp_path):
    inf = float("inf")
    train_mod.plot_metrics([{"epoch": 1, "train_ppl": inf, "val_ppl": inf}, {"epoch": 2, "train_ppl": None, "val_ppl": None}],
                           tmp_path / "c.png")  # (a diverged run: was a ValueError after training)
    assert (tmp_path / "c.png").stat().st_size > 0


def test_a_trainer_given_the_wrong_things_says_which(tmp_path):
    cfg = tiny_train_config(tmp_path)
    corpus = load_corpus(cfg)
    mcfg = ModelConfig(vocab_size=len(corpus.vocab), embedding_size=16, hidden_size=32)
    with pytest.raises(TypeError, match="model_cfg must be a ModelConfig, got TrainConfig"):
        Trainer(cfg, mcfg, corpus, log=None)
    with pytest.raises(TypeError, match=r"resume must be a Checkpoint \(charlm.load\(path\) reads one\), got str"):
        Trainer(mcfg, cfg, corpus, resume=str(tmp_path / "run"), log=None)
    with pytest.raises(TypeError, match=r"log must be a function that takes a line .* or None, got list"):
        Trainer(mcfg, cfg, corpus, log=[])  # (failed only inside fit())
    for field, value in [("limit_chars", 500), ("newlines", "space"), ("val_fraction", 0.2), ("encoding", "gb18030")]:
        with pytest.raises(CharlmError, match=f"the corpus was read with {field}=.* but cfg has {field}={value!r}: read it with load_corpus"):
            Trainer(mcfg, dataclasses.replace(cfg, **{field: value}), corpus, log=None)  # the checkpoint would say so
    from charlm.data import corpus_from_text

    given = corpus_from_text(corpus.train_text, cfg)  # a text in memory was never decoded: any encoding goes
    Trainer(ModelConfig(vocab_size=len(given.vocab), embedding_size=16, hidden_size=32), dataclasses.replace(cfg, encoding="gb18030"),
            given, log=None)


def test_a_corpus_and_a_checkpoint_show_themselves_in_a_line(tiny_run):
    c = ckpt_io.load(tiny_run)
    corpus = load_corpus(c.train_config, vocab=c.vocab)
    assert len(repr(c)) < 600 and "epoch" in repr(c) and "\n" not in repr(c)
    assert len(repr(corpus)) < 300 and f"{len(corpus.train_text):,} training characters" in repr(corpus)


def test_a_presets_train_config_is_the_one_charlm_train_uses():
    from charlm.presets import PRESETS, train_config

    cfg = train_config("jaychou", epochs=1)
    assert cfg.epochs == 1 and (cfg.optimizer, cfg.lr, cfg.batch_size) == tuple(PRESETS["jaychou"][k] for k in ("optimizer", "lr", "batch_size"))
    with pytest.raises(CharlmError, match="unknown preset 'nope'"):
        train_config("nope")
    with pytest.raises(CharlmError, match="preset 'songci' needs --data"):
        train_config("songci")
    with pytest.raises(TypeError, match="train_config has no field 'epoch'"):  # was dropped silently
        train_config("jaychou", epoch=1)
    with pytest.raises(TypeError, match="'hidden_size' .a model field: give it to model_config_for"):
        train_config("jaychou", hidden_size=64)


def test_numpy_numbers_from_a_sweep_are_taken_as_the_python_ones():
    """np.arange / np.linspace values were refused: "hidden_size must be a whole number, got np.int64(32)"."""
    import numpy as np

    from charlm.config import SampleConfig, TrainConfig

    m = ModelConfig(hidden_size=np.int64(32), dropout=np.float32(0.5), vocab_size=np.int32(10), tie_weights=np.False_)
    assert m.tie_weights is False and ModelConfig(dropout=np.float32(0.1)).dropout == 0.1  # (not 0.10000000149011612)
    t = TrainConfig(batch_size=np.int32(4), lr=np.float64(1e-3), epochs=np.uint8(2))
    s = SampleConfig(temperature=np.float64(0.5), length=np.int64(7))
    assert (m.hidden_size, m.dropout, t.batch_size, t.lr, t.epochs, s.temperature, s.length) == (32, 0.5, 4, 1e-3, 2, 0.5, 7)
    assert all(type(getattr(c, f)) in (int, float) for c, f in ((m, "hidden_size"), (m, "dropout"), (t, "lr"), (s, "length")))
    json.dumps([dataclasses.asdict(c) for c in (m, t, s)])  # as a checkpoint writes them
    with pytest.raises(ValueError, match=r"hidden_size must be a whole number, got np.float64\(32.5\)"):
        ModelConfig(hidden_size=np.float64(32.5))


@pytest.mark.parametrize("epochs", [1, 2])
def test_a_signal_while_samples_are_written_stops_them_at_once(tmp_path, epochs):
    """Ctrl-C or SIGTERM during the samples an epoch ends with: no waiting for a long sample, and no exit as if finished."""
    cfg = tiny_train_config(tmp_path, epochs=epochs, sample_every=1, sample_length=20_000)  # seconds of writing, if not stopped
    corpus = load_corpus(cfg)
    lines = []

    def log(line):
        lines.append(line)
        if line.startswith("epoch 1/"):  # the epoch's line comes just before its samples
            trainer._signal = signal.SIGTERM

    trainer = Trainer(ModelConfig(vocab_size=len(corpus.vocab), embedding_size=16, hidden_size=32), cfg, corpus, log=log)
    with pytest.raises(TrainingInterrupted) as e:
        trainer.fit()
    assert e.value.signum == signal.SIGTERM and e.value.finished == ("epochs" if epochs == 1 else "")
    assert [line for line in lines if line.startswith(" - ")] == [" - 分开 …"]  # cut as its first step wrote the prefix
    c = ckpt_io.load(tmp_path / "run", prefer="last")
    assert c.trainer["epoch"] == 1 and c.trainer["batch"] == 0


def test_a_signal_during_the_samples_of_an_epoch_end_not_validated_stops_there_with_last_written(tmp_path):
    """With --eval-every off an epoch's end, its samples are printed unvalidated: a signal that cuts them short stops
    the run there, last/ written at the epoch's end (as after a validation), not one batch later."""
    cfg = tiny_train_config(tmp_path, epochs=3, eval_every=7, sample_every=1, sample_length=20_000)
    corpus = load_corpus(cfg)
    trainer = Trainer(ModelConfig(vocab_size=len(corpus.vocab), embedding_size=16, hidden_size=32), cfg, corpus, log=lambda *_: None)
    assert trainer.n_batches % 7  # (no epoch ends on a validation)
    printing = trainer.print_samples

    def interrupted():
        trainer._signal = signal.SIGTERM  # (arrives as the samples are written)
        printing()

    trainer.print_samples = interrupted
    with pytest.raises(TrainingInterrupted) as e:
        trainer.fit()
    assert e.value.signum == signal.SIGTERM
    c = ckpt_io.load(tmp_path / "run", prefer="last")
    assert c.trainer["epoch"] == 1 and c.trainer["batch"] == 0 and c.trainer["step"] == trainer.n_batches


def test_without_a_held_out_part_early_stop_and_a_lost_best_name_last(tmp_path):
    """--val-fraction 0: best/ is the last checkpoint, so the early stop names last/ (it named best/ as if it held the
    lowest training loss), and a resume that finds no best/ says it is the last checkpoint."""
    import shutil

    lines = []
    t = train_tiny(tmp_path, model_kw=dict(tie_weights=False), epochs=8, val_fraction=0.0, lr=1.0, grad_clip=0.0,
                   schedule="constant", early_stop=1, log=lines.append)
    stop = [line for line in lines if line.startswith("early stop")]
    assert t.epoch < 8 and stop and stop[0].endswith(f"last checkpoint: {tmp_path / 'run' / 'last'} (best/ is the same: nothing is held out)")
    shutil.rmtree(tmp_path / "run" / "best")
    c = ckpt_io.load(tmp_path / "run", prefer="last")
    cfg = dataclasses.replace(c.train_config, epochs=t.epoch + 1, early_stop=0)
    lines.clear()
    Trainer(c.model_config, cfg, load_corpus(cfg, vocab=c.vocab), resume=c, log=lines.append).fit()
    assert any(line.endswith("best/ is the last checkpoint (nothing is held out), written now") for line in lines), lines
    assert ckpt_io.load(tmp_path / "run" / "best").trainer["step"] == ckpt_io.load(tmp_path / "run" / "last").trainer["step"]


def test_a_warm_up_longer_than_the_run_ends_at_the_floor_and_an_older_warm_up_run_is_noted_on_resume(tmp_path):
    """Warm-up longer than a cosine run, resumed with more epochs: its rate rose on to --lr, then fell 100x in a step
    (the cosine is the first run's: past it, the floor). A warm-up run from before the schedule changed gets a note."""
    from charlm.config import TrainConfig
    from charlm.train import lr_factor

    c = TrainConfig(warmup_steps=100, schedule="cosine", lr=1e-2, min_lr=1e-4)
    assert [lr_factor(c, s, 50) for s in (48, 49, 50, 99, 100, 101)] == pytest.approx([0.49, 0.5, 0.01, 0.01, 0.01, 0.01])
    c = TrainConfig(warmup_steps=100, schedule="constant")  # (a constant rate's warm-up goes on over added epochs)
    assert [lr_factor(c, s, 50) for s in (49, 99, 100)] == [0.5, 1.0, 1.0]
    train_tiny(tmp_path, epochs=1, schedule="cosine", warmup_steps=5, min_lr=1e-4)
    meta = tmp_path / "run" / "last" / "checkpoint.json"
    d = json.loads(meta.read_text())
    del d["trainer"]["warmup_then_cosine"]
    d["trainer"]["schedule_steps"] *= 4  # (as if started with more epochs, and stopped early in them)
    meta.write_text(json.dumps(d))
    c = ckpt_io.load(tmp_path / "run", prefer="last")
    lines = []
    cfg = dataclasses.replace(c.train_config, epochs=2)
    Trainer(c.model_config, cfg, load_corpus(cfg, vocab=c.vocab), resume=c, log=lines.append)
    assert any(line.startswith("note: this run began before 2026-12-02, when the cosine ran beneath the warm-up") for line in lines)


def test_a_checkpoint_of_a_seed_above_2_to_the_32_still_loads_as_the_seed_the_generator_read(tmp_path):
    """Seeds went up to 2**63 - 1 before 2026-12-02: such a checkpoint is read with the low 32 bits the CPU's generator
    took (the same run), not refused as damaged."""
    train_tiny(tmp_path, epochs=1)
    meta = tmp_path / "run" / "best" / "checkpoint.json"
    d = json.loads(meta.read_text())
    d["train_config"]["seed"] = 2**40 + 7
    meta.write_text(json.dumps(d))
    assert ckpt_io.load(tmp_path / "run" / "best").train_config.seed == 7


def test_help_on_a_config_shows_each_fields_meaning():
    """help(ModelConfig) showed a one-line docstring: the meanings were only in the fields' metadata (and --help)."""
    from charlm.config import SampleConfig, TrainConfig

    for cls in (ModelConfig, TrainConfig, SampleConfig):
        for f in dataclasses.fields(cls):
            assert f"\n    {f.name} = {f.default!r}: {f.metadata['help']}" in cls.__doc__, f.name
    assert "\n    prefixes = ('分开', '不分开'): prefixes to sample from" in TrainConfig.__doc__


def test_a_python_callers_log_gets_the_notes_charlm_train_starts_with(tmp_path, capsys):
    """A Trainer's log showed a prefix left out of the samples, or a warm-up longer than the run, nowhere: only the
    command printed describe()'s notes.  fit() logs them, once, and the command prints them through it."""
    lines = []
    trainer = train_tiny(tmp_path, log=lines.append, epochs=1, prefixes=("分开", "Zq"), warmup_steps=10_000)
    assert lines[0].startswith("corpus: ") and lines[2].startswith("settings: ")
    assert any("the samples leave out --prefixes 'Zq'" in line for line in lines[:6])
    assert any("--warmup-steps 10000 is longer than the whole run" in line for line in lines[:6])
    before = len(lines)
    trainer.fit()  # again (as after a Ctrl-C): not described again
    assert lines[before:] == [] and sum(line.startswith("corpus: ") for line in lines) == 1
    from charlm.cli import main

    corpus = tmp_path / "corpus.txt"
    assert main(["train", "--data", str(corpus), "--out", str(tmp_path / "cli"), "--epochs", "1", "--hidden-size", "16",
                 "--embedding-size", "16", "--copy-window", "0", "--batch-size", "4", "--num-steps", "16"]) == 0
    out = capsys.readouterr().out
    assert out.count("\ncorpus: ") + out.startswith("corpus: ") == 1 and out.index("corpus: ") < out.index("epoch 1/1")


def test_a_signal_ignored_on_purpose_stays_ignored_while_training(tmp_path):
    """nohup, or `&` in a script (Ctrl-C of the terminal is not for it): the run leaves SIGINT as it found it."""
    cfg = tiny_train_config(tmp_path, epochs=1)
    corpus = load_corpus(cfg)
    seen = []
    trainer = Trainer(ModelConfig(vocab_size=len(corpus.vocab), embedding_size=16, hidden_size=32), cfg, corpus,
                      log=lambda line: seen.append((line, signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))))
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        trainer.fit()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, old)
    described = train_mod.describe(trainer).split("\n")  # (logged as fit() starts, before its handlers)
    assert [line for line, *_ in seen[:len(described)]] == described
    seen = seen[len(described):]
    assert seen and all(i is signal.SIG_IGN and t == trainer._on_signal for _, i, t in seen)  # SIGTERM still stops it cleanly


def test_a_run_starts_by_saying_its_settings_and_how_much_of_a_small_text_it_learns_from(tmp_path, monkeypatch):
    """A preset's regularisation was applied unseen (--dropout 0 still had weight-drop and label smoothing on), and a
    2,000-character text trained on 57% of it without a word."""
    cfg = tiny_train_config(tmp_path / "a", label_smoothing=0.02, weight_decay=0.1, optimizer="adamw", schedule="cosine",
                            min_lr=1e-4, early_stop=4)
    corpus = load_corpus(cfg)
    mcfg = ModelConfig(vocab_size=len(corpus.vocab), embedding_size=32, hidden_size=32, dropout=0.0, weight_drop=0.3,
                       copy_window=0, tie_weights=True)
    said = train_mod.describe(Trainer(mcfg, cfg, corpus, log=None)).splitlines()
    assert said[2] == ("settings: weight-drop 0.3, label smoothing 0.02; adamw lr 0.01, cosine to 0.0001, weight decay 0.1, "
                       "gradient clip 1; tied input and output weights; early stop after 4 validations without a better loss; "
                       "losses in nats per character")
    assert not any("never learned from" in line for line in said)  # (4 rows of 16: little is left out of its text)
    cfg = tiny_train_config(tmp_path / "b", batch_size=16, num_steps=64)
    t = Trainer(dataclasses.replace(mcfg, weight_drop=0.0), cfg, load_corpus(cfg), log=None)
    n, targets = t.train_ids.numel() - 1, t.n_batches * 16 * 64
    assert targets < 0.8 * n
    assert f"{t.n_batches} batch of 16x64 takes {targets:,} of the {n:,} training characters as targets ({targets / n:.0%})" in train_mod.describe(t)
    assert "settings: no dropout; adam lr 0.01, gradient clip 1;" in train_mod.describe(t) and "--eval-every N" not in train_mod.describe(t)
    monkeypatch.setattr(train_mod, "LONG_EPOCH", t.n_batches)  # (a big text's epoch: 39,213 batches before a checkpoint)
    assert f"note: an epoch is {t.n_batches:,} batches, validated and checkpointed only at its end: --eval-every N" in train_mod.describe(t)



def test_a_long_validation_is_foreseen_at_the_start(tmp_path, monkeypatch):
    """(3.9M held-out characters of a big text, with the copy attention: about 27 minutes a validation, said only after
    the first one, well past a --max-minutes 5)"""
    cfg = tiny_train_config(tmp_path)
    corpus = load_corpus(cfg)
    t = Trainer(ModelConfig(vocab_size=len(corpus.vocab), embedding_size=16, hidden_size=16), cfg, corpus, log=None)
    n = t.val_ids.numel()
    assert train_mod.validation_seconds(t) == 0 and "held-out characters one after another" not in train_mod.describe(t)
    monkeypatch.setattr(train_mod, "LONG_VALIDATION", n)  # as long as a big text's
    secs = train_mod.validation_seconds(t, chunks=2)
    assert 0 < secs < 60
    assert "held-out characters one after another" not in train_mod.describe(t)  # (not worth a note)
    monkeypatch.setattr(train_mod, "LONG_VALIDATION_SECONDS", 0.0)
    said = train_mod.describe(t)
    assert re.search(rf"note: a validation reads the {n:,} held-out characters one after another: about \d+ seconds here, "
                     rf"at each epoch's end, not counted in --max-minutes; --val-fraction {cfg.val_fraction:g} holds out about", said)

def test_a_validation_that_takes_longer_than_the_training_before_it_is_timed_and_noted_once(tmp_path, monkeypatch):
    """(a big text's 10% held out, validated every 200 steps: 4 s of training to each 56 s of validation, unsaid)"""
    import time

    real = Trainer._val_loss

    def slow(self):
        time.sleep(0.3)
        return real(self)

    monkeypatch.setattr(Trainer, "_val_loss", slow)
    monkeypatch.setattr(Trainer, "SLOW_VALIDATION", 0.0)
    real_add = Trainer._add_time  # the training's time counted as 1 ms a stretch, however slow a loaded machine is
    monkeypatch.setattr(Trainer, "_add_time", lambda self, seconds: real_add(self, 0.001))  # (CI: training outlasted 0.3 s)
    said = []
    t = train_tiny(tmp_path, log=said.append, epochs=2, sample_every=0)
    assert all(m["val_seconds"] >= 0.3 for m in t.metrics)
    notes = [line for line in said if line.startswith("note: this validation took")]
    assert len(notes) == 1 and "s of training since the last one (not counted in --max-minutes); a smaller --val-fraction leaves" in notes[0]


@pytest.mark.parametrize("kw, message", [
    ({"device": "gpu"}, "device must be auto, cpu, cuda or cuda:N, got 'gpu'"),
    ({"device": "cuda:x"}, "device must be auto, cpu, cuda or cuda:N, got 'cuda:x'"),
    ({"encoding": "base64"}, "encoding: 'base64' is not an encoding of text"),
])
def test_a_train_config_refuses_a_device_or_encoding_that_cannot_work_when_made(kw, message):
    """Not at the first read of the text, or when the model is placed: TrainConfig(device="gpu") was accepted."""
    from charlm.config import TrainConfig

    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        TrainConfig(**kw)
    assert TrainConfig(device="cuda:1", encoding="utf-16").device == "cuda:1"  # named well: checked when placed or read
    # a name this machine does not know may be another's (mbcs: Windows): a checkpoint trained there still loads here
    assert TrainConfig(encoding="mbcs").encoding == "mbcs"


def test_a_resume_into_another_folder_brings_the_runs_best_along(tmp_path, capsys):
    """best/ was left behind: the new folder had last/ alone, though every line said "saved as best/", and generate read
    last/.  A best/ that is not there at all is said."""
    train_tiny(tmp_path, epochs=2)
    run = tmp_path / "run"
    src = ckpt_io.load(run, prefer="last")
    cfg = dataclasses.replace(src.train_config, epochs=3, out=str(tmp_path / "moved"))
    lines = []

    def log(line):
        lines.append(line)
        trainer._signal = signal.SIGTERM  # stop at the first batch: best/ is what was carried, not a new one

    trainer = Trainer(src.model_config, cfg, load_corpus(cfg), resume=src, log=log)
    with pytest.raises(TrainingInterrupted):
        trainer.fit()
    moved = ckpt_io.load(tmp_path / "moved" / "best")
    assert moved.metrics == ckpt_io.load(run / "best").metrics and moved.weights.keys() == src.weights.keys()
    assert all(torch.equal(moved.weights[k], ckpt_io.load(run / "best").weights[k]) for k in moved.weights)
    assert not [line for line in lines if "no best/" in line]
    import shutil

    # best/ gone, resumed at a validation (last/ of the finished epoch 2): best/ is that state at once, and it stays
    # so though every later validation is worse (one was written only below the old lowest, so never)
    shutil.rmtree(run / "best")
    lines.clear()
    row2 = ckpt_io.load(run, prefer="last").metrics[-1]
    trainer = Trainer(src.model_config, dataclasses.replace(cfg, out=str(run)), load_corpus(cfg), resume=src, log=lines.append)
    trainer._val_loss = lambda: 50.0
    trainer.fit()
    assert any(line.startswith(f"note: {run / 'best'} holds no best/ this resume can use") and "best/ is now the state resumed"
               in line for line in lines), lines
    best = ckpt_io.load(run / "best")
    assert best.metrics[-1] == row2 and trainer.best_from_row == 1 and trainer._lowest_so_far() == row2["val_loss"]
    note = next(line for line in lines if "holds no best/ this resume can use" in line)
    lowest = min(m["val_loss"] for m in best.metrics)  # (said lost only when the state resumed was not the lowest)
    assert ("(the lowest before, " in note) == (lowest < row2["val_loss"]), (note, lowest, row2)
    again = Trainer(src.model_config, dataclasses.replace(cfg, out=str(run), epochs=4), load_corpus(cfg),
                    resume=ckpt_io.load(run, prefer="last"), log=lines.append)
    assert again.best_from_row == 1  # kept in the checkpoint: best/ stands for the rows from there
    # best/ gone, resumed part-way into an epoch (moved/last, stopped at its first batch): written at the next validation
    shutil.rmtree(tmp_path / "moved" / "best")
    lines.clear()
    cut = ckpt_io.load(tmp_path / "moved", prefer="last")
    trainer = Trainer(cut.model_config, cut.train_config, load_corpus(cfg), resume=cut, log=lines.append)
    trainer._val_loss = lambda: 50.0
    trainer.fit()
    lowest = min(m["val_loss"] for m in cut.metrics)  # (resumed part-way: the lowest before is lost, and said)
    assert any(f"best/ will hold the lowest validation from here on (the lowest before, {lowest:.4f}, is in no checkpoint now)"
               in line for line in lines), lines
    best = ckpt_io.load(tmp_path / "moved" / "best")
    assert best.metrics[-1]["val_loss"] == 50.0 and best.trainer["step"] == trainer.step and trainer.best_from_row == 2


def test_a_checkpoint_kept_inside_another_runs_folder_resumes_as_into_a_new_folder(tmp_path, capsys):
    """`--resume runA/snap` (a copy of another run's last/) replaced runA's own run without --overwrite."""
    import shutil

    from charlm.cli import main

    train_tiny(tmp_path / "a", epochs=1)
    train_tiny(tmp_path / "b", epochs=1, lr=5e-2)
    shutil.copytree(tmp_path / "b" / "run" / "last", tmp_path / "a" / "run" / "snap")
    before = (tmp_path / "a" / "run" / "metrics.jsonl").read_text()
    assert main(["train", "--resume", str(tmp_path / "a" / "run" / "snap"), "--epochs", "2"]) == 2
    assert "is a checkpoint kept apart from its run (not a run folder's best/ or last/): give --out" in capsys.readouterr().err
    out = ["--out", str(tmp_path / "a" / "run")]  # named, it is still not another run's folder without --overwrite
    assert main(["train", "--resume", str(tmp_path / "a" / "run" / "snap"), "--epochs", "2", *out]) == 2
    assert "already holds a training run" in capsys.readouterr().err
    assert (tmp_path / "a" / "run" / "metrics.jsonl").read_text() == before
    # a copy kept in a folder of other things is not continued there unasked, but where --out says
    shutil.copytree(tmp_path / "b" / "run" / "last", tmp_path / "downloads" / "ck")
    (tmp_path / "downloads" / "notes.txt").write_text("mine")
    assert main(["train", "--resume", str(tmp_path / "downloads" / "ck"), "--epochs", "2"]) == 2
    assert sorted(p.name for p in (tmp_path / "downloads").iterdir()) == ["ck", "notes.txt"]
    assert main(["train", "--resume", str(tmp_path / "downloads" / "ck"), "--epochs", "2", "--out", str(tmp_path / "on")]) == 0
    assert (tmp_path / "on" / "last").is_dir() and sorted(p.name for p in (tmp_path / "downloads").iterdir()) == ["ck", "notes.txt"]
    assert ckpt_io.run_folder(tmp_path / "x" / "last") == tmp_path / "x" and ckpt_io.run_folder(tmp_path / "x" / "snap") is None
    assert ckpt_io.run_folder(tmp_path / "x" / ".best.old-123") == ckpt_io.run_folder(tmp_path / "x" / ".last.tmp-9") == tmp_path / "x"


def test_a_signal_on_an_epochs_last_batch_as_the_time_runs_out_leaves_its_validation_to_the_resume(tmp_path, monkeypatch):
    """The run left alone validates that epoch and stops at the time limit; stopped there, it wrote no pending validation,
    and its resume was refused ("already trained its minutes"): no validation row and no best/, ever."""
    monkeypatch.setattr(Trainer, "_over_time", lambda self, running: self.step >= 1)  # out of time after the first step
    whole = train_tiny(tmp_path / "whole", batch_size=32, num_steps=32, epochs=3, max_minutes=1.0).metrics
    assert len(whole) == 1 and whole[0]["epoch"] == 1
    cfg = tiny_train_config(tmp_path / "cut", batch_size=32, num_steps=32, epochs=3, max_minutes=1.0)
    corpus = load_corpus(cfg)
    model_cfg = ModelConfig(vocab_size=len(corpus.vocab), embedding_size=16, hidden_size=32)

    def log(line):
        if line.startswith("corpus:"):  # before the first batch: it stops after it, the epoch's only one
            trainer._signal = signal.SIGTERM

    trainer = Trainer(model_cfg, cfg, corpus, log=log)
    assert trainer.n_batches == 1
    with pytest.raises(TrainingInterrupted):
        trainer.fit()
    saved = ckpt_io.load(cfg.out, prefer="last")
    assert saved.trainer["pending_validation"] == {"at_epoch_end": True, "over_time": True}
    from charlm.cli import _check_work_left

    _check_work_left(saved, saved.train_config)  # (was: "has already trained its 1 minute")
    again = Trainer(model_cfg, cfg, corpus, resume=saved)
    rows = again.fit()
    keys = ("epoch", "step", "train_loss", "val_loss")
    assert [{k: r[k] for k in keys} for r in rows] == [{k: r[k] for k in keys} for r in whole]
    assert (Path(cfg.out) / "best" / ckpt_io.META_FILE).is_file()


def test_a_cosine_run_resumed_with_fewer_epochs_says_where_its_rate_stops(tmp_path):
    """The cosine falls over the steps the run began with: --epochs 2 of a 3-epoch run ended the rate well above --min-lr,
    unsaid (a time limit said it)."""
    cfg = tiny_train_config(tmp_path, epochs=3, schedule="cosine", min_lr=1e-4)
    corpus = load_corpus(cfg)
    model_cfg = ModelConfig(vocab_size=len(corpus.vocab), embedding_size=16, hidden_size=32)

    def stop_after_epoch_1(line):
        if line.startswith("epoch 1/"):
            trainer._signal = signal.SIGTERM

    trainer = Trainer(model_cfg, cfg, corpus, log=stop_after_epoch_1)
    with pytest.raises(TrainingInterrupted):
        trainer.fit()
    lines = []
    again = Trainer(model_cfg, dataclasses.replace(cfg, epochs=2), corpus, resume=ckpt_io.load(cfg.out, prefer="last"), log=lines.append)
    n = again.n_batches
    rate = cfg.lr * train_mod.lr_factor(cfg, 2 * n, 3 * n)
    assert 1e-4 < rate < cfg.lr / 2  # (above the floor, well below the start: two thirds down the cosine)
    assert (f"note: the cosine schedule falls over the {3 * n:,} steps the run began with; --epochs 2 ends it at step {2 * n:,}, "
            f"with the rate at {rate:.2e}, above --min-lr 0.0001") in lines
    lines.clear()
    Trainer(model_cfg, cfg, corpus, resume=ckpt_io.load(cfg.out, prefer="last"), log=lines.append)  # its own 3: nothing to say
    assert not any("cosine" in line for line in lines)


def test_a_resume_with_overwrite_into_its_own_runs_folder_keeps_that_runs_best_and_a_snapshot_resumes(tmp_path):
    """`--resume run/snap --overwrite` (a copy of run/last kept beside it): clearing the folder took the run's own best/
    with it, then called it missing.  And Trainer(resume=trainer.snapshot()), a checkpoint with no folder, failed."""
    import shutil

    trained = train_tiny(tmp_path, epochs=2)
    run = tmp_path / "run"
    shutil.copytree(run / "last", run / "snap")
    before = ckpt_io.load(run / "best")
    snap = ckpt_io.load(run / "snap")
    lines = []
    trainer = Trainer(snap.model_config, dataclasses.replace(snap.train_config, epochs=3), load_corpus(snap.train_config),
                      resume=snap, log=lines.append, overwrite=True)
    trainer._val_loss = lambda: 50.0  # no better: best/ must be the run's own, carried over the clearing
    trainer.fit()
    assert ckpt_io.load(run / "best").metrics == before.metrics and not [line for line in lines if "no best/" in line]
    again = Trainer(trained.model_cfg, dataclasses.replace(trained.cfg, epochs=3), trained.corpus, resume=trained.snapshot())
    assert again.step == trained.step


def test_a_text_mixing_unicode_forms_is_said_to_at_the_start(tmp_path):
    """é as one code point in some lines and as e + U+0301 in others: two spellings of each accented letter, learned
    apart, without a word. A text in one form, either, gets no note."""
    import unicodedata

    lines = [unicodedata.normalize("NFD" if i % 2 else "NFC", "café crème brûlée au lait, naïve résumé\n") for i in range(80)]
    (tmp_path / "corpus.txt").write_text("".join(lines), encoding="utf-8")
    said = []
    train_tiny(tmp_path, epochs=1, prefixes=(), log=said.append)
    note = [line for line in "\n".join(said).splitlines() if "both Unicode forms" in line]
    assert note and "'é' and 'e' + U+0301" in note[0] and "normalise the text to one form first" in note[0], said
    for form in ("NFC", "NFD"):
        (tmp_path / form).mkdir()
        (tmp_path / form / "corpus.txt").write_text(unicodedata.normalize(form, "".join(lines)), encoding="utf-8")
        said.clear()
        train_tiny(tmp_path / form, epochs=1, prefixes=(), log=said.append)
        assert not any("Unicode forms" in line for line in said)
    # NFC text keeps a combining mark on a letter with no composed form (ẹ́), beside an à it writes composed every time
    (tmp_path / "yo").mkdir()
    yoruba = "Ẹ káàbọ̀. Ọjọ́ dára. Mo fẹ́ lọ sí ilé ìwé. À ń lọ.\n" * 60
    assert unicodedata.is_normalized("NFC", yoruba)
    (tmp_path / "yo" / "corpus.txt").write_text(yoruba, encoding="utf-8")
    said.clear()
    train_tiny(tmp_path / "yo", epochs=1, prefixes=(), log=said.append)
    assert not any("Unicode forms" in line for line in said), said


def test_a_cosine_checkpoint_without_its_schedules_length_resumes_at_the_floor(tmp_path):
    """A checkpoint from before 2026-11-30 has no schedule_steps: its resume with more epochs stretched the cosine over
    them, its rate back up from the floor, where the README says added epochs run at the floor."""
    train_tiny(tmp_path, epochs=1, schedule="cosine", lr=1e-2, min_lr=1e-4)
    meta = tmp_path / "run" / "last" / "checkpoint.json"
    d = json.loads(meta.read_text())
    del d["trainer"]["schedule_steps"]
    meta.write_text(json.dumps(d))
    c = ckpt_io.load(tmp_path / "run", prefer="last")
    cfg = dataclasses.replace(c.train_config, epochs=3)
    t = Trainer(c.model_config, cfg, load_corpus(cfg, vocab=c.vocab), resume=c, log=lambda *_: None)
    t.fit()
    assert [m["lr"] for m in t.metrics[1:]] == pytest.approx([1e-4, 1e-4])
