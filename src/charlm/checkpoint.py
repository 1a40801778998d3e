"""Checkpoints as plain files: a folder with ``model.safetensors``, ``trainer.safetensors`` and ``checkpoint.json``.

No pickle anywhere: safetensors holds only tensors and JSON only data, so loading an
untrusted checkpoint cannot run code.  A folder is written beside its final name and
renamed into place, so a crash never leaves a half-written checkpoint under that name.
``checkpoint.json`` records the SHA-256 of both tensor files, so a truncated or swapped
file is caught on loading.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import math
import os
import re
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save_file

from .config import SEED_MAX, ModelConfig, TrainConfig, from_dict, to_dict
from .errors import CharlmError, CharlmWarning
from .vocab import Vocab

if TYPE_CHECKING:  # (model imports this module)
    from .model import CharLM

FORMAT = "charlm-checkpoint"
FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
TRAINER_FILE = "trainer.safetensors"
META_FILE = "checkpoint.json"


@dataclass
class Checkpoint:
    """What a checkpoint holds, in memory."""

    model_config: ModelConfig
    train_config: TrainConfig
    vocab: Vocab
    weights: dict[str, torch.Tensor]
    metrics: list[dict] = field(default_factory=list)
    trainer: dict = field(default_factory=dict)  # JSON-able trainer state (epoch, step, schedule, ...)
    trainer_tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # optimizer moments, RNG, carried state
    path: Path | None = None

    def __repr__(self) -> str:  # (its vocabulary, weights and metrics would fill a notebook's cell)
        t = self.trainer
        at = f", epoch {t['epoch']}, step {t['step']}" if "epoch" in t and "step" in t else ""
        return (f"Checkpoint({str(self.path) if self.path else None!r}{at}, {self.model_config!r}, "
                f"vocabulary {len(self.vocab):,}, {len(self.metrics)} metrics rows)")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _plain(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu").contiguous()


def model_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict without tied duplicates (safetensors stores each tensor once)."""
    out, seen = {}, set()
    for name, t in model.state_dict().items():
        if t.data_ptr() in seen and t.numel() > 0:
            continue
        seen.add(t.data_ptr())
        out[name] = _plain(t)
    return out


def check_writable(path: str | os.PathLike, what: str, folder: bool = False) -> Path:
    """``path`` as a Path if a file (or with ``folder``, a folder) can be written there; else a one-line error.

    Checked before any work, so that a bad second output never leaves the first one written.
    """
    path = Path(path)
    if not folder and _not_a_file(path):  # a pipe or a device (/dev/stdout, /dev/null) is written into, where it is
        if os.access(path, os.W_OK):
            return path
        raise CharlmError(f"{what} {path} is not writable")
    if path.exists() and path.is_dir() != folder:
        raise CharlmError(f"{what} {path} is {'a file' if folder else 'a folder'}; give {'a folder' if folder else 'a file name'}")
    if folder and path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
        raise CharlmError(f"{what} {path} is not writable")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise CharlmError(f"{what} {path} cannot be made: {parent} is a file")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise CharlmError(f"{what} {path} cannot be made: {parent} is not writable")
            break
    return path


_run_locks: dict[Path, int] = {}
WINDOWS = os.name == "nt"


def lock_run(out: str | os.PathLike) -> bool:
    """Hold an exclusive lock on the run folder ``out`` (made if missing) until :func:`release_run_locks` (or
    :func:`unlock_run`); whether this call took it (False: held already, or no locks here).

    Two trainings writing one folder would interleave their checkpoints and metrics, and an
    ``--overwrite`` would delete a running one's files: the second is refused.  The lock is the
    kernel's (flock on the folder itself), so a killed run never leaves it held.
    """
    try:
        import fcntl
    except ImportError:  # not on this platform: unlocked, as before
        return False
    out = Path(out).resolve()
    if out in _run_locks:
        return False
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # (root passes the access checks before: /proc, /sys)
        raise CharlmError(f"the run folder {out} cannot be made: {e.strerror or e}", exit_code=1) from None
    fd = os.open(out, os.O_RDONLY)
    try:
        for wait in (0.0, 0.05, 0.1, 0.2):  # a reader's in_use() holds a shared lock for a moment: not a training
            time.sleep(wait)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if wait == 0.2:
                    raise
    except BlockingIOError:
        os.close(fd)
        raise CharlmError(f"{out} is in use by another `charlm train` that is still running; "
                          f"wait for it to end (or stop it), or give another --out") from None
    except OSError:  # a file system without locks (some network mounts): go on unlocked
        os.close(fd)
        return False
    _run_locks[out] = fd
    tidy_run(out)  # no save of another process is under way in it now: what a killed one left is put right
    return True


