import dataclasses
import json
import os
import shutil
import sys
import threading
from pathlib import Path

import pytest
import torch

from charlm import checkpoint as ckpt_io
from charlm.checkpoint import load, load_model, save
from charlm.config import ModelConfig
from charlm.data import load_corpus
from charlm.errors import CharlmError


def test_round_trip(tiny_ckpt, tmp_path):
    c = load(tiny_ckpt)
    save(c, tmp_path / "copy")
    d = load(tmp_path / "copy")
    assert d.vocab == c.vocab and d.model_config == c.model_config and d.train_config == c.train_config
    assert all(torch.equal(d.weights[k], c.weights[k]) for k in c.weights)
    assert d.metrics == c.metrics


def test_a_checkpoint_is_plain_files(tiny_ckpt):
    names = sorted(p.name for p in tiny_ckpt.iterdir())
    assert names == ["checkpoint.json", "model.safetensors", "trainer.safetensors"]
    meta = json.loads((tiny_ckpt / "checkpoint.json").read_text(encoding="utf-8"))
    assert meta["format_version"] == 1 and meta["vocab"]["itos"] and "config" not in meta
    from safetensors import safe_open

    for f in tiny_ckpt.iterdir():
        head = f.read_bytes()[:2]
        assert head[:1] != b"\x80" and head != b"PK"  # neither a pickle (protocol 2 on) nor torch.save's zip
        if f.suffix == ".safetensors":
            with safe_open(str(f), framework="pt") as t:  # tensors safetensors reads, nothing to unpickle
                assert list(t.keys())


def test_run_folder_resolves_to_best(tiny_run):
    assert load(tiny_run).path == tiny_run / "best"
    assert load(tiny_run, prefer="last").path == tiny_run / "last"


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_truncated_weights_are_refused(tiny_ckpt, tmp_path):
    bad = _copy(tiny_ckpt, tmp_path / "bad")
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CharlmError, match="truncated or replaced"):
        load_model(bad)


@pytest.mark.parametrize("name", ["model.safetensors", "trainer.safetensors"])
def test_a_replaced_tensor_file_is_refused(tiny_run, tmp_path, name):
    from safetensors.torch import load_file, save_file

    bad = _copy(tiny_run / "last", tmp_path / "bad")
    tensors = load_file(bad / name)
    key = sorted(k for k, v in tensors.items() if v.is_floating_point() and v.numel())[0]
    tensors[key] = tensors[key] + 1
    save_file(tensors, bad / name)  # whole and readable, but not what the checkpoint wrote
    with pytest.raises(CharlmError, match=f"{name}: does not match the checksum"):
        load(bad)


def test_truncated_json_is_refused(tiny_ckpt, tmp_path):
    bad = _copy(tiny_ckpt, tmp_path / "bad")
    text = (bad / "checkpoint.json").read_text(encoding="utf-8")
    (bad / "checkpoint.json").write_text(text[:100], encoding="utf-8")
    with pytest.raises(CharlmError, match="unreadable or truncated"):
        load_model(bad)


@pytest.mark.parametrize("text", ['{"metrics": ' + "[" * 100_000 + "]" * 100_000 + "}", '{"format": ' + "7" * 5000 + "}"])
def test_json_past_pythons_limits_is_refused(tiny_ckpt, tmp_path, text):
    """Nested deeper than Python's stack, or a number of 5,000 digits: the same one-line error as a truncated file."""
    bad = _copy(tiny_ckpt, tmp_path / "bad")
    (bad / "checkpoint.json").write_text(text, encoding="utf-8")
    with pytest.raises(CharlmError, match=r"checkpoint.json: unreadable or truncated \((RecursionError|ValueError)\)"):
        load_model(bad)


