"""Data-parallel training on several processes or machines, started by ``torchrun``.

torchrun starts one process per GPU (or per CPU slot) and tells each its place through the
environment: ``WORLD_SIZE`` processes in all, this one's ``RANK`` among them and its
``LOCAL_RANK`` on its machine (which GPU it takes), and where to meet (``MASTER_ADDR``,
``MASTER_PORT``).  Every process builds the same model from the same seed and reads the
same corpus; the batches are cut exactly as in one process, with the *global*
``batch_size`` rows, and each process trains on its own contiguous block of those rows::

    global batch, batch_size 8, 2 processes        (consecutive or random sampling alike)

        row 0 ┐
        ...   ├ rank 0: rows 0-3     row b of one batch continues row b of the batch before,
        row 3 ┘                      on the same process, so each carried hidden state
        row 4 ┐                      stays its row's: (layers, 4, hidden) per process,
        ...   ├ rank 1: rows 4-7     (layers, 8, hidden) gathered into a checkpoint
        row 7 ┘

Each process's loss is the mean over its rows; ``DistributedDataParallel`` averages the
gradients, so after ``backward()`` every process holds the gradient of the mean over all
``batch_size`` rows, the one a single process computes.  Clipping and the optimizer step then
see that global gradient, and the update equals the single-process update; ``--lr`` is not
scaled.  Besides the gradients, the processes talk over a small CPU (gloo) group: to agree
on a stop signal, sum the epoch's loss, take rank 0's metrics, and gather RNG states and
carried rows into rank 0's checkpoint.  Every wait is bounded by ``--dist-timeout``.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterator

import torch

from .errors import CharlmError

DEFAULT_TIMEOUT = 300.0  # seconds a process waits for the others before the job ends
SIGNAL_POLL_EVERY = 10  # batches between agreeing on a stop signal (a CPU round trip; not every step)


class DistributedError(CharlmError):
    """The processes could not start together, disagree, or lost contact: one line, exit code 1."""

    def __init__(self, message: str):
        super().__init__(message, exit_code=1)


def from_env() -> tuple[int, int, int]:
    """(world_size, rank, local_rank) as torchrun sets them; (1, 0, 0) in a plain process."""
    env = os.environ
    if "WORLD_SIZE" not in env:
        return 1, 0, 0
    try:
        world, rank, local = int(env["WORLD_SIZE"]), int(env.get("RANK", "0")), int(env.get("LOCAL_RANK", "0"))
    except ValueError:
        raise DistributedError("WORLD_SIZE, RANK and LOCAL_RANK must be integers (torchrun sets them)") from None
    if world < 1 or not 0 <= rank < world:
        raise DistributedError(f"RANK {rank} is outside WORLD_SIZE {world}")
    return world, rank, local


def launched() -> bool:
    """Whether this process was started by torchrun (or anything else that sets WORLD_SIZE)."""
    return "WORLD_SIZE" in os.environ


def check_batch_size(batch_size: int, world_size: int) -> None:
    if batch_size % world_size:
        raise CharlmError(
            f"--batch-size {batch_size} does not split evenly among {world_size} processes: the batch size is global "
            f"and each process takes an equal block of its rows; use a multiple of {world_size}"
        )


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s random stream (dropout): rank 0 keeps ``seed``, so one process is unchanged."""
    return seed if rank == 0 else (seed * 1_000_003 + rank * 0x9E3779B1) % (2**63)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else e.__class__.__name__