def unlock_run(out: str | os.PathLike) -> None:
    """Let go of the run folder ``out``'s lock, if this process holds it."""
    fd = _run_locks.pop(Path(out).resolve(), None)
    if fd is not None:
        os.close(fd)


def in_use(out: str | os.PathLike) -> bool:
    """Whether another process holds the run folder ``out``'s lock (a `charlm train` still writing it)."""
    try:
        import fcntl
        fd = os.open(out, os.O_RDONLY)
    except (ImportError, OSError):
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


RUN_FILES = ("best", "last", "metrics.jsonl", "curves.png")  # what a training run writes into its folder


def holds_run(out: str | os.PathLike) -> bool:
    """Whether the folder ``out`` holds a training run's checkpoint (in ``best/`` or ``last/``)."""
    return any((Path(out) / name / META_FILE).is_file() for name in ("best", "last"))


def _seed_read(train_config: dict) -> dict:
    """A train config as stored, its seed as the CPU's generator read it: seeds went up to 2**63 - 1 before 2026-12-02,
    and the generator took their low 32 bits (as the batch order and the samples' streams did), so the run is the same."""
    seed = train_config.get("seed")
    return {**train_config, "seed": seed % 2**32} if isinstance(seed, int) and seed > SEED_MAX else train_config


def _data_found(train_config: dict, ckpt_path: Path) -> dict:
    """A train config as stored, its ``data`` absolute: charlm stored the path as typed before 2026-11-30, so that a run
    trained with ``--data corpus.txt`` could be read again only from the folder it was trained in.  That folder is the
    run folder's path without ``out`` (as typed too); where the text is not found from here but is there, the path is
    made absolute (the training's checksum still says whether it is the text)."""
    data, out = train_config.get("data"), train_config.get("out")
    if not (isinstance(data, str) and data and not data.startswith("<") and not os.path.isabs(data) and isinstance(out, str)
            and out and not os.path.isabs(out)) or (home := run_folder(ckpt_path)) is None or os.path.exists(data):
        return train_config  # (found from here, as it always was: read so)
    home, tail = Path(os.path.abspath(home)).parts, Path(os.path.normpath(out)).parts
    if ".." in tail or len(tail) >= len(home) or home[-len(tail):] != tail:
        return train_config
    found = Path(*home[: -len(tail)]) / data
    return {**train_config, "data": str(found)} if os.path.exists(found) else train_config  # (False where it cannot tell)


def run_folder(ckpt_path: str | os.PathLike) -> Path | None:
    """The run folder a checkpoint belongs to: the folder holding it as best/ or last/ (or as a save's copy a kill left,
    ``.last.old-PID``, ``.last.tmp-PID``); None for a checkpoint folder of its own (a copy kept under another name)."""
    p = Path(ckpt_path)
    return p.parent if p.name in ("best", "last") or re.fullmatch(r"\.(best|last)\.(old|tmp)-\d+", p.name) else None


def clear_run(out: Path) -> None:
    """Remove what a training run left in ``out`` (its checkpoints, metrics and plot), nothing else; a checkpoint that
    cannot be removed whole is an error before anything is removed."""
    for name in ("best", "last"):
        check_replaceable(Path(out) / name, overwrite=True)
    for name in RUN_FILES:
        path = Path(out) / name
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
        except OSError as e:
            raise CharlmError(f"cannot remove {path} (the old run's): {e.strerror or e}", exit_code=1) from None


def check_replaceable(path: Path, overwrite: bool = False) -> None:
    """A one-line error if the checkpoint folder ``path`` (if there) cannot be removed whole, as replacing it with a
    new save removes the old one: a folder in it that this user may not write (made read-only, or another user's); or
    a file in its place, unless ``overwrite`` removes it (a save swapped one out, then could neither remove it nor save
    again)."""
    if os.path.lexists(path) and not path.is_dir() and not overwrite:
        raise CharlmError(f"{path} is a file, where a run keeps a checkpoint folder: move it away, or give another "
                          f"--out (a new run's --overwrite removes it)")
    if not path.is_dir() or path.is_symlink():
        return
    for root, _, _ in os.walk(path, onerror=lambda e: _not_replaceable(path, Path(e.filename), "read")):
        if not os.access(root, os.W_OK | os.X_OK):
            _not_replaceable(path, Path(root))


