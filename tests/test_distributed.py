"""Data-parallel training on the CPU with gloo: two processes train exactly as one, resume exactly, and fail clearly.

The two processes are started here as torchrun starts them (WORLD_SIZE, RANK, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT in the environment), running this file as a script; one start
trains every two-process run the tests compare, to keep the file fast on two cores.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch

from charlm import checkpoint as ckpt_io
from charlm import distributed
from charlm import train as train_mod
from charlm.config import ModelConfig, TrainConfig
from charlm.data import load_corpus
from charlm.errors import CharlmError
from charlm.train import Trainer

LINES = "分开的时候我说不分开\n你说我们还会再见\n不分开的是我们的爱\n快乐的日子在心里面\n"
# batch 4 x 16 steps, 644 training characters: rows of 161, 10 batches per epoch, so 2 epochs are 20 steps
BASE = dict(batch_size=4, num_steps=16, limit_chars=644, epochs=2, seed=0, device="cpu", prefixes=("分开",), sample_length=5)
RUNS = {
    # consecutive sampling, SGD at lr 1 and clipping that always clips: the update is the clipped gradient,
    # so a process clipping its own gradient instead of the averaged one would move differently
    "clip": dict(optimizer="sgd", lr=1.0, grad_clip=1e-2),
    "random": dict(sampling="random", lr=1e-2),
    # dropout: only two processes against two processes (each has its own dropout stream)
    "drop": dict(lr=1e-2, epochs=3, dropout=0.3),
}
WORKER_TIMEOUT = 120


def _config(tmp: Path, name: str) -> tuple[ModelConfig, TrainConfig]:
    tmp.mkdir(parents=True, exist_ok=True)
    corpus = tmp / "corpus.txt"
    if not corpus.exists():  # both ranks may get here at once: each writes its own file and puts it in place whole,
        part = corpus.with_name(f"corpus.{os.getpid()}.part")  # so that neither reads the other's half-written one
        part.write_text(LINES * 25, encoding="utf-8")
        os.replace(part, corpus)
    kw = {**BASE, **RUNS[name.split("-")[0]], **({"epochs": 3} if name.endswith("-lost") else {}),  # (-lost: trained on)
          **({"max_minutes": 1e-9} if name.endswith("-tcut") else {})}  # (-tcut: out of time at once)
    dropout = kw.pop("dropout", 0.0)
    cfg = TrainConfig(data=str(corpus), out=str(tmp / name), **kw)
    return ModelConfig(embedding_size=16, hidden_size=32, num_layers=2, dropout=dropout), cfg


def _trainer(tmp: Path, name: str, dist=None, resume=None) -> Trainer:
    mcfg, cfg = _config(tmp, name)
    corpus = load_corpus(cfg, vocab=resume.vocab if resume else None)
    mcfg = ModelConfig(**{**mcfg.__dict__, "vocab_size": len(corpus.vocab)})
    return Trainer(mcfg, cfg, corpus, resume=resume, log=lambda *_: None, dist=dist)


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _close(a: list[dict], b: list[dict], tol: float) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for key in ("train_loss", "val_loss"):
            assert abs(x[key] - y[key]) <= tol, (key, x, y)


def _max_weight_diff(run_a: Path, run_b: Path) -> float:
    a, b = ckpt_io.load(run_a, prefer="last").weights, ckpt_io.load(run_b, prefer="last").weights
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


# --- the processes ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(mode: str, tmp: Path, *args: str) -> list[subprocess.Popen]:
    """Two processes of this file in ``mode``, with the environment torchrun gives its workers."""
    port = str(_free_port())
    procs = []
    for rank in range(2):
        env = {**os.environ, "WORLD_SIZE": "2", "RANK": str(rank), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, __file__, mode, str(tmp), *args], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def _interrupted(tmp: Path, name: str, dist) -> None:
    """Run ``name`` in this process of the job, which a SIGTERM must stop."""
    try:
        _trainer(tmp, name, dist).fit()
    except train_mod.TrainingInterrupted as e:
        assert e.signum == signal.SIGTERM
        return
    raise AssertionError(f"{name}: not interrupted")


def _train_runs(tmp: Path) -> None:
    """Rank r of the two-process runs: every run of RUNS, then "drop" and "clip" stopped by a SIGTERM to rank 1 only."""
    dist = distributed.setup(torch.device("cpu"), timeout=60)
    for name in RUNS:
        _trainer(tmp, name, dist).fit()

    distributed.SIGNAL_POLL_EVERY = 3  # the processes agree on the signal at batch 3 of epoch 2
    real = train_mod.batches

    def rank1_gets_sigterm(*args, **kwargs):
        for i, b in enumerate(real(*args, **kwargs)):
            yield b
            if dist.rank == 1 and args[5] == 1 and i == 0:
                os.kill(os.getpid(), signal.SIGTERM)

    train_mod.batches = rank1_gets_sigterm
    for name in ("drop-cut", "clip-cut"):
        _interrupted(tmp, name, dist)
    train_mod.batches = real
    # out of time, and a SIGTERM to rank 1, at the first epoch's last batch (10, no multiple of the 20 batches between
    # polls): that epoch's validation is saved as due (the time limit was not asked there in a job: a resume was refused)
    distributed.SIGNAL_POLL_EVERY = 20

    def rank1_gets_sigterm_at_the_last_batch(*args, **kwargs):
        for i, b in enumerate(real(*args, **kwargs)):
            if dist.rank == 1 and args[5] == 0 and i == 9:  # (before it: the signal is there as the batch is trained)
                os.kill(os.getpid(), signal.SIGTERM)
            yield b

    train_mod.batches = rank1_gets_sigterm_at_the_last_batch
    _interrupted(tmp, "random-tcut", dist)
    train_mod.batches = real
    distributed.SIGNAL_POLL_EVERY = 3

    # a SIGTERM to rank 1 in the middle of the first validation: both stop there, the validation saved as due (a job
    # finished it first, and torchrun kills its workers 30 s after a Ctrl-C: a long one lost the run)
    real_evaluate = train_mod.evaluate

    def rank1_gets_sigterm_validating(model, ids, rows=1, chunk=train_mod.EVAL_CHUNK, progress=None):
        def tick(done):
            if dist.rank == 1 and done >= 32:
                os.kill(os.getpid(), signal.SIGTERM)
            progress(done)
        return real_evaluate(model, ids, rows, 16, progress=tick)  # (chunks of 16: a few to poll between)

    train_mod.evaluate = rank1_gets_sigterm_validating
    _interrupted(tmp, "random-vcut", dist)
    train_mod.evaluate = real_evaluate
    _trainer(tmp, "random-vcut", dist, resume=ckpt_io.load(tmp / "random-vcut", prefer="last")).fit()
    c = ckpt_io.load(tmp / "drop-cut", prefer="last")  # every process resumes from rank 0's checkpoint
    _trainer(tmp, "drop-cut", dist, resume=c).fit()
    # a run whose best/ is gone, resumed by two: best/ starts again in both alike (rank 0 alone restarting it, and so
    # alone saving it, left the other waiting in the gather: the job died or hung)
    if dist.rank == 0:
        import shutil

        shutil.copytree(tmp / "clip", tmp / "clip-lost", ignore=shutil.ignore_patterns("best"))
    torch.distributed.barrier()
    c = ckpt_io.load(tmp / "clip-lost", prefer="last")
    t = _trainer(tmp, "clip-lost", dist, resume=c)
    t._val_loss = lambda: 50.0  # worse than before: rank 0 alone found it the lowest "from here on", and saved
    t.fit()
    try:  # a new run into a folder holding one: every process refuses it (one left waiting in DDP's start hung the job)
        _trainer(tmp, "clip", dist)
        raise AssertionError("a folder holding a run was not refused")
    except CharlmError as e:
        assert "already holds a training run" in str(e)
    distributed.teardown()


def _hang(tmp: Path, how: str) -> int:
    """Rank 1 hangs (or leaves) where training starts; rank 0 must end with a clear error within --dist-timeout."""
    from charlm.cli import main

    if os.environ["RANK"] == "1":
        train_mod.Trainer._train_epoch = (lambda self: time.sleep(300)) if how == "hang" else (lambda self: os._exit(0))
    mcfg, cfg = _config(tmp, "clip")
    return main(["train", "--data", cfg.data, "--batch-size", "4", "--num-steps", "16", "--embedding-size", "32",
                 "--hidden-size", "32", "--device", "cpu", "--epochs", "1", "--out", str(tmp / "hang"), "--dist-timeout", "10"])  # (joining is bound by it too: 3 s
    # could part two processes still starting, each importing torch on a loaded machine, before the hang)


def _agree(tmp: Path) -> int:
    """Rank r got signal (SIGINT, SIGTERM)[r] and counts 1000 - r training characters: print what they agree on."""
    dist = distributed.setup(torch.device("cpu"), timeout=60)
    agreed = dist.agree_signal((signal.SIGINT, signal.SIGTERM)[dist.rank])
    try:
        dist.check_same(train_chars=1000 - dist.rank)
        refused = ""
    except distributed.DistributedError as e:
        refused = str(e)
    # the same training text, another held-out text (a longer file, cut by --limit-chars): refused before training, as
    # each process validates on all of it, agreeing on a signal every few chunks (a job of two held-out texts hung)
    corpus = tmp / f"corpus{dist.rank}.txt"
    corpus.write_text(LINES * 25 + "再见" * 40 * dist.rank, encoding="utf-8")
    cfg = TrainConfig(data=str(corpus), out=str(tmp / f"v{dist.rank}"), vocab_from="train", **BASE)
    text = load_corpus(cfg)
    try:
        Trainer(ModelConfig(vocab_size=len(text.vocab), embedding_size=8, hidden_size=8), cfg, text, log=lambda *_: None, dist=dist)
        held = ""
    except distributed.DistributedError as e:
        held = str(e)
    print(json.dumps({"signal": agreed, "refused": refused, "held_out": held}))
    distributed.teardown()
    return 0


# --- the tests -------------------------------------------------------------------------------------


def test_processes_agree_on_one_signal_and_refuse_different_corpora(tmp_path):
    procs = _start("agree", tmp_path)
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=WORKER_TIMEOUT)
        assert p.returncode == 0, err
        outs.append(json.loads(out.strip().splitlines()[-1]))
    assert [o["signal"] for o in outs] == [signal.SIGTERM] * 2  # the same stop everywhere (exit 143), not a sum of two
    assert all("disagree about the run (train_chars: " in o["refused"] for o in outs)
    assert all("disagree about the run (val_hash: " in o["held_out"] for o in outs), outs


def test_two_processes_train_as_one_and_resume_exactly(tmp_path):
    procs = _start("train", tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # three processes share the cores meanwhile
    try:
        for name in ("clip", "random"):  # meanwhile, the same runs in one plain process
            _trainer(tmp_path / "one", name).fit()
        outs = [p.communicate(timeout=WORKER_TIMEOUT) for p in procs]
    finally:
        torch.set_num_threads(threads)
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err

    # the same global batch in 2 processes or in 1: the same losses, epoch by epoch, and the same weights after 20 steps
    for name in ("clip", "random"):
        two, one = tmp_path / name, tmp_path / "one" / name
        assert [m["step"] for m in _metrics(two)] == [10, 20]
        _close(_metrics(two), _metrics(one), 1e-5)
        assert _max_weight_diff(two, one) < 1e-5

    # stopped mid-epoch by a signal to one process, then resumed by two: the run an uninterrupted pair makes
    full, resumed = _metrics(tmp_path / "drop"), _metrics(tmp_path / "drop-cut")
    assert [m["epoch"] for m in resumed] == [1, 2, 3]
    assert [(m["train_loss"], m["val_loss"]) for m in full] == [(m["train_loss"], m["val_loss"]) for m in resumed]
    assert _max_weight_diff(tmp_path / "drop", tmp_path / "drop-cut") == 0.0

    # a two-process checkpoint is a single-process one: the global carried state, rank 0 writing it alone
    c = ckpt_io.load(tmp_path / "clip-cut", prefer="last")
    assert (c.trainer["epoch"], c.trainer["batch"], c.trainer["world_size"]) == (1, 3, 2)
    assert c.trainer_tensors["carried.h"].shape == c.trainer_tensors["carried.c"].shape == (2, 4, 32)
    assert {"rng.torch", "rng.torch.rank0", "rng.torch.rank1"} <= c.trainer_tensors.keys()
    assert json.loads((c.path / ckpt_io.META_FILE).read_text())["format_version"] == 1
    assert not list(tmp_path.glob("clip-cut/.*"))  # no second writer's leftovers
    # ... which one process resumes into the single-process run
    _trainer(tmp_path, "clip-cut", resume=c).fit()
    _close(_metrics(tmp_path / "clip-cut"), _metrics(tmp_path / "one" / "clip"), 1e-5)
    assert _max_weight_diff(tmp_path / "clip-cut", tmp_path / "one" / "clip") < 1e-5

    # a job's checkpoint with dropout, resumed by one process: said, as the other way round is
    c, lines = ckpt_io.load(tmp_path / "drop", prefer="last"), []
    mcfg, cfg = _config(tmp_path, "drop")
    Trainer(c.model_config, cfg, load_corpus(cfg, vocab=c.vocab), resume=c, log=lines.append)
    assert any(line.startswith(f"note: {c.path} was written by 2 processes, this run has 1: it goes on with rank 0's dropout")
               for line in lines), lines

    tcut = ckpt_io.load(tmp_path / "random-tcut", prefer="last").trainer
    assert tcut["pending_validation"] == {"at_epoch_end": True, "over_time": True} and tcut["epoch"] == 1, tcut

    # stopped in a validation: saved as due, and the resume made the uninterrupted run's figures
    vcut = ckpt_io.load(tmp_path / "random-vcut", prefer="last")
    assert [(m["train_loss"], m["val_loss"]) for m in _metrics(tmp_path / "random-vcut")] == [
        (m["train_loss"], m["val_loss"]) for m in _metrics(tmp_path / "random")] and vcut.trainer["step"] == 20

    # best/ lost, and resumed by two processes: started again at the state resumed (step 20), in step in both
    lost, rows = ckpt_io.load(tmp_path / "clip-lost" / "best"), _metrics(tmp_path / "clip-lost")
    assert [m["step"] for m in rows] == [10, 20, 30]
    assert lost.metrics[-1]["step"] == 20 and rows[-1]["val_loss"] == 50.0  # the state resumed: the lowest from there on

    # and single-process checkpoints keep their format: no per-process keys
    one = ckpt_io.load(tmp_path / "one" / "clip", prefer="last")
    assert "world_size" not in one.trainer and not any(".rank" in k for k in one.trainer_tensors)


def test_a_hung_process_ends_the_job_within_the_timeout(tmp_path):
    procs = _start("hang", tmp_path, "hang")
    try:  # a hang would run into WORKER_TIMEOUT and fail here
        _, err = procs[0].communicate(timeout=WORKER_TIMEOUT)
    finally:
        for p in procs:
            p.kill()
            p.communicate()
    assert procs[0].returncode == 1, err
    lines = [line for line in err.splitlines() if line.startswith("charlm: error: ")]
    assert len(lines) == 1 and "rank 0: lost contact with the other processes" in lines[0] and "--dist-timeout 10 s" in lines[0], err
    assert "Traceback" not in err


def test_batch_size_must_split_evenly(tmp_path, monkeypatch, capsys):
    mcfg, cfg = _config(tmp_path, "clip")
    corpus = load_corpus(cfg)
    mcfg = ModelConfig(**{**mcfg.__dict__, "vocab_size": len(corpus.vocab)})
    cfg = TrainConfig(**{**cfg.__dict__, "batch_size": 6})
    try:
        Trainer(mcfg, cfg, corpus, dist=distributed.Dist(world_size=4))
        raise AssertionError("no error")
    except Exception as e:  # noqa: BLE001 - the message is what is tested
        assert "--batch-size 6 does not split evenly among 4 processes" in str(e)

    from charlm.cli import main

    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    code = main(["train", "--data", cfg.data, "--batch-size", "6", "--device", "cpu", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("charlm: error: --batch-size 6 does not split evenly among 4"), err
    # the other processes on the machine stay quiet: rank 0 has said it
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    code = main(["train", "--data", cfg.data, "--batch-size", "6", "--device", "cpu", "--out", str(tmp_path / "x")])
    assert code == 2 and capsys.readouterr().err == ""


if __name__ == "__main__":  # a process of the two-process runs above
    mode, tmp = sys.argv[1], Path(sys.argv[2])
    sys.exit(_train_runs(tmp) if mode == "train" else _agree(tmp) if mode == "agree" else _hang(tmp, sys.argv[3]))