@dataclass(frozen=True)
class Dist:
    """This process's place in a data-parallel job; ``Dist()`` is one plain process."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    device: torch.device | None = None  # None: the trainer picks it from its config
    backend: str | None = None  # "nccl" or "gloo" once a process group is up; None for a plain process
    group: Any = None  # the gloo group for small CPU-side collectives
    timeout: float = DEFAULT_TIMEOUT

    @property
    def enabled(self) -> bool:
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs, prints samples and writes metrics, plots and checkpoints."""
        return self.rank == 0

    def rows(self, batch_size: int) -> slice:
        """This process's contiguous block of the global batch's rows."""
        n = batch_size // self.world_size
        return slice(self.rank * n, (self.rank + 1) * n)

    def shard(self, pairs, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This process's rows of every global ``(x, y)`` batch: (batch_size, steps) -> (batch_size / world, steps)."""
        rows = self.rows(batch_size)
        for x, y in pairs:
            yield x[rows], y[rows]

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model that training calls: DDP (gradients averaged in backward) in a job, the model itself otherwise."""
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device is not None and self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    # --- small collectives over the gloo group, on CPU tensors ----------------------------------

    def all_gather(self, t: torch.Tensor) -> list[torch.Tensor]:
        """Every process's ``t`` (same shape and dtype everywhere), in rank order."""
        t = t.detach().cpu().contiguous()
        if self.world_size == 1:
            return [t]
        out = [torch.empty_like(t) for _ in range(self.world_size)]
        torch.distributed.all_gather(out, t, group=self.group)
        return out

    def total(self, loss_sum: torch.Tensor, tokens: int) -> tuple[float, int]:
        """The sums of an epoch's loss and character count over every process."""
        if self.world_size == 1:
            return float(loss_sum), tokens
        t = torch.tensor([float(loss_sum), float(tokens)], dtype=torch.float64)
        torch.distributed.all_reduce(t, group=self.group)
        return float(t[0]), int(t[1])

    def from_main(self, *values: float | None) -> list[float | None]:
        """Rank 0's numbers on every process, so that all take the same decisions (schedule, best, early stop)."""
        if self.world_size == 1:
            return list(values)
        t = torch.tensor([[0.0 if v is None else v, v is None] for v in values], dtype=torch.float64)
        torch.distributed.broadcast(t, src=0, group=self.group)
        return [None if none else v for v, none in t.tolist()]

    def agree_signal(self, signum: int | None) -> int | None:
        """A stop signal any process received, known to all (they must stop at the same batch)."""
        if self.world_size == 1:
            return signum
        t = torch.tensor([signum or 0], dtype=torch.int64)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX, group=self.group)
        return int(t) or None

    def barrier(self) -> None:
        """Wait for every process; a process that does not come within the timeout is named in the error."""
        if self.world_size == 1:
            return
        torch.distributed.monitored_barrier(group=self.group, timeout=timedelta(seconds=self.timeout), wait_all_ranks=True)

    def check_same(self, **values: int) -> None:
        """A clear error if the processes do not agree on these numbers (corpus, resume position, ...)."""
        if self.world_size == 1:
            return
        names = list(values)
        mine = torch.tensor([values[k] for k in names], dtype=torch.int64)
        gathered = self.all_gather(mine)
        if any(not torch.equal(theirs, mine) for theirs in gathered):  # every process sees it, and stops here
            self.barrier()  # (all past the gather first: one leaving while another still reads it can abort that one)
        for r, theirs in enumerate(gathered):
            for name, a, b in zip(names, mine.tolist(), theirs.tolist()):
                if a != b:
                    raise DistributedError(
                        f"rank {r} and rank {self.rank} disagree about the run ({name}: {b} and {a}); every process "
                        f"needs the same settings, corpus and checkpoint (the same files at the same paths on every machine)"
                    )

    # --- per-process random streams ---------------------------------------------------------------

    def rng_states(self) -> dict[str, torch.Tensor]:
        """Every process's random states, as ``rng.torch.rank{r}`` (and ``rng.cuda.rank{r}`` for its GPU)."""
        out = {f"rng.torch.rank{r}": s for r, s in enumerate(self.all_gather(torch.get_rng_state()))}
        if self.device is not None and self.device.type == "cuda":
            cuda = self.all_gather(torch.cuda.get_rng_state(self.device))
            out.update({f"rng.cuda.rank{r}": s for r, s in enumerate(cuda)})
        return out

    def restore_rng(self, tensors: dict[str, torch.Tensor], seed: int, step: int) -> bool:
        """Set this process's streams from a checkpoint; False (and a fresh, reproducible stream) if it has none for this rank."""
        mine = tensors.get(f"rng.torch.rank{self.rank}")
        if mine is None:
            if self.rank > 0:  # a checkpoint of fewer processes: rank 0 took rng.torch, the others start afresh
                torch.manual_seed(rank_seed(seed, self.rank) + step)
            return False
        torch.set_rng_state(mine)
        cuda = tensors.get(f"rng.cuda.rank{self.rank}")
        if cuda is not None and self.device is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(cuda, self.device)
        return True