def _not_replaceable(path: Path, where: Path, verb: str = "write") -> None:
    what = f"this user may not {verb} it" if where == path else f"this user may not {verb} {where} in it"
    raise CharlmError(f"{path} cannot be replaced: {what} (a training replaces its checkpoints; make it writable, or "
                      f"give another --out)")


def _leftovers(out: Path, name: str, kind: str, trust_pids: bool = True) -> list[Path]:
    """What saves of ``name`` that were killed left beside it: ``kind`` tmp (a copy being written, or the old one after an
    exchange) or old (the checkpoint moved aside between two renames), each named by its saving process's id, of a
    process no longer running (a live one may be saving now, without the lock: ``checkpoint.save`` called directly).
    ``trust_pids=False``: whatever the ids say (a process id is reused, and a save's two renames take microseconds)."""
    return [p for p in out.glob(f".{glob.escape(name)}.{kind}-*") if not (trust_pids and _running(p.name.rsplit("-", 1)[1]))]


def _running(pid: str) -> bool:
    """Whether the process ``pid`` (another than this one) runs on this machine; when unsure, yes."""
    if WINDOWS:  # os.kill(pid, 0) is no question there: signal 0 is CTRL_C_EVENT, sent to the process
        return pid != str(os.getpid())  # so: unsure, but for this process's own
    try:
        return int(pid) != os.getpid() and (os.kill(int(pid), 0) or True)
    except ProcessLookupError:
        return False
    except ValueError:  # not a process id: not a save's name
        return True
    except OSError:  # PermissionError: it runs, as another user
        return True


def stranded(out: Path, name: str, trust_pids: bool = True) -> Path | None:
    """Where the checkpoint ``out/name`` lies when a save was killed between its two renames (``name`` missing): the
    newest complete copy a killed save left (checkpoint.json, written last, is there); None when nothing is stranded."""
    if (out / name).exists():
        return None
    found = [p for kind in ("tmp", "old") for p in _leftovers(out, name, kind, trust_pids) if _whole(p / META_FILE)]
    return max(found, key=lambda p: (p / META_FILE).stat().st_mtime_ns, default=None)


def _whole(meta: Path) -> bool:
    """Whether ``meta`` is a checkpoint.json written to its end (a save killed as it wrote one, before this version
    wrote it under another name first, left it cut short: put in place as last/, nothing could read or resume it)."""
    try:
        return isinstance(json.loads(meta.read_bytes()), dict)
    except (OSError, ValueError):
        return False


def tidy_run(out: str | os.PathLike) -> None:
    """Put right what killed saves left in the run folder ``out`` (call it holding the run's lock): a checkpoint moved
    aside goes back under its name, and temporary copies (each the size of a checkpoint) are removed.  Best effort:
    what cannot be moved or removed stays (a reader still finds a stranded checkpoint)."""
    out = Path(out)
    with contextlib.suppress(OSError):
        for name in ("best", "last"):
            found = stranded(out, name)
            if found is None and not (out / name).exists() and next(out.glob(f".{name}.*-*"), None):
                time.sleep(0.1)  # a live save's second rename comes within microseconds; still missing: its id was reused
                found = stranded(out, name, trust_pids=False)
            if found is not None:
                os.replace(found, out / name)
        for name in RUN_FILES:
            for leftover in _leftovers(out, name, "tmp") + (_leftovers(out, name, "old") if name in ("best", "last") else []):
                if leftover.is_dir() and not leftover.is_symlink():
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    leftover.unlink(missing_ok=True)


def missing_folders(path: str | os.PathLike) -> list[Path]:
    """The folders ``path.mkdir(parents=True)`` would make, deepest first: what a run that fails at once may remove."""
    path = Path(os.path.abspath(path))
    return [p for p in (path, *path.parents) if not os.path.lexists(p)]


def remove_empty(folders: list[Path]) -> None:
    """Remove each of ``folders`` (deepest first) that is empty; stop at the first that is not (best effort)."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def release_run_locks() -> None:
    """Let go of the run folders this process locked (at the end of a training; exiting does it too)."""
    while _run_locks:
        os.close(_run_locks.popitem()[1])


def finite(x):
    """``x`` with each inf or NaN float in it, however nested, made None: JSON has neither (Python's json writes
    ``Infinity``, which other readers refuse), so a perplexity that overflowed is written as null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite(v) for v in x]
    return x