def test_weights_that_are_not_finite_are_refused(tiny_ckpt, tmp_path):
    """A checkpoint with a NaN among its weights (its checksum made to match) is refused as it is read: generate wrote
    blank lines from it, and the server answered 500."""
    import hashlib

    from safetensors.torch import load_file, save_file

    bad = _copy(tiny_ckpt, tmp_path / "bad")
    weights = load_file(bad / "model.safetensors")
    name = sorted(weights)[0]
    weights[name].view(-1)[0] = float("nan")
    save_file(weights, bad / "model.safetensors")
    meta = json.loads((bad / "checkpoint.json").read_text(encoding="utf-8"))
    meta["sha256"]["model.safetensors"] = hashlib.sha256((bad / "model.safetensors").read_bytes()).hexdigest()
    (bad / "checkpoint.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(CharlmError, match=f"the weights are not finite \\(NaN or infinity in {name}\\)"):
        load_model(bad)


def test_vocabulary_mismatch_is_refused(tiny_ckpt, tmp_path):
    bad = _copy(tiny_ckpt, tmp_path / "bad")
    meta = json.loads((bad / "checkpoint.json").read_text(encoding="utf-8"))
    meta["vocab"]["itos"] = meta["vocab"]["itos"][:-1]
    (bad / "checkpoint.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(CharlmError, match="vocabulary"):
        load_model(bad)


def test_missing_checkpoint(tmp_path, tiny_run):
    with pytest.raises(CharlmError, match="no such checkpoint folder$"):
        load_model(tmp_path / "nothing")
    shutil.copytree(tiny_run, tmp_path / "runs" / "demo")  # a mistyped run name: the runs beside it are named
    with pytest.raises(CharlmError, match=r"runs/jaychou: no such checkpoint folder; the run in .*runs/ is demo$"):
        load_model(tmp_path / "runs" / "jaychou")
    with pytest.raises(CharlmError, match="not a charlm checkpoint"):
        load_model(tmp_path)


def test_failed_write_leaves_the_old_checkpoint(tiny_ckpt, tmp_path, monkeypatch):
    c = load(tiny_ckpt)
    target = save(c, tmp_path / "ck")
    before = (target / "model.safetensors").read_bytes()

    from safetensors import SafetensorError

    def boom(*a, **k):  # what safetensors raises on a full disk: not an OSError
        raise SafetensorError("Error while serializing: No space left on device (os error 28)")

    monkeypatch.setattr(ckpt_io, "save_file", boom)
    with pytest.raises(CharlmError, match=f"cannot write the checkpoint {target}: .*No space left on device"):  # an error a caller can catch
        save(c, target)
    assert (target / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no temporary folder left behind
    load(target)


@pytest.mark.parametrize("atomic", [True, False])
def test_a_checkpoint_is_replaced_whole(tiny_ckpt, tmp_path, monkeypatch, atomic):
    c = load(tiny_ckpt)
    target = save(c, tmp_path / "ck")
    calls = []
    real = ckpt_io._exchange
    monkeypatch.setattr(ckpt_io, "_exchange", lambda a, b: calls.append(b) or (real(a, b) if atomic else False))
    newer = dataclasses.replace(c, metrics=c.metrics + [{"epoch": 99}])
    save(newer, target)
    assert calls == [target] and load(target).metrics[-1] == {"epoch": 99}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # the old one and the temporary folder are gone
    if atomic and sys.platform == "linux":  # this machine swaps two folders in one step
        for name in "ab":
            (tmp_path / name).mkdir()
            (tmp_path / name / "x").write_text(name)
        assert real(tmp_path / "a", tmp_path / "b")
        assert (tmp_path / "a" / "x").read_text() == "b" and (tmp_path / "b" / "x").read_text() == "a"


def test_off_linux_a_checkpoint_is_replaced_by_two_renames_and_pids_are_not_signalled(tiny_ckpt, tmp_path, monkeypatch):
    """On Windows, ctypes.CDLL(None) is a TypeError (cpython#83424): every save after the first crashed looking for
    renameat2.  And os.kill(pid, 0) there sends Ctrl-C (signal 0 is CTRL_C_EVENT): a process is taken as running."""
    import ctypes

    def windows_cdll(name, *args, **kwargs):
        raise TypeError("argument of type 'NoneType' is not iterable")

    monkeypatch.setattr(ckpt_io, "_renameat2", None)
    monkeypatch.setattr(ctypes, "CDLL", windows_cdll)
    monkeypatch.setattr(sys, "platform", "win32")
    c = load(tiny_ckpt)
    target = save(c, tmp_path / "ck")
    save(dataclasses.replace(c, metrics=c.metrics + [{"epoch": 99}]), target)
    assert load(target).metrics[-1] == {"epoch": 99} and ckpt_io._renameat2 is False
    monkeypatch.setattr(ckpt_io, "WINDOWS", True)
    monkeypatch.setattr(os, "kill", lambda *a: pytest.fail("os.kill called on Windows"))
    assert ckpt_io._running("999999") and not ckpt_io._running(str(os.getpid()))


@pytest.mark.parametrize("exchange", [True, False])
def test_a_reader_never_sees_a_checkpoint_being_replaced_as_damage(tiny_ckpt, tmp_path, monkeypatch, exchange):
    """generate or serve reading best/ while the training replaces it: the JSON of one and a tensor file of the next
    failed the checksum (a user's loop: 58 of 4,084 loads); and what is loaded is one whole checkpoint.  Without an
    atomic exchange (two renames), the moment without the folder is waited out too."""

    if not exchange:
        monkeypatch.setattr(ckpt_io, "_exchange", lambda a, b: False)
    c = load(tiny_ckpt)
    versions = [dataclasses.replace(c, weights={k: v + i for k, v in c.weights.items()}, metrics=[{"version": i}])
                for i in range(2)]
    dst = tmp_path / "best"
    save(versions[0], dst)
    stop, errors = threading.Event(), []

    def writer():
        i = 0
        while not stop.is_set():
            i += 1  # each save its own, as a training's are (its metrics grow)
            save(dataclasses.replace(versions[i % 2], metrics=[{"version": i % 2, "save": i}]), dst)

    t = threading.Thread(target=writer)
    t.start()
    try:
        for _ in range(300):
            try:
                d = load(dst, with_trainer=False)
            except CharlmError as e:
                errors.append(str(e))
                continue
            i = d.metrics[0]["version"]
            assert torch.equal(d.weights["embedding.weight"], versions[i].weights["embedding.weight"])
    finally:
        stop.set()
        t.join()
    assert not errors, errors[:3]


def test_a_load_waits_out_a_save_it_saw_once_and_rereads_a_checkpoint_replaced_on_its_last_try(tiny_ckpt, tmp_path, monkeypatch):
    """The two ways the test above failed once on a loaded machine: the save seen moving at the first miss but over (its
    old copy gone) by the fifth; and, on the last try, the checkpoint replaced while it was read."""
    c = load(tiny_ckpt)
    dst = tmp_path / "best"
    save(c, dst)
    real_resolve, real_load, real_moving = ckpt_io.resolve, ckpt_io._load, ckpt_io._moving
    monkeypatch.setattr(ckpt_io.time, "sleep", lambda s: None)

    misses = []
    monkeypatch.setattr(ckpt_io, "_moving", lambda p: len(misses) == 1)  # a save moving at the first miss only
    monkeypatch.setattr(ckpt_io, "resolve", lambda *a, **k: misses.append(1) or (
        real_resolve(*a, **k) if len(misses) > 6 else (_ for _ in ()).throw(CharlmError("gone"))))
    assert load(dst).metrics == c.metrics and len(misses) == 7

    monkeypatch.setattr(ckpt_io, "_moving", real_moving)
    misses.clear()
    monkeypatch.setattr(ckpt_io, "resolve", lambda *a, **k: misses.append(1) or (
        real_resolve(*a, **k) if len(misses) > 4 else (_ for _ in ()).throw(CharlmError("gone"))))
    replaced = []

    def load_as_replaced(p, first, *a):
        if not replaced:  # the next version lands as this one is read
            replaced.append(save(dataclasses.replace(c, metrics=[{"replaced": True}]), dst))
            raise CharlmError("checksum mismatch")
        return real_load(p, first, *a)

    monkeypatch.setattr(ckpt_io, "_load", load_as_replaced)
    assert load(dst).metrics == [{"replaced": True}] and len(misses) == 6

    # replaced while read five times over, then gone for good (a run cleared): an error, at once, not a wait forever
    monkeypatch.setattr(ckpt_io, "resolve", real_resolve)
    sleeps = []
    monkeypatch.setattr(ckpt_io.time, "sleep", lambda s: sleeps.append(s) or len(sleeps) < 100 or pytest.fail("waits forever"))

    def replaced_then_gone(p, first, *a):
        replaced.append(save(dataclasses.replace(c, metrics=[{"save": len(replaced)}]), dst))
        if len(replaced) > 6:
            shutil.rmtree(dst)
        raise CharlmError("checksum mismatch")

    monkeypatch.setattr(ckpt_io, "_load", replaced_then_gone)
    with pytest.raises(CharlmError, match="no such checkpoint"):
        load(dst)
    assert len(sleeps) <= 5


def test_a_killed_saves_leftover_does_not_hold_up_a_failing_load(tiny_ckpt, tmp_path, monkeypatch):
    """A reader waits for a save's two renames only while that save's process runs: the old copy a killed save left
    (its process gone) costs a failing load no more than before, 0.1 s (the waits are counted, not timed)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / ".best.old-999999999").mkdir()  # no such process: a save killed long ago, nothing in it
    (tmp_path / ".gone.old-999999999").mkdir()
    for path in (run, tmp_path / "gone"):
        waits = []
        monkeypatch.setattr(ckpt_io.time, "sleep", waits.append)
        with pytest.raises(CharlmError):
            load(path)
        monkeypatch.undo()
        assert 0 < sum(waits) <= 0.2, (path, waits)  # (a live save's leftover: up to 2 s)
    assert not ckpt_io._moving(run) and not ckpt_io._moving(tmp_path / "gone")
    (run / f".best.old-{os.getpid()}").mkdir()  # a save in this process (a thread's): one being replaced now
    assert ckpt_io._moving(run)


def test_what_a_killed_write_left_beside_a_file_goes_with_the_next_write_of_it(tmp_path):
    """inspect --out r.html killed (kill -9) as it wrote left .r.html.tmp-PID beside the page for good."""
    from charlm.checkpoint import write_atomic

    dead = 2**22 - 5  # no such process
    page = tmp_path / "r[1].html"  # (a name glob would read as a pattern)
    for name in (f".{page.name}.tmp-{dead}", f".{page.name}.tmp-1", ".other.html.tmp-7"):  # process 1 runs: its write may be under way
        (tmp_path / name).write_text("half a page")
    write_atomic((page, b"page"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([page.name, f".{page.name}.tmp-1", ".other.html.tmp-7"])


def test_a_stream_name_is_written_into_not_replaced(tmp_path):
    """inspect --out /dev/stdout >> log.txt replaced log.txt (the link's target) and lost what it held."""
    import subprocess

    log = tmp_path / "log.txt"
    log.write_text("previous line\n")
    code = "from pathlib import Path; from charlm.checkpoint import write_atomic; write_atomic((Path('/dev/stdout'), b'page\\n'))"
    with open(log, "a") as out:
        assert subprocess.run([sys.executable, "-c", code], stdout=out).returncode == 0
    assert log.read_text() == "previous line\npage\n"


def test_a_reader_asking_whether_a_folder_is_in_use_never_blocks_a_training_from_starting(tmp_path):
    """in_use() holds a shared lock for a moment; a training starting just then was refused as if another held the folder."""
    pytest.importorskip("fcntl")

    folder = tmp_path / "run"
    folder.mkdir()
    stop = threading.Event()

    def reader():  # a poller, as generate or serve on the folder would be, asking every millisecond
        while not stop.wait(0.001):
            ckpt_io.in_use(folder)

    t = threading.Thread(target=reader)
    t.start()
    try:
        for _ in range(3000):
            ckpt_io.lock_run(folder)
            ckpt_io.release_run_locks()
    finally:
        stop.set()
        t.join()


def test_only_real_stream_names_count_as_streams(tmp_path):
    """Anything under /dev/ counted: a corpus in /dev/shm was refused, and files there were appended to, not replaced."""
    (tmp_path / "to_stdin").symlink_to("/dev/stdin")
    for stream in ("/dev/stdin", "/dev/stdout", "/dev/fd/3", "/proc/self/fd/0", tmp_path / "to_stdin"):
        assert ckpt_io.names_a_stream(stream), stream
    for plain in ("/dev/shm/lyrics.txt", "/dev/shm/run/metrics.jsonl", tmp_path / "lyrics.txt", "/proc/cpuinfo"):
        assert not ckpt_io.names_a_stream(plain), plain
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        f = Path(f"/dev/shm/charlm-test-{os.getpid()}.txt")
        try:
            for data in (b"first", b"second"):
                ckpt_io.write_atomic((f, data))
            assert f.read_bytes() == b"second"  # replaced, not appended to
        finally:
            f.unlink(missing_ok=True)


def test_a_run_folder_read_while_best_is_moved_aside_waits_for_it(tiny_run, tmp_path, monkeypatch):
    """Where a save takes two renames, best/ is missing for a moment: a load took last/ instead, silently."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "best").rename(run / ".best.old-1")
    timer = threading.Timer(0.03, lambda: (run / ".best.old-1").rename(run / "best"))
    timer.start()
    try:
        assert load(run, with_trainer=False).path == run / "best"
    finally:
        timer.join()


def test_a_closed_pipe_under_a_stream_name_ends_quietly(monkeypatch):
    """inspect --out /dev/stdout | true: a closed pipe, as elsewhere, not an error."""
    def closed(fd, data):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(os, "write", closed)
    with pytest.raises(BrokenPipeError):
        ckpt_io.write_atomic((Path("/dev/stdout"), b"page"))


def test_a_closed_pipe_still_leaves_the_other_files_written(tmp_path, monkeypatch):
    """inspect --out /dev/stdout --png p.png | true: the reader that went away takes nothing from the picture."""
    def closed(fd, data):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(os, "write", closed)
    with pytest.raises(BrokenPipeError):
        ckpt_io.write_atomic((Path("/dev/stdout"), b"page"), (tmp_path / "p.png", b"picture"))
    assert [(f.name, f.read_bytes()) for f in tmp_path.iterdir()] == [("p.png", b"picture")]


def test_a_pipe_in_a_checkpoint_is_missing_not_waited_on(tiny_ckpt, tmp_path):
    bad = _copy(tiny_ckpt, tmp_path / "bad")
    (bad / "model.safetensors").unlink()
    os.mkfifo(bad / "model.safetensors")
    with pytest.raises(CharlmError, match="model.safetensors is missing"):
        load(bad)


def test_atomic_writes_go_through_links_and_into_pipes(tmp_path):
    """inspect --out link.html replaced the link with a file; --out a FIFO replaced the FIFO, and its reader got nothing."""

    (tmp_path / "reports").mkdir()
    target, link, fifo = tmp_path / "reports" / "real.html", tmp_path / "link.html", tmp_path / "fifo"
    target.write_text("old")
    link.symlink_to("reports/real.html")
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    ckpt_io.write_atomic((link, b"page"), (fifo, b"through the pipe"))
    reader.join(timeout=10)
    assert link.is_symlink() and target.read_bytes() == b"page"
    assert got == [b"through the pipe"] and fifo.is_fifo()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["fifo", "link.html", "real.html", "reports"]  # no temporary left


def test_optimizer_state_round_trips_through_plain_data():
    p = torch.nn.Parameter(torch.randn(3))
    opt = torch.optim.Adam([p], lr=0.1)
    p.grad = torch.ones(3)
    opt.step()
    plain, tensors = ckpt_io.split_state_dict(opt.state_dict(), "optim")
    json.dumps(plain)
    back = ckpt_io.join_state_dict(json.loads(json.dumps(plain)), tensors)
    opt2 = torch.optim.Adam([torch.nn.Parameter(p.detach().clone())], lr=0.1)
    opt2.load_state_dict(back)
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


def test_the_tensor_files_get_the_mode_of_the_json(tmp_path, tiny_ckpt):
    import os
    import stat

    from charlm import checkpoint as ckpt_io

    path = ckpt_io.save(ckpt_io.load(tiny_ckpt), tmp_path / "copy")
    modes = {f.name: stat.S_IMODE(os.stat(f).st_mode) for f in path.iterdir()}
    assert len(set(modes.values())) == 1, modes  # safetensors alone writes 0600: others could not read the weights


def test_load_model_from_python_errors_and_random_stream(tiny_ckpt, tmp_path):
    """A Python caller gets a CharlmError for a device it cannot have (torch's AssertionError before), its random
    stream back untouched (the throwaway initial weights drew from it), and a clear refusal of a bad `prefer`."""
    torch.manual_seed(1)
    before = torch.get_rng_state()
    load_model(tiny_ckpt)
    assert torch.equal(torch.get_rng_state(), before)
    with pytest.raises(CharlmError, match="unknown device 'gpu'"):
        load_model(tiny_ckpt, device="gpu")
    with pytest.raises(CharlmError, match="device 'mps': charlm runs on auto, cpu, cuda or cuda:N"):  # torch's RuntimeError before
        load_model(tiny_ckpt, device="mps")
    with pytest.raises(CharlmError, match="device 'cpu:1': the CPU takes no number; use cpu"):  # torch took it as the CPU
        load_model(tiny_ckpt, device="cpu:1")
    if not torch.cuda.is_available():
        with pytest.raises(CharlmError, match="this PyTorch sees no CUDA GPU"):
            load_model(tiny_ckpt, device="cuda")
    with pytest.raises(ValueError, match="prefer must be 'best' or 'last'"):
        load_model(tiny_ckpt.parent, prefer="bogus")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(CharlmError, match="cannot write the checkpoint"):
        save(load(tiny_ckpt), tmp_path / "afile" / "ck")
    c = load(tiny_ckpt, with_trainer=False)
    saved = save(dataclasses.replace(c, trainer={}), tmp_path / "bare")  # a model put together in Python: no trainer state
    with pytest.raises(CharlmError, match="saved without a trainer's state"):
        load(saved)
    assert load(saved, with_trainer=False).model_config == c.model_config


class _Killed(BaseException):
    """A kill -9 in a test: nothing after it runs (the lock goes with the process, as fit() lets it go here)."""


def test_a_kill_between_the_two_saves_of_a_validation_leaves_best_right_after_the_resume(tmp_path, monkeypatch, capsys):
    """best/ is saved before last/: killed between them, the resume redoes that validation from last/ and saves both.
    (The other way round, last/ recorded the new best loss that best/ never got, and nothing saved best/ again.)"""
    from charlm.cli import main
    from charlm.train import Trainer

    from .test_cli import LYRIC, TINY

    (tmp_path / "c.txt").write_text(LYRIC * 40, encoding="utf-8")
    args = ["train", "--data", str(tmp_path / "c.txt"), *TINY, "--epochs", "3", "--sample-every", "0"]
    real, calls = Trainer.save, []

    def counting(self, name):
        calls.append(name)
        return real(self, name)

    monkeypatch.setattr(Trainer, "save", counting)
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    whole = [json.loads(x) for x in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert whole[-1]["val_loss"] == min(m["val_loss"] for m in whole)  # the last validation is the best: both are saved
    n = len(calls)

    def killed_before_the_last_save(self, name):
        path = real(self, name)
        if len(calls.append(name) or calls) == 2 * n - 1:  # between the last validation's two saves
            raise _Killed
        return path

    monkeypatch.setattr(Trainer, "save", killed_before_the_last_save)
    with pytest.raises(_Killed):
        main([*args, "--out", str(tmp_path / "cut")])
    monkeypatch.setattr(Trainer, "save", real)
    assert main(["train", "--resume", str(tmp_path / "cut")]) == 0
    for name in ("best", "last"):
        meta = json.loads((tmp_path / "cut" / name / "checkpoint.json").read_text())
        assert meta["trainer"]["best_val"] == whole[-1]["val_loss"] and meta["trainer"]["step"] == whole[-1]["step"], name


def test_a_checkpoint_a_killed_save_moved_aside_is_read_and_put_back(tmp_path, capsys):
    """Where a save takes two renames, a kill between them leaves last/ missing and both copies hidden: readers read the
    complete new one where it lies, and the next training of the folder puts it back and removes the leftovers."""
    from charlm.cli import main

    from .test_cli import LYRIC, TINY

    (tmp_path / "c.txt").write_text(LYRIC * 40, encoding="utf-8")
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "c.txt"), *TINY, "--epochs", "2", "--sample-every", "0", "--out", str(out)]) == 0
    last = json.loads((out / "last" / "checkpoint.json").read_text())
    shutil.copytree(out / "last", out / ".last.tmp-999999")  # the new copy, complete
    (out / "last").rename(out / ".last.old-999999")  # the old one, moved aside; then the kill
    shutil.copytree(out / "best", out / ".best.tmp-888888")  # another kill's copy, while it was being written
    (out / ".metrics.jsonl.tmp-777777").write_text("{}\n")
    assert ckpt_io.resolve(out, prefer="last") == out / ".last.tmp-999999"  # no training holds the folder: not "being replaced"
    assert ckpt_io.load(out, prefer="last").trainer == last["trainer"]
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--epochs", "3"]) == 0
    assert "resuming " + str(out / "last") in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["best", "curves.png", "last", "metrics.jsonl"]
    assert json.loads((out / "last" / "checkpoint.json").read_text())["trainer"]["epoch"] == last["trainer"]["epoch"] + 1


def test_the_newest_copy_killed_saves_left_is_put_back(tiny_run, tmp_path):
    """Two killed saves (a process id says nothing of age: ids wrap) left copies of last/: the newer one goes back."""
    import time

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    older, newer = run / f".last.old-{2**22 - 5}", run / f".last.old-{2**22 - 40}"  # (no such processes)
    shutil.copytree(run / "last", older)
    (run / "last").rename(newer)
    meta = json.loads((newer / "checkpoint.json").read_text())
    os.utime(older / "checkpoint.json", ns=(time.time_ns() - 10**10,) * 2)  # written 10 s before the other
    os.utime(newer / "checkpoint.json", ns=(time.time_ns(),) * 2)
    shutil.copytree(run / "best", run / ".best.tmp-1")  # process 1 runs: its save may be under way, not to be touched
    assert ckpt_io.stranded(run, "last") == newer
    assert ckpt_io.lock_run(run)
    try:
        assert sorted(p.name for p in run.iterdir()) == sorted([".best.tmp-1", *(p.name for p in tiny_run.iterdir())])
        assert json.loads((run / "last" / "checkpoint.json").read_text()) == meta
    finally:
        ckpt_io.unlock_run(run)


def test_a_carried_state_saved_in_half_precision_is_resumable(tmp_path):
    """Under --precision bf16/fp16's autocast the copy memory's keys (and on a GPU h and c) are half precision."""
    from charlm.train import Trainer

    from .conftest import tiny_train_config

    cfg = tiny_train_config(tmp_path)
    corpus = load_corpus(cfg)
    trainer = Trainer(ModelConfig(vocab_size=len(corpus.vocab), embedding_size=16, hidden_size=32, copy_window=8), cfg, corpus, log=None)
    state = trainer.model.init_state(cfg.batch_size)
    trainer._check_carried(tuple(s.to(torch.bfloat16) if s.is_floating_point() else s for s in state))
    with pytest.raises(ValueError, match="the carried copy_x is"):
        trainer._check_carried(tuple(s.float() for s in state))  # the ids must stay ids


def test_a_copy_left_by_a_process_id_now_reused_is_still_read_and_put_back(tiny_run, tmp_path, monkeypatch):
    """After a kill -9 the saving process's id may belong to another process: a save's two renames take microseconds,
    so a copy still aside a moment later is read, and put back, whatever the id says (here 1: a process that runs)."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    meta = json.loads((run / "last" / "checkpoint.json").read_text())
    (run / "last").rename(run / ".last.old-1")
    assert load(run, prefer="last").trainer == meta["trainer"]
    assert ckpt_io.lock_run(run)
    try:
        assert (run / "last" / "checkpoint.json").is_file() and not (run / ".last.old-1").exists()
    finally:
        ckpt_io.unlock_run(run)
    real = Path.iterdir

    def unlistable(self):
        if self == tmp_path:
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "iterdir", unlistable)  # a folder this user may not list: the plain message
    with pytest.raises(CharlmError, match="nothing: no such checkpoint folder$"):
        load(tmp_path / "nothing")


def test_copies_named_by_this_processs_own_id_are_left_over_from_a_kill(tiny_run, tmp_path):
    """A killed training's process id may be the new one's: a copy under that id is no save under way, and is removed."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    shutil.copytree(run / "best", run / f".best.tmp-{os.getpid()}")
    assert ckpt_io.lock_run(run)
    try:
        assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in tiny_run.iterdir())
    finally:
        ckpt_io.unlock_run(run)


def test_a_copy_of_a_process_this_user_may_not_signal_is_left_alone(tiny_run, tmp_path, monkeypatch):
    """os.kill(pid, 0) raising PermissionError: the process runs, as another user; its save may be under way."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    shutil.copytree(run / "best", run / ".best.tmp-424242")

    def denied(pid, sig):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(ckpt_io.os, "kill", denied)
    assert ckpt_io.lock_run(run)
    try:
        assert (run / ".best.tmp-424242" / "checkpoint.json").is_file()
    finally:
        ckpt_io.unlock_run(run)


def test_an_incomplete_copy_beside_a_stranded_one_is_passed_over(tiny_run, tmp_path):
    """A copy a killed save was still writing (no checkpoint.json yet) is neither read nor put back."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    meta = json.loads((run / "last" / "checkpoint.json").read_text())
    dead = 2**22 - 5  # no such process
    (run / "last").rename(run / f".last.old-{dead}")
    (run / f".last.tmp-{dead}").mkdir()
    (run / f".last.tmp-{dead}" / "model.safetensors").write_bytes(b"")
    assert ckpt_io.stranded(run, "last") == run / f".last.old-{dead}"
    assert load(run, prefer="last").trainer == meta["trainer"]
    assert ckpt_io.lock_run(run)
    try:
        assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in tiny_run.iterdir())
        assert json.loads((run / "last" / "checkpoint.json").read_text()) == meta
    finally:
        ckpt_io.unlock_run(run)


def test_a_copy_whose_checkpoint_json_was_cut_short_is_not_put_in_place(tiny_run, tmp_path, monkeypatch):
    """A save killed as it wrote checkpoint.json (the first last/ of a run) left it cut short in its copy: the next
    training's lock put that copy in place as last/, which neither --resume nor generate could then read. Now the
    file is written under another name and renamed once whole, and a cut-short one is never taken for a checkpoint."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    dead = 2**22 - 5  # no such process
    (run / "last").rename(run / f".last.tmp-{dead}")
    meta = run / f".last.tmp-{dead}" / "checkpoint.json"
    meta.write_bytes(meta.read_bytes()[:40])
    assert ckpt_io.stranded(run, "last") is None
    assert load(run, prefer="last").path == run / "best"  # (with a note that last/ is missing)
    assert ckpt_io.lock_run(run)
    try:
        assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in tiny_run.iterdir() if p.name != "last")
    finally:
        ckpt_io.unlock_run(run)
    real, seen = ckpt_io.json.dump, []  # what a save's copy holds while its checkpoint.json is being written

    def watched(obj, f, **kw):
        seen.append(sorted(p.name for p in Path(f.name).parent.iterdir()))
        return real(obj, f, **kw)

    monkeypatch.setattr(ckpt_io.json, "dump", watched)
    ckpt_io.save(load(run), run / "copy")
    assert seen == [["checkpoint.json.part", "model.safetensors", "trainer.safetensors"]]
    assert sorted(p.name for p in (run / "copy").iterdir()) == ["checkpoint.json", "model.safetensors", "trainer.safetensors"]


def test_a_checkpoint_moved_aside_in_a_folder_a_training_holds_is_being_replaced(tiny_run, tmp_path):
    """The training holding the folder is saving: what it moved aside is not read where it lies."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert ckpt_io.lock_run(run)
    try:
        (run / "last").rename(run / f".last.old-{os.getpid()}")
        with pytest.raises(CharlmError, match="being replaced"):
            ckpt_io.resolve(run, prefer="last")
    finally:
        ckpt_io.unlock_run(run)


def test_a_failed_second_rename_puts_the_old_checkpoint_back(tiny_ckpt, tmp_path, monkeypatch):
    c = load(tiny_ckpt)
    target = save(c, tmp_path / "ck")
    before = (target / "checkpoint.json").read_bytes()
    monkeypatch.setattr(ckpt_io, "_exchange", lambda a, b: False)  # two renames
    real = os.replace

    def failing(src, dst):
        if Path(src).name.startswith(".ck.tmp-"):
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(ckpt_io.os, "replace", failing)
    with pytest.raises(CharlmError, match="No space left on device"):
        save(dataclasses.replace(c, metrics=c.metrics + [{"epoch": 99}]), target)
    assert (target / "checkpoint.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_the_tidying_waits_for_a_live_saves_second_rename(tiny_run, tmp_path):
    """A save under way (process 1 runs; no lock: checkpoint.save called directly) between its two renames: the
    tidying waits a moment rather than put a copy back under it."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    new, old = run / ".last.tmp-1", run / ".last.old-1"
    shutil.copytree(run / "last", new)
    (run / "last").rename(old)
    errors = []

    def second_rename():
        try:
            os.replace(new, run / "last")
            shutil.rmtree(old)
        except OSError as e:
            errors.append(e)

    timer = threading.Timer(0.01, second_rename)
    timer.start()
    try:
        assert ckpt_io.lock_run(run)
        ckpt_io.unlock_run(run)
    finally:
        timer.join()
    assert not errors and sorted(p.name for p in run.iterdir()) == sorted(p.name for p in tiny_run.iterdir())


def test_an_untied_models_decoder_weight_is_not_passed_over():
    from charlm.model import CharLM

    model = CharLM(ModelConfig(vocab_size=10, embedding_size=8, hidden_size=16, tie_weights=False))
    weights = {k: v for k, v in model.state_dict().items() if k != "decoder.weight"}
    with pytest.raises(CharlmError, match=r"w: weights do not fit the model config \(missing \['decoder.weight'\]"):
        ckpt_io.load_weights(model, weights, "w")


def test_only_run_folders_are_named_beside_a_missing_one(tmp_path, tiny_run):
    shutil.copytree(tiny_run, tmp_path / "runs" / "demo")
    (tmp_path / "runs" / "notes").mkdir()  # a folder, but no run
    with pytest.raises(CharlmError, match=r"runs/jaychou: no such checkpoint folder; the run in .*runs/ is demo$"):
        load_model(tmp_path / "runs" / "jaychou")


def test_a_carried_copy_memory_with_ids_past_the_vocabulary_is_refused(tmp_path):
    from charlm.train import Trainer

    from .conftest import tiny_train_config

    cfg = tiny_train_config(tmp_path)
    corpus = load_corpus(cfg)
    trainer = Trainer(ModelConfig(vocab_size=len(corpus.vocab), embedding_size=16, hidden_size=32, copy_window=8), cfg, corpus, log=None)
    state = trainer.model.init_state(cfg.batch_size)
    trainer._check_carried(state)
    ids = state[-1].clone()
    ids[0, 0] = len(corpus.vocab)  # one past the last id
    with pytest.raises(ValueError, match="the carried copy memory holds ids outside the vocabulary"):
        trainer._check_carried((*state[:-1], ids))


def test_a_checkpoint_in_a_folder_this_user_may_not_enter_is_an_error_naming_that_folder(tiny_run, tmp_path, monkeypatch):
    """(a run folder of another user's, mode 700): it was a bare "…/checkpoint.json: Permission denied", exit 1"""
    from charlm.errors import CharlmError

    shutil.copytree(tiny_run, tmp_path / "shared" / "run")
    closed = tmp_path / "shared"
    stat, access = os.stat, os.access

    def denied(p, *args, **kwargs):
        if closed in Path(p).parents:
            raise PermissionError(13, "Permission denied", os.fspath(p))
        return stat(p, *args, **kwargs)

    monkeypatch.setattr(os, "stat", denied)
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) != closed and access(p, mode, **kw))
    with pytest.raises(CharlmError, match=f"^{closed}: cannot read the folder \\(Permission denied\\)$"):
        ckpt_io.load(closed / "run")
    monkeypatch.setattr(os, "stat", stat)
    read_bytes = Path.read_bytes

    def unreadable(self):  # (root reads any file: a mode-600 file of another user's, as that user meets it)
        if self.name == "checkpoint.json":
            raise PermissionError(13, "Permission denied", os.fspath(self))
        return read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", unreadable)
    with pytest.raises(CharlmError, match=r"best/checkpoint\.json: cannot read \(Permission denied\)$"):  # (not "truncated")
        ckpt_io.load(closed / "run")


def test_a_run_that_stored_its_texts_path_as_typed_is_read_from_anywhere(tmp_path, monkeypatch):
    """Before 2026-11-30 charlm stored --data as typed: a run trained with `--data corpus.txt --out run` could be read
    again only from the folder it was trained in ("corpus.txt: no such file or folder" anywhere else, and --resume
    refused another --data). Its folder is the run folder without --out: the text is found there."""
    import shutil

    from charlm.data import training_text

    from .conftest import train_tiny

    train_tiny(tmp_path / "t", epochs=1)
    meta = tmp_path / "t" / "run" / "best" / "checkpoint.json"
    d = json.loads(meta.read_text())
    text = training_text(ckpt_io.load(tmp_path / "t" / "run"))
    d["train_config"].update(data="corpus.txt", out="run")  # as typed, in the folder t
    meta.write_text(json.dumps(d))
    monkeypatch.chdir(tmp_path)  # elsewhere
    c = ckpt_io.load(tmp_path / "t" / "run" / "best")
    assert c.train_config.data == str(tmp_path / "t" / "corpus.txt") and training_text(c) == text
    shutil.copytree(tmp_path / "t" / "run", tmp_path / "copied")  # a copy elsewhere: its folder cannot be told
    c = ckpt_io.load(tmp_path / "copied" / "best")
    assert c.train_config.data == "corpus.txt"
    with pytest.raises(CharlmError, match="corpus.txt: no such file or folder here; the run stored its training text's path "
                                          "as typed .*: run this from the folder it was trained in"):
        training_text(c)
    monkeypatch.chdir(tmp_path / "t")
    assert training_text(c) == text  # (from there, as before)
    # found from here, it is read from here, as before, though the copy's folder holds another corpus.txt
    shutil.copytree(tmp_path / "t" / "run", tmp_path / "other" / "run")
    (tmp_path / "other" / "corpus.txt").write_text("another text\n" * 100, encoding="utf-8")
    c = ckpt_io.load(tmp_path / "other" / "run" / "best")
    assert c.train_config.data == "corpus.txt" and training_text(c) == text


def test_a_run_folder_that_cannot_be_made_is_named(tmp_path, monkeypatch):
    """--out /proc/x (root passes the access checks): "charlm: error: /proc/x: No such file or directory" named no flag."""
    pytest.importorskip("fcntl")

    def refused(self, *args, **kwargs):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(Path, "mkdir", refused)
    with pytest.raises(CharlmError, match=r"^the run folder .*x cannot be made: Operation not permitted$"):
        ckpt_io.lock_run(tmp_path / "x")


def test_a_file_where_a_checkpoint_folder_goes_is_refused_before_training(tiny_run, tmp_path, capsys):
    """A file named best in a run folder: the first save swapped it out and could not remove it, the next failed
    with "cannot write the checkpoint .../best: File exists" after an epoch of training."""
    from charlm.cli import main

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    shutil.rmtree(run / "best")
    (run / "best").write_text("not a checkpoint")
    assert main(["train", "--resume", str(run), "--epochs", "7"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"charlm: error: {run / 'best'} is a file, where a run keeps a checkpoint folder: move it away, or give another "
        f"--out (a new run's --overwrite removes it)")
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in tiny_run.iterdir())
    from .test_cli import LYRIC, TINY  # a new run over it, with --overwrite: removed with the rest (as it was before)

    (tmp_path / "c.txt").write_text(LYRIC * 40, encoding="utf-8")
    assert main(["train", "--data", str(tmp_path / "c.txt"), *TINY, "--epochs", "1", "--out", str(run), "--overwrite"]) == 0
    assert (run / "best" / "checkpoint.json").is_file()