def is_collective_failure(e: BaseException) -> bool:
    """Whether an exception comes from a process group (timeout, closed connection, NCCL or gloo error)."""
    dist_error = getattr(torch.distributed, "DistError", None)
    if dist_error is not None and isinstance(e, dist_error):
        return True
    text = str(e).lower()
    return any(w in text for w in ("gloo", "nccl", "timed out", "timeout", "connection closed", "connection reset",
                                    "broken pipe", "monitoredbarrier", "process group"))


def lost_contact(e: BaseException, timeout: float) -> DistributedError:
    """The error for a collective that failed: another process died, hung or stopped answering."""
    return DistributedError(
        f"lost contact with the other processes ({_first_line(e)}); one of them died, hung or did not answer "
        f"within --dist-timeout {timeout:g} s; its own output says why"
    )


def setup(device: torch.device, timeout: float = DEFAULT_TIMEOUT) -> Dist:
    """Join the job torchrun started (NCCL on GPUs, gloo on CPUs), or ``Dist(device=device)`` in a plain process.

    Each process takes ``cuda:LOCAL_RANK`` when the device is a GPU.  Joining, and every
    wait afterwards, gives up after ``timeout`` seconds, so a process that dies or hangs
    ends the job with an error instead of a silent hang.
    """
    if not timeout > 0 or not math.isfinite(timeout):  # (refused in one process too: a typo shows before it matters)
        raise CharlmError(f"--dist-timeout must be a positive number of seconds, got {timeout}")
    if not launched():
        return Dist(device=device)
    world, rank, local = from_env()
    if device.type == "cuda":
        n = torch.cuda.device_count()
        if local >= n:
            raise DistributedError(f"LOCAL_RANK {local}, but this machine has {n} GPU(s); start at most {n} processes per machine (--nproc-per-node)")
        device, backend = torch.device("cuda", local), "nccl"
        torch.cuda.set_device(device)
        # a timed-out NCCL collective ends the process instead of blocking it forever
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "3")
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise CharlmError(f"data-parallel training runs on cpu or cuda, not {device.type}")
    td = timedelta(seconds=timeout)
    try:
        if not torch.distributed.is_initialized():
            torch.distributed.init_process_group(backend, timeout=td, rank=rank, world_size=world)
        group = torch.distributed.new_group(backend="gloo", timeout=td) if backend == "nccl" else torch.distributed.group.WORLD
    except (RuntimeError, ValueError) as e:
        raise DistributedError(
            f"could not join the other processes of the job ({_first_line(e)}); check torchrun's --rdzv-endpoint "
            f"(or MASTER_ADDR and MASTER_PORT) and that every machine started"
        ) from None
    return Dist(world, rank, local, device, backend, group, timeout)


SETTLE_S = 10.0  # seconds teardown(settle=True) waits for the other processes at most


def teardown(settle: bool = False) -> None:
    """Leave the process group (a no-op in a plain process).  ``settle``: first wait (at most SETTLE_S) for every process
    to come here too, as after an error they all raise at once (a diverged loss): a process that leaves while another is
    still in the last collective can make that one abort as it exits (SIGABRT, "terminate called without an active
    exception"), which torchrun then reports as the failure."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        if settle:
            _settle()
        torch.distributed.destroy_process_group()


def _settle() -> None:
    """Wait, at most SETTLE_S, for every process to come here: a count in the job's store, not a collective (whose
    wait on a process that is gone lasts the whole --dist-timeout, and logs from C++), on any backend."""
    with contextlib.suppress(Exception):  # (a store that is gone with rank 0: nothing to wait for)
        store, world = torch.distributed.distributed_c10d._get_default_store(), torch.distributed.get_world_size()
        arrived = store.add("charlm/settle", 1)
        everyone = -(-arrived // world) * world  # (a second settle in one job counts on from the first)
        deadline = time.monotonic() + SETTLE_S
        while store.add("charlm/settle", 0) < everyone and time.monotonic() < deadline:
            time.sleep(0.05)