def write_atomic(*files: tuple[Path, bytes]) -> None:
    """Write each ``(path, data)`` beside its final name, then rename them all into place.

    Readers see the old file or the whole new one, and a failure (a full disk, a permission)
    before the renames changes none of the files; its error names the file asked for.  A symbolic
    link is written through (its target replaced, the link kept); a pipe or a device (a FIFO,
    /dev/stdout to a terminal) is written into directly, as nothing can be renamed over it, before
    the renames: one that fails (/dev/full) leaves none of the files written.
    """
    direct = [(path, data) for path, data in files if _not_a_file(path)]
    files = tuple((Path(os.path.realpath(path)) if path.is_symlink() else path, data) for path, data in files
                  if (path, data) not in direct)
    tmps: list[Path] = []
    try:
        for path, data in files:
            tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmps.append(tmp)
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as e:
                raise CharlmError(f"cannot write {path}: {e.strerror or e}", exit_code=1) from None
        gone = None  # a reader that went away (--out /dev/stdout | head) fails no file: they are still put in place
        for path, data in direct:  # before the renames: a device that fails (/dev/full) leaves no file of the set written
            try:
                _write_direct(path, data)
            except BrokenPipeError as e:
                gone = e
                break
        for (path, _), tmp in zip(files, tmps):
            try:
                os.replace(tmp, path)
            except OSError as e:  # (a folder where the file goes): the name asked for, not the temporary one
                raise CharlmError(f"cannot write {path}: {e.strerror or e}", exit_code=1) from None
        for path, _ in files:  # what writes of these names that were killed (kill -9) left beside them: else there for good
            for leftover in _leftovers(path.parent, path.name, "tmp"):
                if leftover.is_file() and not leftover.is_symlink():
                    with contextlib.suppress(OSError):
                        leftover.unlink()
        if gone is not None:
            raise gone
    finally:
        for tmp in tmps:
            if tmp.exists():
                tmp.unlink()


def _write_direct(path: Path, data: bytes) -> None:
    """``data`` into a pipe or a device, or the stream a name such as /dev/stdout stands for."""
    try:
        fd = _own_fd(path)
        if fd is None:  # a pipe or a device; appending, as opening a redirected stream's file anew would empty it
            with open(path, "ab") as f:
                f.write(data)
            return
        for stream in (sys.stdout, sys.stderr):  # what was printed before comes first
            with contextlib.suppress(AttributeError, ValueError, OSError):
                stream.flush()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BrokenPipeError:  # the reader went away (--out /dev/stdout | head): quietly, as a closed pipe ends a command
        raise
    except OSError as e:
        raise CharlmError(f"cannot write {path}: {e.strerror or e}", exit_code=1) from None


_STREAM = re.compile(r"/dev/(stdin|stdout|stderr)|/dev/fd/(\d+)|/proc/(?:self|\d+)/fd/(\d+)")


def _own_fd(path: Path) -> int | None:
    """The descriptor of this process's that ``path`` names (/dev/stdout, /dev/fd/3, /proc/self/fd/1), if it names one."""
    p = os.path.abspath(path)
    m = _STREAM.fullmatch(p)
    if m is None or (m[3] and not p.startswith(("/proc/self/", f"/proc/{os.getpid()}/"))):
        return None
    return ("stdin", "stdout", "stderr").index(m[1]) if m[1] else int(m[2] or m[3])


def names_a_stream(path: str | os.PathLike) -> bool:
    """Whether ``path`` is, or links to, one of the system's names for an open stream (/dev/stdin, /dev/fd/1,
    /proc/self/fd/0), which may lead to a regular file now (a redirection) but is no name for it."""
    p = os.path.abspath(path)
    for _ in range(40):  # each link of a chain, as a link to /dev/stdin is a stream too
        if _STREAM.fullmatch(p):
            return True
        if not os.path.islink(p):
            return False
        p = os.path.abspath(os.path.join(os.path.dirname(p), os.readlink(p)))
    return False


def _not_a_file(path: Path) -> bool:
    """Whether ``path`` is written into rather than replaced: a pipe, a device, or a stream's name (its link followed)."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return names_a_stream(path) or (not stat.S_ISREG(mode) and not stat.S_ISDIR(mode))


def _file_mode() -> int:
    """The mode ``open()`` gives a new file here: 0666 less the umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def save(ckpt: Checkpoint, path: str | os.PathLike) -> Path:
    """Write ``ckpt`` to the folder ``path`` atomically (a sibling temporary folder, then renames); a folder that cannot
    be written (or a full disk) is a :class:`CharlmError`."""
    try:
        return _save(ckpt, Path(path))
    except OSError as e:
        raise CharlmError(f"cannot write the checkpoint {path}: {e.strerror or e}", exit_code=1) from None
    except SafetensorError as e:  # safetensors reports its own write's failures (a full disk) so, not as an OSError
        raise CharlmError(f"cannot write the checkpoint {path}: {e}", exit_code=1) from None


def _save(ckpt: Checkpoint, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    old = path.parent / f".{path.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        save_file({k: _plain(v) for k, v in ckpt.weights.items()}, str(tmp / MODEL_FILE))
        save_file({k: _plain(v) for k, v in ckpt.trainer_tensors.items()}, str(tmp / TRAINER_FILE))
        for name in (MODEL_FILE, TRAINER_FILE):  # safetensors writes 0600; give them checkpoint.json's mode
            os.chmod(tmp / name, _file_mode())
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model_config": to_dict(ckpt.model_config),
            "train_config": to_dict(ckpt.train_config),
            "vocab": ckpt.vocab.to_dict(),
            "metrics": ckpt.metrics,
            "trainer": ckpt.trainer,
            "sha256": {MODEL_FILE: _sha256(tmp / MODEL_FILE), TRAINER_FILE: _sha256(tmp / TRAINER_FILE)},
        }
        with open(tmp / f"{META_FILE}.part", "w", encoding="utf-8") as f:
            json.dump(finite(meta), f, ensure_ascii=False, indent=1, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp / f"{META_FILE}.part", tmp / META_FILE)  # there whole or not at all: what marks a copy complete
        if not (path.exists() and _exchange(tmp, path)):  # the old one is now at tmp, removed below
            if path.exists():  # no atomic exchange here: two renames, with a moment of no checkpoint between them
                os.replace(path, old)
            try:
                os.replace(tmp, path)
            except OSError:
                if old.exists():  # the old one back, rather than none (the finally below removes what is left)
                    os.replace(old, path)
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return path


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders in one atomic step (Linux's renameat2 with RENAME_EXCHANGE); False where that is not possible.

    Replacing a checkpoint folder otherwise takes two renames, and a crash or power cut between them
    would leave no checkpoint under its name.
    """
    global _renameat2
    if _renameat2 is None:
        _renameat2 = False
        if sys.platform.startswith("linux"):  # (elsewhere there is none; on Windows CDLL(None) is a TypeError)
            try:
                import ctypes

                _renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
            except (OSError, AttributeError):  # a C library without it
                pass
    if not _renameat2:
        return False
    at_fdcwd, rename_exchange = -100, 2
    return _renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0  # else e.g. a file system without it


_renameat2 = None  # looked up on first use


def resolve(path: str | os.PathLike, prefer: str = "best", trust_pids: bool = True) -> Path:
    """A checkpoint folder from a path: the folder itself, or a run folder's ``best`` or ``last``."""
    if prefer not in ("best", "last"):
        raise ValueError(f"prefer must be 'best' or 'last', got {prefer!r}")
    try:
        return _resolve(Path(path), prefer, trust_pids)
    except PermissionError as e:  # a folder on the way that this user may not enter: that one named
        asked = Path(e.filename or path)
        where = next((d for d in reversed(asked.parents) if not os.access(d, os.X_OK)), asked.parent)
        raise CharlmError(f"{where}: cannot read the folder ({e.strerror})") from None


def _resolve(p: Path, prefer: str, trust_pids: bool) -> Path:
    if (p / META_FILE).is_file():
        return p
    if p.is_file() and (p.parent / META_FILE).is_file():  # a checkpoint's own file (checkpoint.json, model.safetensors)
        return p.parent
    order = ("best", "last") if prefer == "best" else ("last", "best")
    if not (p / order[0] / META_FILE).is_file() and next(p.glob(f".{order[0]}.old-*"), None):
        if (found := stranded(p, order[0], trust_pids)) is not None and not in_use(p):  # its save was killed: read it where it lies
            return found  # (the next training of the folder puts it back)
        # a save that takes two renames has moved it aside for a moment: load() waits, rather than take the other one
        raise CharlmError(f"{p / order[0]}: being replaced")
    for sub in order:
        if (p / sub / META_FILE).is_file():
            if sub != order[0] and (p / order[0]).is_dir():  # (a best/ that is missing altogether: a run not yet validated)
                warnings.warn(f"{p / order[0]} holds no {META_FILE}: reading {p / sub} instead", CharlmWarning, stacklevel=3)
            return p / sub
    if not p.exists():
        try:
            runs = sorted(q.name for q in p.parent.iterdir() if q.is_dir() and holds_run(q))
        except OSError:  # no such folder either, or not one this user may list
            runs = []
        where = "here" if str(p.parent) == "." else f"in {p.parent}/"
        near = (f"; the run {where} is {runs[0]}" if len(runs) == 1 else
                f"; the runs {where} are {', '.join(runs[:8])}{' …' if len(runs) > 8 else ''}" if runs else "")
        raise CharlmError(f"{p}: no such checkpoint folder{near}")
    if p.is_dir() and in_use(p):
        raise CharlmError(f"{p}: no checkpoint yet; the `charlm train` still writing this folder saves one at "
                          f"each validation (or epoch end)")
    raise CharlmError(f"{p}: not a charlm checkpoint (no {META_FILE}, nor best/ or last/ holding one)")


def load(path: str | os.PathLike, prefer: str = "best", with_trainer: bool = True, with_weights: bool = True) -> Checkpoint:
    """Read and check a checkpoint folder; every problem is a one-line :class:`CharlmError`.

    ``with_weights=False`` reads the configuration, vocabulary and metrics only (``weights`` empty);
    ``with_trainer=False`` leaves out the optimizer's and random streams' state (``trainer_tensors`` empty), which
    only a resume needs, and does not ask that the run's position be whole (``trainer`` is what the JSON holds).
    A checkpoint replaced by a running training while it is read (the JSON of one, a tensor file of
    the next) is read again, so a reader never sees that as damage.
    """
    attempts = 5  # 0.1 s; once a save's old copy is seen beside it (its two renames), up to 2 s on a busy machine
    attempt = 0
    while True:
        last = attempt >= attempts - 1  # (re-reads of a replaced checkpoint count too: past it, a miss raises)
        try:
            p = resolve(path, prefer, trust_pids=not last)  # moved aside that long: not by a live save's renames
            first = _read_meta(p)
        except CharlmError:  # where a save takes two renames, there is a moment without the folder: wait it out
            # (asked at each miss: by the last, the save may be over, its old copy gone, and another one's moment hit)
            if attempts == 5 and _moving(Path(path)):
                attempts, last = 80, False
            if last:
                raise
            time.sleep(0.025)
            attempt += 1
            continue
        try:
            return _load(p, first, with_trainer, with_weights)
        except CharlmError:  # the same checkpoint all along: real damage; else it was replaced (or removed) as it was read
            if _read_meta(p, missing_ok=True) == first or attempt >= 80:
                raise
        attempt += 1


def _moving(p: Path) -> bool:
    """Whether a save is replacing the checkpoint ``p`` (or best/ or last/ in the run folder ``p``) now: its old copy
    lies aside, named by the id of a process still running (this one's, a thread's save; not one a killed save left)."""
    try:
        asides = list(p.parent.glob(f".{glob.escape(p.name)}.old-*"))
        if p.is_dir():
            asides += [q for name in ("best", "last") for q in p.glob(f".{name}.old-*")]
    except OSError:  # a folder this user may not enter: no save of its is seen
        return False
    pids = {q.name.rsplit("-", 1)[1] for q in asides}
    return any(pid == str(os.getpid()) or _running(pid) for pid in pids)


def _read_meta(p: Path, missing_ok: bool = False) -> bytes | None:
    try:
        return (p / META_FILE).read_bytes()
    except FileNotFoundError:
        if missing_ok:
            return None
        raise CharlmError(f"{p / META_FILE}: unreadable or truncated (FileNotFoundError)") from None
    except PermissionError as e:
        raise CharlmError(f"{p / META_FILE}: cannot read ({e.strerror})") from None
    except OSError as e:
        raise CharlmError(f"{p / META_FILE}: unreadable or truncated ({e.__class__.__name__})") from None


def _load(p: Path, raw: bytes, with_trainer: bool, with_weights: bool) -> Checkpoint:
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as e:  # (not UTF-8, not JSON, nested past Python's stack, a 5,000-digit number)
        raise CharlmError(f"{p / META_FILE}: unreadable or truncated ({e.__class__.__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CharlmError(f"{p}: not a charlm checkpoint")
    version = meta.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise CharlmError(f"{p}: checkpoint format {version} is newer than this charlm reads ({FORMAT_VERSION}); upgrade charlm")
    shapes = {"format_version": int, "sha256": dict, "model_config": dict, "train_config": dict, "vocab": dict,
              "metrics": list, "trainer": dict}
    for key, kind in shapes.items():
        value = meta.get(key, [] if key == "metrics" else {} if key == "trainer" and not with_trainer else None)
        if not isinstance(value, kind) or isinstance(value, bool) or (key == "format_version" and value < 1):
            raise CharlmError(f"{p}: damaged checkpoint ({META_FILE}: {key} is {'missing' if key not in meta else repr(value)[:60]})")
    if not all(isinstance(m, dict) for m in meta.get("metrics", [])):
        raise CharlmError(f"{p}: damaged checkpoint ({META_FILE}: metrics must be a list of objects)")
    number = lambda x: isinstance(x, (int, float)) and not isinstance(x, bool)  # noqa: E731
    for i, m in enumerate(meta.get("metrics", []), 1):  # what is read back: compared, printed, resumed from
        for key in ("epoch", "step", "train_loss", "val_loss"):
            value = m.get(key)  # (a validation loss is null without a split)
            if key in m and not (number(value) or (key == "val_loss" and value is None)):
                raise CharlmError(f"{p}: damaged checkpoint ({META_FILE}: metrics row {i}'s {key} is {str(value)[:40]!r}, not a number)")
    if with_trainer:  # what a resume reads first (the position in the run) is there and whole
        t = meta["trainer"]
        if not t:  # saved without a trainer's state (a model put together in Python): weights and configs only
            raise CharlmError(f"{p}: damaged checkpoint, or one saved without a trainer's state ({META_FILE}: trainer is empty), "
                              "so it cannot be resumed; load_model() or load(..., with_trainer=False) reads its model")
        counts = ("epoch", "batch", "step", "since_best", "epoch_tokens")
        if not all(isinstance(t.get(k), int) and not isinstance(t.get(k), bool) and 0 <= t[k] < 2**62 for k in counts):
            raise CharlmError(f"{p}: damaged checkpoint ({META_FILE}: trainer needs {', '.join(counts)} as whole numbers "
                              f"from 0 to 2**62)")
        pending = t.get("pending_validation")
        if not (t.get("best_val") is None or number(t["best_val"])) or not all(number(t.get(k, 0)) for k in ("elapsed", "train_seconds")):
            raise CharlmError(f"{p}: damaged checkpoint ({META_FILE}: trainer's best_val, elapsed and train_seconds must be numbers)")
        if pending is not None and not (isinstance(pending, dict) and all(isinstance(pending.get(k), bool) for k in ("at_epoch_end", "over_time"))):
            raise CharlmError(f"{p}: damaged checkpoint ({META_FILE}: trainer's pending_validation is {str(pending)[:60]})")
        steps = t.get("schedule_steps", 0)
        if not (isinstance(steps, int) and not isinstance(steps, bool) and steps >= 0):
            raise CharlmError(f"{p}: damaged checkpoint ({META_FILE}: trainer's schedule_steps is {steps!r}, not a count)")
        for name in ("scheduler", "plateau"):  # what the schedules add to and compare, as they step
            state = t.get(name) or {}
            if not isinstance(state, dict):
                raise CharlmError(f"{p}: damaged checkpoint ({META_FILE}: the trainer's {name} is {str(state)[:60]})")
            for k in ("last_epoch", "_step_count", "num_bad_epochs", "cooldown_counter", "best"):
                if k in state and not (number(state[k]) or (state[k] is None and k == "best")):
                    raise CharlmError(f"{p}: damaged checkpoint ({META_FILE}: the {name}'s {k} is {state[k]!r}, not a number)")
            for k in ("base_lrs", "_last_lr", "min_lrs"):  # the rates a schedule scales: one finite number per group
                if k in state and not (isinstance(state[k], list) and state[k]
                                       and all(number(x) and -1e308 < x < 1e308 for x in state[k])):  # (finite; a huge int compared exactly)
                    raise CharlmError(f"{p}: damaged checkpoint ({META_FILE}: the {name}'s {k} is {str(state[k])[:40]!r}, "
                                      f"not a list of numbers)")
    files = ([MODEL_FILE] if with_weights else []) + ([TRAINER_FILE] if with_trainer else [])
    data = {}
    for name in files:  # read once: the bytes checked are the bytes loaded
        f = p / name
        if name not in meta["sha256"]:
            raise CharlmError(f"{p}: damaged checkpoint ({META_FILE} has no checksum for {name})")
        if not f.is_file():  # nor a pipe, whose reading would wait for ever
            raise CharlmError(f"{p}: {name} is missing")
        try:
            data[name] = f.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise CharlmError(f"{p}: {name} is missing") from None
        except OSError as e:
            raise CharlmError(f"{f}: unreadable ({e.strerror or e})") from None
        if hashlib.sha256(data[name]).hexdigest() != meta["sha256"][name]:
            raise CharlmError(f"{f}: does not match the checksum in {META_FILE} (truncated or replaced)")
    try:
        model_config = from_dict(ModelConfig, meta["model_config"])
        train_config = from_dict(TrainConfig, _data_found(_seed_read(meta["train_config"]), p))
        vocab = Vocab.from_dict(meta["vocab"])
        weights = load_tensors(data[MODEL_FILE]) if with_weights else {}
        trainer_tensors = load_tensors(data[TRAINER_FILE]) if with_trainer else {}
    except (KeyError, TypeError, ValueError, AttributeError, SafetensorError, OSError) as e:
        raise CharlmError(f"{p}: damaged checkpoint ({e})") from None
    if len(vocab) != model_config.vocab_size:
        raise CharlmError(f"{p}: vocabulary has {len(vocab)} entries but the model expects {model_config.vocab_size}")
    emb = weights.get("embedding.weight")
    if with_weights and (emb is None or emb.shape[0] != len(vocab)):
        raise CharlmError(f"{p}: model weights do not match its vocabulary of {len(vocab)} characters")
    return Checkpoint(
        model_config, train_config, vocab, weights,
        metrics=meta.get("metrics", []), trainer=meta.get("trainer", {}),
        trainer_tensors=trainer_tensors, path=p,
    )


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu", prefer: str = "best") -> tuple[CharLM, Vocab, Checkpoint]:
    """(model in eval mode, vocab, checkpoint) for generation and evaluation."""
    from .model import CharLM

    from .train import pick_device

    device = pick_device(str(device))  # an unknown or missing one: a CharlmError, not torch's
    ckpt = load(path, prefer, with_trainer=False)
    with torch.random.fork_rng(devices=[]):  # the initial weights, replaced below, do not move the caller's random stream
        model = CharLM(ckpt.model_config)
    load_weights(model, ckpt.weights, ckpt.path)
    return model.to(device).eval(), ckpt.vocab, ckpt


def load_weights(model, weights: dict[str, torch.Tensor], where) -> None:
    """``weights`` into ``model``: each of its tensors, of its shape (a tied decoder's weight is the embedding's);
    else a one-line CharlmError naming the first that does not fit (``where`` says whose weights they are)."""
    own = model.state_dict()
    tied = getattr(getattr(model, "cfg", None), "tie_weights", False)
    missing = [k for k in own if k not in weights and not (tied and k == "decoder.weight")]
    unexpected = [k for k in weights if k not in own]
    if missing or unexpected:
        raise CharlmError(f"{where}: weights do not fit the model config (missing {missing[:5]}, unexpected {unexpected[:5]})")
    for k, v in weights.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise CharlmError(f"{where}: weights do not fit the model config ({k} is {list(v.shape)} there, "
                              f"{list(own[k].shape)} in the model)")
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):  # (it wrote blank lines, and scored NaN)
            raise CharlmError(f"{where}: the weights are not finite (NaN or infinity in {k}): a training run that diverged, or a damaged file")
    model.load_state_dict(weights, strict=False)


# --- optimizer state as plain data -------------------------------------------------


def split_state_dict(sd: dict, prefix: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """A nested state dict as (JSON-able part, flat tensors): tensors are replaced by ``{"tensor": key}``."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(x, key):
        if isinstance(x, torch.Tensor):
            tensors[key] = x
            return {"__tensor__": key}
        if isinstance(x, dict):
            return {"__dict__": [[walk(k, f"{key}.k{i}"), walk(v, f"{key}.{i}")] for i, (k, v) in enumerate(x.items())]}
        if isinstance(x, (list, tuple)):
            return {"__list__": [walk(v, f"{key}.{i}") for i, v in enumerate(x)], "tuple": isinstance(x, tuple)}
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        raise TypeError(f"cannot store {type(x).__name__} in a checkpoint")

    return walk(sd, prefix), tensors


def join_state_dict(plain, tensors: dict[str, torch.Tensor]):
    """The inverse of :func:`split_state_dict`."""
    if isinstance(plain, dict):
        if "__tensor__" in plain:
            return tensors[plain["__tensor__"]]
        if "__dict__" in plain:
            return {join_state_dict(k, tensors): join_state_dict(v, tensors) for k, v in plain["__dict__"]}
        if "__list__" in plain:
            items = [join_state_dict(v, tensors) for v in plain["__list__"]]
            return tuple(items) if plain.get("tuple") else items
    return plain
