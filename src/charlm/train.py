"""The training loop: truncated BPTT with a carried, detached state; evaluation; resumable state.

The trainer is importable.  Like any PyTorch training it draws from torch's and Python's global
random streams, which it seeds (or, on a resume, restores), and on the CPU it keeps torch to one
thread per physical core while it trains.  Everything that makes a resumed run continue exactly
is in :meth:`Trainer.snapshot`: weights, optimizer moments, schedule,
every random stream, the epoch, the step, the batch within the epoch and the carried
hidden state.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import operator
import os
import random
import re
import signal
import statistics
import time
import unicodedata
from pathlib import Path

import torch
import torch.nn.functional as F

from . import checkpoint as ckpt_io
from . import distributed
from .config import ModelConfig, SampleConfig, TrainConfig
from .data import Corpus, batches, bptt_slices, check_enough, fold, hash_ids, hash_text, num_batches
from .errors import CharlmError
from .model import EMPTY, CharLM, detach, num_parameters, parts
from .progress import Progress, one_line
from .sampling import generate, known_prefixes, make_generator, show_chars
from .step import TrainStep, check_speed_flags, physical_cores, prepare_optimizer
from .vocab import UnknownCharacter

EVAL_CHUNK = 512  # columns per evaluation step; the state is carried, so it changes only speed


class _StopValidation(Exception):
    """A signal came while validating."""


class TrainingInterrupted(Exception):
    """Ctrl-C or SIGTERM: a resumable checkpoint was written.  ``finished``: why the training had ended when the signal
    cut the samples written after it short (``"epochs"``, ``"early stop"``, ``"time limit"``), or ``""``."""

    def __init__(self, signum: int, path: Path, finished: str = ""):
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum
        self.path = path
        self.finished = finished


def pick_device(name: str) -> torch.device:
    """``auto`` is the GPU when there is one, else the CPU; an unavailable GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise CharlmError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):  # mps, xpu, ...: charlm is written and tested for these two
        raise CharlmError(f"device {name!r}: charlm runs on auto, cpu, cuda or cuda:N")
    if dev.type == "cpu" and dev.index is not None:  # torch would take cpu:1 as the one CPU: say so rather than pretend
        raise CharlmError(f"device {name!r}: the CPU takes no number; use cpu")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CharlmError(f"device {name!r} asked for, but this PyTorch sees no CUDA GPU")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise CharlmError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return dev


def ppl(loss: float | None) -> float | None:
    """Perplexity from a mean loss in nats; inf rather than an overflow error."""
    if loss is None:
        return None
    try:
        return math.exp(loss)
    except OverflowError:
        return float("inf")


@torch.no_grad()
def evaluate(model: CharLM, ids: torch.Tensor, rows: int = 1, chunk: int = EVAL_CHUNK, progress=None) -> tuple[float, int]:
    """Mean loss in nats per character over ``ids``, read statefully in ``rows`` streams; and how many characters were scored.

    With ``rows=1`` (the default) the whole text is one stream: every character but the
    first is predicted from everything before it.  ``progress(characters read)`` is called
    after every chunk.
    """
    ids = _checked_ids(model, ids)
    chunk, rows = _whole_number("chunk", chunk), _whole_number("rows", rows)
    was_training = model.training
    model.eval()
    rows = max(1, min(rows, ids.numel() // 2))
    try:
        return _score(model, fold(ids, rows).to(model.decoder.weight.device), chunk, progress=progress)  # (rows, L)
    finally:
        model.train(was_training)


@torch.no_grad()
def surprisal(model: CharLM, ids, chunk: int = EVAL_CHUNK) -> torch.Tensor:
    """Bits of surprise at each character after the first, the text read as one stream: a float64 tensor
    (len(ids) - 1,), on the CPU.

    The same convention as :func:`evaluate`: the mean of these, times ln 2, is its loss.  The model is
    read in eval mode (no dropout) and left in the mode it was in.
    """
    ids = _checked_ids(model, ids)
    chunk = _whole_number("chunk", chunk)
    was_training = model.training
    model.eval()
    try:
        x = ids.to(model.decoder.weight.device)[None]  # (1, n)
        out, state = [torch.zeros(0, dtype=torch.float64)], None
        for s, e in bptt_slices(x.shape[1], chunk, drop_last=False):  # the same cut as evaluate's
            logits, state = model(x[:, s:e], state)  # (1, e - s, vocab)
            logp = logits[0].float().log_softmax(-1)
            out.append(-logp.gather(-1, x[0, s + 1 : e + 1, None])[:, 0].double().cpu())
        return torch.cat(out) / math.log(2)
    finally:
        model.train(was_training)


def _whole_number(name: str, value) -> int:
    """``value`` as an int >= 1 (numpy's whole numbers too; not a float, nor a bool); else a ValueError naming ``name``."""
    try:
        if not isinstance(value, bool) and operator.index(value) >= 1:
            return operator.index(value)
    except TypeError:
        pass
    raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")


def _checked_ids(model: CharLM, ids) -> torch.Tensor:
    """``ids`` (a list, from vocab.encode, or a tensor) as a 1-D long tensor of ids the model has; else a CharlmError."""
    if not torch.is_tensor(ids):
        try:
            ids = list(ids)
            ids = torch.as_tensor(ids) if ids else torch.zeros(0, dtype=torch.long)  # floats stay floats: refused below
        except (TypeError, ValueError, RuntimeError, OverflowError):
            raise CharlmError("ids must be a sequence of whole numbers (vocab.encode gives them)") from None
    if ids.dim() != 1 or ids.dtype not in (torch.long, torch.int, torch.int16, torch.uint8, torch.int8):
        raise CharlmError(f"ids must be one text's ids, a 1-D integer tensor; got {ids.dim()}-D {ids.dtype}")
    n = model.cfg.vocab_size
    if ids.numel() and not (0 <= int(ids.min()) and int(ids.max()) < n):
        raise CharlmError(f"ids must be from 0 to {n - 1}, the model's vocabulary; got {int(ids.min())} to {int(ids.max())}")
    return ids.long()


def _score(model: CharLM, data: torch.Tensor, chunk: int, adapt=None, progress=None) -> tuple[float, int]:
    """Mean loss and count over the rows of ``data`` (rows, L), read in chunks, the state carried.

    ``adapt(mean loss of the chunk)`` is called after each chunk is scored (dynamic
    evaluation); the state is then cut from the graph behind it.  ``progress(characters
    read so far)`` after each chunk, if given (it may raise to stop).
    """
    total = torch.zeros((), dtype=torch.float64, device=data.device)
    count, state = 0, None
    for s, e in bptt_slices(data.shape[1], chunk, drop_last=False):
        logits, state = model(data[:, s:e], state)
        y = data[:, s + 1 : e + 1]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1), reduction="sum")
        total += loss.detach().double()
        count += y.numel()
        if adapt is not None:
            adapt(loss / y.numel())
            state = detach(state)
        if progress is not None:
            progress((e + 1) * data.shape[0])  # every character up to the chunk's last target
    if count == 0:
        raise CharlmError("the text is too short to score: it needs at least two characters the model knows")
    return float(total) / count, count


DYNAMIC_CHUNK = 64  # characters scored between two updates of dynamic evaluation


def evaluate_dynamic(model: CharLM, ids: torch.Tensor, lr: float, chunk: int = DYNAMIC_CHUNK, grad_clip: float = 1.0,
                     progress=None) -> tuple[float, int]:
    """Like :func:`evaluate` with one stream, but adaptive: after each ``chunk`` is scored, one SGD step on it.

    Dynamic evaluation (Krause et al., 2018, in its plain SGD form): every character is
    scored before the model has been updated on it, so nothing is scored with knowledge
    of itself; the model adapts to what it has already read (a song's chorus, a writer's
    names).  The update works on a copy: ``model`` itself is unchanged.
    """
    import copy

    ids = _checked_ids(model, ids)
    model = copy.deepcopy(model).eval()  # no dropout: the scores are the model's own
    model.requires_grad_(True)
    if model.cfg.embedding_size == 0:
        model.embedding.weight.requires_grad_(False)  # the one-hot identity stays the identity
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr)

    def adapt(loss: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()

    return _score(model, ids.to(model.decoder.weight.device)[None], chunk, adapt, progress)  # one stream (1, L)


def build_optimizer(params, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """The optimizer with its fused kernels (one pass over the parameters; on the CPU too, about 4x the foreach update).

    With ``--cuda-graph`` Adam and AdamW are made capturable (their step counters live on
    the GPU); fused SGD takes its rate from device memory as it is.
    """
    params = list(params)
    for fast in ({"fused": True}, {"foreach": True}):  # a PyTorch without fused CPU kernels (< 2.4) takes foreach
        try:
            if cfg.optimizer in ("adam", "adamw"):
                opt = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
                return opt(params, lr=cfg.lr, weight_decay=cfg.weight_decay, capturable=cfg.cuda_graph, **fast)
            return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, **fast)
        except (RuntimeError, TypeError):  # TypeError: a PyTorch whose SGD has no fused (< 2.3)
            if "foreach" in fast:
                raise
            if cfg.optimizer == "sgd" and cfg.cuda_graph:  # foreach SGD reads its rate as a number: a graph would keep the first
                raise CharlmError(f"--cuda-graph with --optimizer sgd needs fused SGD, which PyTorch {torch.__version__} does not "
                                  "offer here (it came in 2.3); use --optimizer adam or adamw, or leave --cuda-graph out") from None


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """``optimizer.load_state_dict(state)``, keeping the kernels ``optimizer`` was built with (fused or foreach): the
    saved ones are the saving PyTorch's (a fused CPU Adam needs torch 2.4 or later), which this one may lack."""
    kernels = [{k: g[k] for k in ("fused", "foreach") if k in g} for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for g, kept in zip(optimizer.param_groups, kernels):
        g.update(kept)


def lr_factor(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """The step-wise schedule as a pure function of the step (so resuming needs only the step): a linear warm-up to
    ``lr`` over the first ``warmup_steps``, then constant, or a cosine from ``lr`` to ``min_lr`` over the steps left."""
    floor = min(cfg.min_lr / cfg.lr, 1.0)
    if cfg.schedule == "cosine" and step >= total_steps:  # (a run resumed with more epochs: at its floor, warm-up or not)
        return floor
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule != "cosine":
        return 1.0
    span = max(1, total_steps - cfg.warmup_steps)
    t = min(step - cfg.warmup_steps, span) / span
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))


def _rng_tensors() -> dict[str, torch.Tensor]:
    out = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"rng.cuda.{i}"] = s
    return out


def _restore_rng(tensors: dict[str, torch.Tensor], python_state) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    if python_state is not None:
        random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))


class Trainer:
    """Train a :class:`CharLM` on a :class:`Corpus`; ``fit()`` runs to the end and returns the metrics."""

    def __init__(self, model_cfg: ModelConfig, cfg: TrainConfig, corpus: Corpus, resume: ckpt_io.Checkpoint | None = None, log=print,
                 init_weights: dict | None = None, dist: distributed.Dist | None = None, overwrite: bool = False):
        """A training of a model of ``model_cfg`` on ``corpus`` (:func:`charlm.data.load_corpus` of ``cfg``), by ``cfg``.

        ``resume``: a checkpoint read with :func:`charlm.checkpoint.load` (``prefer="last"``), to go on from its state;
        ``log``: where the run's lines go (``None``: nowhere, progress bar too); ``init_weights``: weights to start
        from, as :func:`charlm.transfer.fine_tune_setup` gives them for ``cfg.init_from``; ``dist``: a torchrun job's
        processes (default: the environment's, or one plain process); ``overwrite``: a new run into an ``out``
        folder that holds another run, whose files ``fit`` removes first.
        """
        _check_arguments(model_cfg, cfg, corpus, resume, init_weights, log)
        self.dist = dist or distributed.Dist()  # one plain process unless torchrun started a job
        if model_cfg.vocab_size != len(corpus.vocab):
            raise ValueError(f"the model's vocab_size is {model_cfg.vocab_size}, the corpus's vocabulary has {len(corpus.vocab)} entries")
        cfg = _recorded_source(cfg, corpus)
        self.cfg, self.corpus = cfg, corpus
        # a new run, or a resume continued into another folder: the run that folder holds is cleared by fit()
        home = None if resume is None or resume.path is None else ckpt_io.run_folder(resume.path)
        self.overwrite = overwrite and (home is None or Path(cfg.out).resolve() != home.resolve())
        self.shows_progress = self.dist.is_main and log is not None  # rank 0 alone logs; log=None: silent, progress too
        self.log = log if self.shows_progress else (lambda *_: None)
        self.described = False  # describe() logged, as the first fit() starts
        self.out = Path(cfg.out)
        self.device = self.dist.device if self.dist.device is not None else pick_device(cfg.device)
        distributed.check_batch_size(cfg.batch_size, self.dist.world_size)
        check_speed_flags(cfg, self.device, self.dist.world_size)  # before anything is written
        # every process checks (none may go on to wait for the others in DDP's start); rank 0 writes nothing before that
        if resume is None and not overwrite and ckpt_io.holds_run(self.out):
            raise CharlmError(f"{self.out} already holds a training run; give another out, resume it, or overwrite it (overwrite=True, --overwrite)")
        try:
            self.train_ids = corpus.train_ids
        except UnknownCharacter as e:
            if resume is not None:
                raise CharlmError(f"{resume.path}: the training text has a character the checkpoint's vocabulary lacks ({e.char!r}): "
                                  f"the text changed since the run began; cannot resume") from None
            raise CharlmError(f"the training text has a character its vocabulary lacks: {e.char!r} (build the vocabulary from the text, or with unk)") from None
        held = (f" (of the text's {len(corpus.train_text) + len(corpus.val_text):,}, {len(corpus.val_text):,} held out by "
                f"--val-fraction {cfg.val_fraction:g})" if corpus.val_text else "")
        check_enough(self.train_ids.numel(), cfg.batch_size, cfg.num_steps, cfg.sampling, held)
        self.val_ids, self.val_skipped = corpus.val_ids()
        if self.val_ids.numel() < 2:
            self.val_ids = None
        # the checksums a checkpoint records of its texts: once (a big text's training ids take about half a second)
        self.train_hash, self.val_hash = hash_ids(self.train_ids), hash_text(corpus.val_text)
        self.n_batches = num_batches(self.train_ids.numel(), cfg.batch_size, cfg.num_steps, cfg.sampling)
        self.total_steps = self.n_batches * cfg.epochs

        if resume is None:
            torch.manual_seed(cfg.seed)
            random.seed(cfg.seed)
        self.model_cfg = model_cfg
        self.model = CharLM(model_cfg).to(self.device)
        if init_weights is not None and resume is None:
            ckpt_io.load_weights(self.model, init_weights, f"{cfg.init_from or 'init_weights'}")
        if resume is None and self.dist.rank > 0:  # the same initial weights everywhere, then a dropout stream per process
            torch.manual_seed(distributed.rank_seed(cfg.seed, self.dist.rank))
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(self.params, cfg, self.device)
        self.scheduler = (
            torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(self.cfg, s, self.total_steps))
            if cfg.schedule == "cosine" or cfg.warmup_steps else None
        )
        self.plateau = (
            torch.optim.lr_scheduler.ReduceLROnPlateau(self.optimizer, factor=cfg.plateau_factor, patience=cfg.plateau_patience)
            if cfg.schedule == "plateau" else None
        )
        self.metrics: list[dict] = []
        self.epoch, self.batch, self.step = 0, 0, 0
        self.best_val, self.since_best = float("inf"), 0  # the best of the validations that steer the run, and how many since (_validate)
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.tokens = 0
        self.elapsed = 0.0  # seconds of training steps since the last validation
        self._slow_val_noted = False
        self.train_seconds = 0.0  # seconds of training steps in all
        self.state = None
        self.pending = None  # a validation begun and not finished: {"at_epoch_end": ..., "over_time": ...}
        self._signal = None
        self._scaler_state = None  # fp16's gradient scaler (its scale and growth count), from a checkpoint until the step exists
        # where the run's best/ is, if out has none (fit); and the first metrics row best/ stands for (one after a best/
        # that was lost: the rows before it are in no checkpoint)
        self._best_from = None if resume is None or resume.path is None else Path(resume.path)
        self.best_from_row = 0
        if resume is not None:
            try:
                self._restore(resume)
            except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as e:
                # a checkpoint.json edited by hand, or written by something else: not a resumable training state
                raise CharlmError(f"{resume.path}: damaged checkpoint (its training state: {e.__class__.__name__}: {e})") from None
        if self.dist.world_size > 1:  # the same corpus, vocabulary and position everywhere, or a clear error now
            # (the held-out text too: each process validates on all of it, agreeing on a signal every few chunks)
            self.dist.check_same(train_chars=self.train_ids.numel(), train_hash=int(self.train_hash[:15], 16),
                                 val_hash=int(self.val_hash[:15], 16), vocab_size=model_cfg.vocab_size,
                                 epoch=self.epoch, batch=self.batch, step=self.step)
        self.train_model = self.dist.wrap(self.model)  # what training calls: DDP averages the gradients in a job

    # --- state ---------------------------------------------------------------------

    def snapshot(self) -> ckpt_io.Checkpoint:
        """Everything needed to continue exactly from here."""
        opt_plain, opt_tensors = ckpt_io.split_state_dict(self.optimizer.state_dict(), "optim")
        loss_sum, tokens, state = self.loss_sum.detach().cpu().reshape(1), self.tokens, self.state
        extra = {}
        if self.dist.world_size > 1:
            # Called on every process: gather their shares, so the checkpoint is the one a single process writes
            # (the global loss sum and carried (layers, batch, hidden) state), plus each process's RNG streams.
            shares = self.dist.all_gather(torch.tensor([float(loss_sum), self.tokens], dtype=torch.float64))
            rank_tokens = [int(s[1]) for s in shares]
            loss_sum, tokens = torch.stack(shares)[:, :1].sum(0), sum(rank_tokens)
            extra = {**{f"epoch.loss_sum.rank{r}": s[:1] for r, s in enumerate(shares)}, **self.dist.rng_states()}
            if state is not None:
                gathered = tuple(torch.cat(self.dist.all_gather(p), dim=1) for p in parts(state))  # batch in dimension 1
                state = gathered if isinstance(state, tuple) else gathered[0]
        tensors = {**opt_tensors, **_rng_tensors(), "epoch.loss_sum": loss_sum, **extra}
        if state is not None:
            for name, t in zip(self.model.state_names(), parts(state)):
                tensors[f"carried.{name}"] = t
        py = random.getstate()
        trainer = {
            "epoch": self.epoch, "batch": self.batch, "step": self.step, "schedule_steps": self.total_steps,
            "epoch_tokens": tokens, "elapsed": self.elapsed, "train_seconds": self.train_seconds,
            "best_val": None if math.isinf(self.best_val) else self.best_val, "since_best": self.since_best,
            "best_from_row": self.best_from_row,
            "optimizer": opt_plain,
            "scheduler": {k: v for k, v in self.scheduler.state_dict().items() if k != "lr_lambdas"} if self.scheduler else None,
            "plateau": self.plateau.state_dict() if self.plateau else None,
            "python_rng": [py[0], list(py[1]), py[2]],
            "train_chars": self.train_ids.numel(),
            "train_hash": self.train_hash,
            "val_hash": self.val_hash,  # (the held-out part can change alone: with --limit-chars, or at its end)
            "val_skipped": self.val_skipped,
            "grad_scaler": self._grad_scaler_state(),
            "pending_validation": self.pending,  # interrupted while validating: a resume validates first
            "warmup_then_cosine": True,  # (before 2026-12-02 the cosine ran beneath the warm-up from step 0)
        }
        if self.dist.world_size > 1:
            trainer.update(world_size=self.dist.world_size, rank_tokens=rank_tokens)
        return ckpt_io.Checkpoint(
            self.model_cfg, self.cfg, self.corpus.vocab, ckpt_io.model_weights(self.model),
            metrics=list(self.metrics), trainer=trainer, trainer_tensors=tensors,
        )

    def _restore(self, c: ckpt_io.Checkpoint) -> None:
        if "rng.torch" not in c.trainer_tensors:  # every saved run has it: this one was read for its model alone
            raise CharlmError(f"{c.path} was loaded without its training state (load_model, or load(..., with_trainer=False)); "
                              f"to resume, load it with charlm.load(path) (charlm.checkpoint.load)")
        t = c.trainer
        if t.get("train_hash") != self.train_hash:
            raise CharlmError(f"{c.path}: the training text differs from the one this checkpoint was trained on; cannot resume")
        if t.get("val_hash") and t["val_hash"] != self.val_hash:  # (a checkpoint from before 2026-12-02 has none)
            raise CharlmError(f"{c.path}: the held-out text differs from the one this run was validated on (the file changed "
                              f"after its training part); cannot resume: its validation figures would not compare")
        ckpt_io.load_weights(self.model, c.weights, c.path)
        if t["batch"] > self.n_batches:  # (the counts' types were checked as the checkpoint was read)
            raise ValueError(f"batch {t['batch']} is past the end of an epoch ({self.n_batches} batches)")
        load_optimizer_state(self.optimizer, ckpt_io.join_state_dict(t["optimizer"], c.trainer_tensors))
        self._check_optimizer()
        if self.scheduler and t.get("scheduler"):
            self.scheduler.load_state_dict({**t["scheduler"], "lr_lambdas": [None]})
        if self.plateau and t.get("plateau"):  # its "no loss yet" is inf, written as null (mode "min": inf is the worst)
            self.plateau.load_state_dict({k: math.inf if v is None and k in ("best", "mode_worse") else v for k, v in t["plateau"].items()})
        for i, m in enumerate(c.metrics, 1):  # a training's rows (a checkpoint saved from Python may hold others: not resumable)
            if missing := [key for key in ("epoch", "train_loss") if key not in m]:
                raise CharlmError(f"{c.path}: damaged checkpoint (its metrics row {i} has no {' or '.join(missing)}), so it cannot be resumed")
        # a perplexity that overflowed (a diverging --lr) was written as null: from its loss again
        self.metrics = [{**m, "train_ppl": ppl(m["train_loss"]),
                         "val_ppl": None if m.get("val_loss") is None else ppl(m["val_loss"])} for m in c.metrics]
        self.epoch, self.batch, self.step = t["epoch"], t["batch"], t["step"]
        # the cosine spans the --epochs of the run that started it: a resume with more epochs goes on at the floor
        # (a checkpoint from before 2026-11-30 has no schedule_steps: its run's cosine spanned the --epochs it was saved with)
        self.total_steps = t.get("schedule_steps", self.n_batches * c.train_config.epochs)
        if self.cfg.schedule == "cosine" and self.cfg.warmup_steps and not t.get("warmup_then_cosine") and self.step < self.total_steps:
            self.log("note: this run began before 2026-12-02, when the cosine ran beneath the warm-up from step 0 (its rate "
                     "peaking below --lr); from here it follows the cosine that starts after the warm-up, so its rate is not "
                     "the one it would have had, nor its result")
        if self.cfg.schedule == "cosine" and self.n_batches * self.cfg.epochs < self.total_steps:  # fewer epochs than it began with
            self.log(f"note: the cosine schedule falls over the {self.total_steps:,} steps the run began with; --epochs "
                     f"{self.cfg.epochs} ends it at step {self.n_batches * self.cfg.epochs:,}, with the rate at "
                     f"{self.cfg.lr * lr_factor(self.cfg, self.n_batches * self.cfg.epochs, self.total_steps):.2e}, above --min-lr "
                     f"{self.cfg.min_lr:g}")
        self.tokens, self.elapsed = t["epoch_tokens"], t.get("elapsed", 0.0)
        self.train_seconds = t.get("train_seconds", 0.0)
        self.best_val = float("inf") if t["best_val"] is None else t["best_val"]
        self.since_best = t["since_best"]
        self.best_from_row = t.get("best_from_row", 0)
        self.loss_sum = c.trainer_tensors["epoch.loss_sum"].to(self.device, torch.float64).reshape(())
        if "carried.h" in c.trainer_tensors:
            carried = tuple(c.trainer_tensors[f"carried.{n}"].to(self.device) for n in self.model.state_names())
            self._check_carried(carried)
            self.state = carried if len(carried) > 1 else carried[0]
        _restore_rng(c.trainer_tensors, t.get("python_rng"))
        self._scaler_state = t.get("grad_scaler")
        self.pending = t.get("pending_validation")
        if self.dist.world_size > 1:
            self._restore_share(c)
        elif (written := t.get("world_size", 1)) > 1 and self._draws_random():  # (a job's checkpoint, one process on)
            self.log(f"note: {c.path} was written by {written} processes, this run has 1: it goes on with rank 0's dropout "
                     f"stream alone, so the run continues, but not bit for bit as the job would have")

    def _check_optimizer(self) -> None:
        """Each of the optimizer's moments has its weight's shape: the fused step reads them unchecked (out of bounds)."""
        for group in self.optimizer.param_groups:
            if bad := [k for k, v in group.items() if k != "params" and isinstance(v, str)]:
                raise ValueError(f"the optimizer's {bad[0]} is {group[bad[0]]!r}, not a number")
            for p in group["params"]:
                for k, v in self.optimizer.state.get(p, {}).items():
                    if torch.is_tensor(v) and v.dim() > 0 and v.shape != p.shape:
                        raise ValueError(f"the optimizer's {k} for a weight of shape {list(p.shape)} is {list(v.shape)}")

    def _check_carried(self, carried: tuple) -> None:
        """The carried state has the shapes this model and batch size give it, and its copy memory known ids."""
        expected = self.model.init_state(self.cfg.batch_size, torch.device("cpu"))
        for name, have, want in zip(self.model.state_names(), carried, expected if isinstance(expected, tuple) else (expected,)):
            # (a float part may be half precision: saved under --precision bf16/fp16's autocast)
            floats = (torch.float32, torch.bfloat16, torch.float16)
            if have.shape != want.shape or (have.dtype not in floats if want.dtype.is_floating_point else have.dtype != want.dtype):
                raise ValueError(f"the carried {name} is {list(have.shape)} {have.dtype}, not {list(want.shape)} {want.dtype}")
        if self.model.copy is not None:
            ids = carried[-1]
            if bool(((ids < 0) & (ids != EMPTY)).any() or (ids >= self.model_cfg.vocab_size).any()):
                raise ValueError("the carried copy memory holds ids outside the vocabulary")

    def _grad_scaler_state(self) -> dict | None:
        scaler = getattr(getattr(self, "_step_fn", None), "scaler", None)
        return scaler.state_dict() if scaler is not None else self._scaler_state

    def _draws_random(self) -> bool:
        """Whether training draws random numbers (dropout of any kind), so that its streams matter to a resume."""
        return bool(self.model_cfg.dropout or self.model_cfg.embed_dropout or self.model_cfg.weight_drop)

    def _restore_share(self, c: ckpt_io.Checkpoint) -> None:
        """In a job: this process's rows of the carried state, its part of the epoch's sums, its RNG streams."""
        world, rank = self.dist.world_size, self.dist.rank
        if self.state is not None:
            rows = self.dist.rows(self.cfg.batch_size)
            self.state = tuple(s[:, rows] for s in self.state) if isinstance(self.state, tuple) else self.state[:, rows]
        mine = c.trainer_tensors.get(f"epoch.loss_sum.rank{rank}")
        if c.trainer.get("world_size") == world and mine is not None:
            self.loss_sum = mine.to(self.device, torch.float64).reshape(())
            self.tokens = c.trainer["rank_tokens"][rank]
        elif rank > 0:  # a checkpoint of another number of processes: rank 0 carries the epoch's sums so far
            self.loss_sum.zero_()
            self.tokens = 0
        if not self.dist.restore_rng(c.trainer_tensors, self.cfg.seed, self.step) and self._draws_random():
            self.log(f"note: {c.path} was written by {c.trainer.get('world_size', 1)} process(es), this job has {world}: "
                     f"the dropout streams differ, so the run continues, but not bit for bit as it would have")

    def save(self, name: str) -> Path:
        """Write a checkpoint; in a job every process calls this (the snapshot gathers from all) and rank 0 writes."""
        self._check_weights()
        snap, path = self.snapshot(), self.out / name
        if self.dist.is_main:
            ckpt_io.save(snap, path)
        self.dist.barrier()  # when this returns, the checkpoint is on disk for everyone
        return path

    # --- the loop --------------------------------------------------------------------

    def _on_signal(self, signum, frame) -> None:
        self._signal = signum

    def _stop_signal(self) -> int | None:
        """The signal to stop on after this batch; in a job, agreed by all processes every few batches, so they stop together."""
        if self.dist.world_size == 1:
            return self._signal
        if self.batch % distributed.SIGNAL_POLL_EVERY and self.batch != self.n_batches:
            return None
        self._signal = self.dist.agree_signal(self._signal)
        return self._signal

    def fit(self) -> list[dict]:
        """Train to ``cfg.epochs`` (or early stop); returns the per-epoch metrics."""
        self._signal = None  # a Trainer stopped by Ctrl-C goes on from where it stopped when fit() is called again
        threads = torch.get_num_threads()  # lowered to the physical cores for training (see _train_step), then given back
        handlers, locked, lost_at, made, ours = {}, None, None, [], False  # (locked None: failed before the folder was taken)
        try:
            if self.dist.is_main:
                ckpt_io.check_writable(self.out, "out", folder=True)
                for name in ("best", "last"):  # each save replaces the one before: one that cannot be removed is refused
                    ckpt_io.check_replaceable(self.out / name, overwrite=self.overwrite)
                made = ckpt_io.missing_folders(self.out)
                try:
                    self.out.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    raise CharlmError(f"out {self.out} cannot be made: {e.strerror or e}") from None
                # as `charlm train` does (it holds the lock already): a folder another training is writing is refused
                locked = ckpt_io.lock_run(self.out)
                found = self._runs_best()  # (read before --overwrite clears the folder it may lie in)
                if self.overwrite:  # the old run's best/, metrics and plot must not outlive it beside the new one
                    ckpt_io.clear_run(self.out)
                    self.overwrite = False
                ours = not any(os.path.lexists(self.out / name) for name in ("best", "last"))  # the metrics written next
                self._write_metrics()
                if found is not None and found[1] is not None:  # the run's best/, carried into this folder
                    ckpt_io.save(found[1], self.out / "best")
                elif found is not None:  # none to be had: best/ starts again (below)
                    lost_at = found[0]
            if self.dist.from_main(None if lost_at is None else 1.0)[0] is not None:  # (in every process: the save gathers)
                self._restart_best(lost_at)
            if not self.described:  # what `charlm train` starts with: corpus, model, settings, and notes on what was asked
                self.described = True
                if self.shows_progress:
                    for line in describe(self).split("\n"):
                        self.log(line)
            handlers = catch_signals(self._on_signal)
            if self.pending is not None:  # the one the interruption cut short (a --max-minutes raised since: train on)
                at_end, over = self.pending["at_epoch_end"], self.pending["over_time"] and self._over_time(0.0)
                if self._validate(at_epoch_end=at_end, over_time=over):
                    return self.metrics
            if self.epoch < self.cfg.epochs and self._early_stop_due():  # due as the last epoch ended: given more epochs, it stops
                self._log_early_stop(" (--early-stop 0, or a larger one, trains on)")
                return self.metrics
            while self.epoch < self.cfg.epochs:
                if self._train_epoch() or self._end_epoch():
                    break
        except BaseException:
            if self.dist.is_main and locked is not None:
                self._undo_start(made if ours else None)
            raise
        finally:
            restore_signals(handlers)
            torch.set_num_threads(threads)
            if locked:  # taken here (a Python caller's run): let go, so that the finished folder can be used
                ckpt_io.unlock_run(self.out)
        return self.metrics

    def _undo_start(self, made: list[Path] | None) -> None:
        """A run that failed before its first checkpoint (a loss that diverged at once, a full disk) leaves no run
        behind: the metrics.jsonl it began with made the folder "a run that stopped before its first checkpoint", which
        the same command, retried, was then refused.  ``made``: None where the folder held checkpoints as the run began
        (a resume in its own folder: nothing is undone), else the folders this run made for it, which go too where
        nothing else is in them."""
        metrics = self.out / "metrics.jsonl"
        with contextlib.suppress(OSError):
            if made is None or any(os.path.lexists(self.out / name) for name in ("best", "last", "curves.png")):
                return
            if metrics.is_file():
                metrics.unlink()
        ckpt_io.remove_empty(made)

    def _train_epoch(self) -> bool:
        """One epoch from ``self.batch`` on; True when a validation inside it says stop."""
        cfg, model = self.cfg, self.train_model
        model.train()
        bad_step = torch.full((), -1, dtype=torch.long, device=self.device)
        train_ids = self.train_ids.to(self.device)
        it = batches(train_ids, cfg.batch_size, cfg.num_steps, cfg.sampling, cfg.seed, self.epoch, start=self.batch)
        if self.dist.world_size > 1:
            it = self.dist.shard(it, cfg.batch_size)  # this process's block of rows of every global batch
        step = self._train_step(model)
        bar = self._progress()
        t0 = time.perf_counter()
        tokens0 = self.tokens
        for x, y in it:
            # Nothing in this loop reads a value back from the GPU except the progress bar, twice a second.
            self.state = None if cfg.sampling == "random" else detach(self.state)
            loss, self.state = step(x, y, self.state)  # loss and new state detached
            if self.scheduler is not None:
                self.scheduler.step()
            self.loss_sum += loss.double() * y.numel()
            bad_step = torch.where((bad_step < 0) & ~torch.isfinite(loss), self.step, bad_step)
            self.tokens += y.numel()
            self.step += 1
            self.batch += 1
            if bar is not None and bar.due(final=self.batch == self.n_batches):
                self._check_finite(bad_step)
                done = self.tokens - tokens0
                mean = float(self.loss_sum) / max(1, self.tokens)
                bar.show(self.batch, loss=f"{mean:.3f}", ppl=f"{ppl(mean):.1f}", chars_s=f"{done / max(1e-9, time.perf_counter() - t0):,.0f}")
            over_time = self._over_time(time.perf_counter() - t0)
            due = (over_time or (cfg.eval_every and self.step % cfg.eval_every == 0)) and self.batch < self.n_batches
            if self._stop_signal() is not None:
                self._check_finite(bad_step)
                self._add_time(time.perf_counter() - t0)
                if bar is not None:
                    bar.close()
                if due:  # stopped where a validation falls due: a resume does it first, as the run left alone would
                    self.pending = {"at_epoch_end": False, "over_time": over_time}
                elif over_time and self.batch == self.n_batches:  # the epoch's last batch, as the time ran out: its closing
                    # validation is the one due, saved as begun (as _end_epoch begins it), for no minutes are left to reach it
                    self.epoch, self.batch, self.state = self.epoch + 1, 0, None
                    self.pending = {"at_epoch_end": True, "over_time": True}
                path = self.save("last")
                raise TrainingInterrupted(self._signal, path)
            if due:
                # a validation inside the epoch (at its end, _end_epoch validates)
                self._check_finite(bad_step)
                self._add_time(time.perf_counter() - t0)
                if bar is not None:
                    bar.close()
                stop = self._validate(at_epoch_end=False, over_time=over_time)
                if stop:
                    return True
                bar = self._progress()
                t0, tokens0 = time.perf_counter(), self.tokens  # the validation reset the counts the bar's rate is made of
                model.train()
        if bar is not None:
            bar.close()
        self._check_finite(bad_step)
        self._add_time(time.perf_counter() - t0)
        return False

    def _add_time(self, seconds: float) -> None:
        self.elapsed += seconds
        self.train_seconds += seconds

    def _over_time(self, running: float) -> bool:
        """``--max-minutes`` reached (the same answer on every process of a job: rank 0's clock decides)."""
        if not self.cfg.max_minutes:
            return False
        over = self.train_seconds + running >= self.cfg.max_minutes * 60
        if self.dist.world_size > 1:
            if self.batch % distributed.SIGNAL_POLL_EVERY and self.batch != self.n_batches:  # (polled as _stop_signal is)
                return False
            over = bool(self.dist.from_main(float(over))[0])
        return over

    def _train_step(self, model) -> TrainStep:
        """The step function, made once (a CUDA graph is captured on its first calls and kept)."""
        step = getattr(self, "_step_fn", None)
        if step is None or step.model is not model:  # (the speed flags were checked when the trainer was made)
            if self.device.type == "cpu" and torch.get_num_threads() > physical_cores():
                torch.set_num_threads(physical_cores())  # SMT siblings only contend for the same FMA units
            prepare_optimizer(self.optimizer, self.cfg, self.device)
            step = self._step_fn = TrainStep(model, self.model, self.params, self.optimizer, self.cfg, self.device)
            if step.scaler is not None and self._scaler_state:
                step.scaler.load_state_dict(self._scaler_state)  # fp16 resumes with the scale it had reached
        return step

    def _progress(self) -> Progress | None:
        if not self.shows_progress:
            return None
        of = f" (rank 0 of {self.dist.world_size})" if self.dist.world_size > 1 else ""  # its loss and chars/s are rank 0's
        return Progress(self.n_batches, f"epoch {self.epoch + 1}/{self.cfg.epochs}{of}", "batch", initial=self.batch)

    def _val_loss(self) -> float | None:
        """The loss on the held-out text, read as one stream, with progress; Ctrl-C or SIGTERM stops it and writes last/.

        The checkpoint then records the validation as pending: a resume does it first, so that it
        ends as the run left alone would.  In a job every process reads the whole held-out text, chunk by chunk
        alike, and they agree on a signal every few chunks, so that all stop together (torchrun kills its workers
        30 s after a Ctrl-C: a long validation finished first lost the run).
        """
        if self.val_ids is None:
            return None
        bar = Progress(self.val_ids.numel(), "validation", "character") if self.shows_progress else None
        chunks = 0

        def tick(done: int) -> None:
            nonlocal chunks
            if bar is not None:
                bar.advance(done)
            chunks += 1
            if self.dist.world_size > 1:
                if chunks % distributed.SIGNAL_POLL_EVERY:
                    return
                self._signal = self.dist.agree_signal(self._signal)
            if self._signal is not None:
                raise _StopValidation

        try:
            return evaluate(self.model, self.val_ids, progress=tick)[0]
        except _StopValidation:
            pass
        finally:
            if bar is not None:
                bar.close()
        raise TrainingInterrupted(self._signal, self.save("last"))

    def _check_finite(self, bad_step: torch.Tensor) -> None:
        step = int(bad_step)
        if step >= 0:
            raise CharlmError(
                f"the loss became NaN or infinite at step {step + 1} (epoch {self.epoch + 1}); stopped, {self._kept()}; "
                f"try a lower --lr or a --grad-clip",
                exit_code=1,
            )

    def _check_weights(self) -> None:
        """Weights that are not finite are neither validated nor saved: a loss is checked as it is computed, but the
        update after it can still diverge (the last step before a checkpoint; without a held-out text, nothing else
        would tell)."""
        if bad := next((n for n, p in self.model.named_parameters() if not bool(torch.isfinite(p).all())), None):
            raise CharlmError(f"the weights became NaN or infinite (in {bad}) after step {self.step:,}: training diverged; "
                              f"stopped, {self._kept()}; try a lower --lr or a --grad-clip", exit_code=1)

    def _kept(self) -> str:
        """What a run stopped by a NaN loss leaves (its checkpoints are not overwritten by the diverged weights)."""
        last = self.out / "last"
        return f"the last good checkpoint is {last}" if (last / ckpt_io.META_FILE).exists() else "no checkpoint was written yet"

    def _end_epoch(self) -> bool:
        """The epoch's end: the state is reset; validation (unless ``--eval-every`` spaces it out); True to stop."""
        cfg = self.cfg
        self.epoch += 1
        self.batch, self.state = 0, None
        last_epoch = self.epoch >= cfg.epochs
        if cfg.eval_every and not last_epoch and self.step % cfg.eval_every:
            if self._over_time(0.0):
                return self._validate(at_epoch_end=True, over_time=True)
            if cfg.sample_every and self.epoch % cfg.sample_every == 0:  # the epoch's samples, validated or not
                self.print_samples()
                if self.dist.world_size == 1 and self._signal is not None:  # cut short: stopped here, as after a validation
                    raise TrainingInterrupted(self._signal, self.save("last"))  # (in a job, at the next agreed poll)
            return False
        return self._validate(at_epoch_end=True, over_time=self._over_time(0.0))

    SLOW_VALIDATION = 10.0  # seconds from which a validation longer than the training before it is noted

    def _validate(self, at_epoch_end: bool, over_time: bool = False) -> bool:
        """Validation, metrics, schedule, checkpoints and samples; True to stop (early stop or ``--max-minutes``).

        A validation on the run's own cadence (each epoch's end, or each ``--eval-every`` steps) steers the run: the
        plateau schedule and the early stop count it, and the running training loss starts again after it.  One
        that only closes the run off that cadence (its last epoch ending between two ``--eval-every`` steps, or the
        ``--max-minutes`` limit) is reported and checkpointed (best/ too, when it is the lowest) but steers nothing,
        so that a run resumed with more epochs or minutes goes on as one given them from the start.
        """
        cfg = self.cfg
        steers = self.step % cfg.eval_every == 0 if cfg.eval_every else at_epoch_end
        self._check_weights()  # (before the metrics: a row is written for a checkpoint saved)
        loss_sum, tokens = self.dist.total(self.loss_sum, self.tokens)  # over every process's rows
        train_loss = loss_sum / max(1, tokens)
        self.pending = {"at_epoch_end": at_epoch_end, "over_time": over_time}
        started = time.perf_counter()
        val_loss = self._val_loss()  # the same on every process
        val_seconds = time.perf_counter() - started
        self.pending = None
        train_loss, val_loss = self.dist.from_main(train_loss, val_loss)  # so that all take the same decisions below
        epoch = self.epoch if at_epoch_end else round(self.epoch + self.batch / self.n_batches, 3)
        if not all(math.isfinite(x) for x in (train_loss, val_loss) if x is not None):  # diverged: keep the last good checkpoints
            raise CharlmError(f"the {'validation' if val_loss is not None and not math.isfinite(val_loss) else 'training'} loss is "
                              f"NaN or infinite at epoch {epoch}: training diverged; stopped, {self._kept()}; try a lower --lr "
                              f"or a --grad-clip", exit_code=1)
        chars_per_s = tokens / max(1e-9, self.elapsed)
        rec = {
            "epoch": epoch, "step": self.step,
            "train_loss": train_loss, "train_ppl": ppl(train_loss),
            "val_loss": val_loss, "val_ppl": ppl(val_loss),
            "lr": self.optimizer.param_groups[0]["lr"], "chars_per_s": chars_per_s, "seconds": self.elapsed,
            "train_seconds": self.train_seconds, "val_seconds": round(val_seconds, 3),
        }
        score = val_loss if val_loss is not None else train_loss
        # best/ holds the lowest of every validation, steering or not; without a held-out text, the last checkpoint (a
        # running training loss, with dropout on and the weights changing, chooses no model)
        improved = val_loss is None or score < self._lowest_so_far()
        self.metrics.append(rec)
        if steers:
            if self.plateau is not None:
                self.plateau.step(score)
            if score < self.best_val:
                self.best_val, self.since_best = score, 0
            else:
                self.since_best += 1
            self.tokens, self.elapsed = 0, 0.0
            self.loss_sum.zero_()
        if improved:  # best/ first: a kill between the two leaves last/ behind, and the resume saves both again
            self.save("best")
        saved = self.save("last")
        if self.dist.is_main:  # after the checkpoints: a save that fails leaves no row for a state not saved (a kill
            self._write_metrics()  # between the two, a row missing, which the resume writes again from last/)
        self.log(self._epoch_line(rec, improved))
        if val_seconds > max(self.SLOW_VALIDATION, rec["seconds"]) and not self._slow_val_noted:  # once: most of the time goes to validating
            self._slow_val_noted = True
            self.log(f"note: this validation took {val_seconds:,.0f} s, against {rec['seconds']:,.0f} s of training since the "
                     f"last one (not counted in --max-minutes); a smaller --val-fraction"
                     + (" or a larger --eval-every" if cfg.eval_every else "") + " leaves more of the time to training")
        last = self.epoch >= cfg.epochs or over_time
        stop = steers and self._early_stop_due() and not last
        cut = False
        if (cfg.sample_every and at_epoch_end and self.epoch % cfg.sample_every == 0) or last or stop:
            self.print_samples()
            cut = self.dist.world_size == 1 and self._signal is not None  # Ctrl-C or SIGTERM cut them short (last/ is saved)
        if stop:
            self._log_early_stop()
        if over_time:
            took = f"{self.train_seconds / 60:.1f} minutes" if self.train_seconds >= 60 else f"{self.train_seconds:.1f} seconds"
            fall = ""
            if cfg.schedule == "cosine" and self.step < self.total_steps:  # (spread over all --epochs, not the minutes)
                fall = (f"; the cosine schedule, spread over --epochs {cfg.epochs} ({self.total_steps:,} steps), was "
                        f"{self.step / self.total_steps:.0%} through (lr {rec['lr']:.2e}): fewer --epochs let it fall within the time")
            self.log(f"time limit: stopped after {took} of training (--max-minutes {cfg.max_minutes:g}){fall}")
        if cut:
            why = "time limit" if over_time else "early stop" if stop else "epochs" if last else ""
            raise TrainingInterrupted(self._signal, saved, finished=why)
        return stop or over_time

    def _runs_best(self) -> tuple[Path, ckpt_io.Checkpoint | None] | None:
        """On a resume into a folder without best/ (continued into another folder, or its best/ deleted): where the run's
        best/ is, beside the checkpoint resumed, and that checkpoint if it is this run's (its metrics the start of
        these); None when there is nothing to look for."""
        src, self._best_from = self._best_from, None
        kept = (self.out / "best" / ckpt_io.META_FILE).is_file() and not self.overwrite  # (--overwrite clears it next)
        if src is None or math.isinf(self._lowest_so_far()) or kept:
            return None
        where = src if src.name == "best" else src.parent / "best"
        try:
            best = ckpt_io.load(where)
        except CharlmError:
            return where, None
        ours = best.metrics and best.metrics == self.metrics[: len(best.metrics)]
        return where, best if ours else None

    def _restart_best(self, lost_at) -> None:
        """best/ lost: it starts again, in every process alike.  Resumed at a validation (the state of its metrics row),
        best/ is that state now; else it is written at the next validation.  Either way it holds the lowest from there on."""
        lowest = self._lowest_so_far()
        at_row = bool(self.metrics) and self.metrics[-1].get("step") == self.step and self.pending is None
        self.best_from_row = len(self.metrics) - at_row
        if at_row:
            self.save("best")
        if self.val_ids is None:  # nothing held out: best/ is the last checkpoint, and nothing is lost
            now, gone = f"best/ is the last checkpoint (nothing is held out), written {'now' if at_row else 'at the next validation'}", ""
        else:
            now = (f"best/ is now the state resumed (the validation of step {self.step:,}), and holds the lowest from there on"
                   if at_row else "best/ will hold the lowest validation from here on")
            gone = ("" if at_row and self._lowest_so_far() == lowest else  # (the state resumed was the lowest: nothing is lost)
                    f" (the lowest before, {lowest:.4f}, is in no checkpoint now)")
        self.log(f"note: {lost_at} holds no best/ this resume can use (it is missing or damaged, or of another run or a "
                 f"later point): {now}{gone}")

    def _lowest_so_far(self) -> float:
        """The lowest of the validations so far, the loss of the checkpoint in best/ (without a held-out part, the lowest
        training loss: best/ is the last checkpoint then)."""
        scores = (m.get("val_loss") if m.get("val_loss") is not None else m.get("train_loss") for m in self.metrics[self.best_from_row :])
        return min((x for x in scores if x is not None), default=math.inf)

    def _early_stop_due(self) -> bool:
        return self.cfg.early_stop > 0 and self.since_best >= self.cfg.early_stop

    def _log_early_stop(self, hint: str = "") -> None:
        what = "validation" if self.val_ids is not None else "training"
        where = (f"best checkpoint: {self.out / 'best'}" if self.val_ids is not None else
                 f"last checkpoint: {self.out / 'last'} (best/ is the same: nothing is held out)")
        self.log(f"early stop: no {what} loss below {self.best_val:.4f} for {self.since_best} validation{'s' if self.since_best != 1 else ''}; "
                 f"{where}{hint}")

    @property
    def curve_label(self) -> str:
        """What the training perplexity measures: a running mean over the epoch, with what the objective had on."""
        m = self.model_cfg
        on = [name for name, v in (("dropout", m.dropout or m.embed_dropout or m.weight_drop), ("label smoothing", self.cfg.label_smoothing)) if v]
        return "training (running mean" + "".join(f", {x} on" for x in on) + ")"

    def _epoch_line(self, r: dict, improved: bool) -> str:
        val = ""
        if r["val_loss"] is not None:
            val = f"  val_loss {r['val_loss']:.4f}  val_ppl {r['val_ppl']:.2f}" + (" *" if improved else "")
        took = f"  validated in {r['val_seconds']:,.0f} s" if r.get("val_seconds", 0) >= 1 else ""  # (where it shows)
        return (f"epoch {r['epoch']}/{self.cfg.epochs}  train_loss {r['train_loss']:.4f}  train_ppl {r['train_ppl']:.3f}"
                f"{val}  {r['chars_per_s']:,.0f} chars/s  lr {r['lr']:.2e}{took}")

    def sample_starts(self) -> tuple[list[tuple[int, str]], str]:
        """The training samples' prefixes, each with its index in ``--prefixes`` (it seeds the sample's stream): those the
        vocabulary knows whole, as generate's default; with none, a start of generate's own (the start of a line, or
        of a word for a --newlines space model) or, without newline or space, the training text's first character.
        Also how the samples begin then, in words ("" with a prefix)."""
        vocab = self.corpus.vocab
        starts = known_prefixes(vocab, self.cfg.prefixes)
        if starts:
            return starts, ""
        if "\n" in vocab or " " in vocab:
            return [(0, "")], "begin a line" if "\n" in vocab else "begin after a space"
        first = self.corpus.train_text[:1]
        return [(0, first)], f"begin with the training text's first character, {first!r},"

    def print_samples(self) -> None:
        if not self.dist.is_main:
            return
        cfg = self.cfg
        scfg = SampleConfig(length=cfg.sample_length, greedy=cfg.sample_greedy, temperature=0.8)
        vocab = self.corpus.vocab
        for i, known in self.sample_starts()[0]:
            # A private stream per (seed, epoch, prefix): training's own random streams are untouched, and two
            # prefixes do not share their draws (with the same draws their samples soon coincide).
            g = make_generator(cfg.seed + 1_000 * self.epoch + i, "cpu")
            gen = torch.Generator(device=self.device).manual_seed(int(torch.randint(0, 2**31, (1,), generator=g)))
            text = ""
            for step in generate(self.model, vocab, known, scfg, generator=gen):
                text += step[0]
                if self._signal is not None:  # Ctrl-C or SIGTERM: no waiting for a long --sample-length
                    break
            self.log(" - " + one_line(text) + (" …" if self._signal is not None else ""))
            if self._signal is not None:
                return

    def _write_metrics(self) -> None:
        lines = "".join(json.dumps(ckpt_io.finite(r), allow_nan=False) + "\n" for r in self.metrics)  # an overflowed perplexity: null
        ckpt_io.write_atomic((self.out / "metrics.jsonl", lines.encode()))


def catch_signals(handler) -> dict:
    """``handler`` for Ctrl-C, SIGTERM (and on Windows Ctrl-Break, SIGBREAK; TerminateProcess, as taskkill /F, cannot
    be caught); the handlers it replaced, for :func:`restore_signals`.  A signal ignored on purpose (SIGINT of a job
    started with `&` in a script) stays ignored, as Python leaves it, and outside the main thread nothing changes."""
    handlers = {}
    for sig in (signal.SIGINT, signal.SIGTERM, *filter(None, [getattr(signal, "SIGBREAK", None)])):
        if signal.getsignal(sig) is signal.SIG_IGN:  # (kill, SIGTERM, stops such a run with last/ written)
            continue
        try:
            handlers[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: no signal handling
            pass
    return handlers


def restore_signals(handlers: dict) -> None:
    for sig, h in handlers.items():
        signal.signal(sig, h)


def plot_metrics(metrics: list[dict], path: str | Path, training: str = "training (running mean)") -> Path | None:
    """Training and validation perplexity per epoch, as a PNG; ``training`` labels the training curve
    (:attr:`Trainer.curve_label`)."""
    if not metrics:
        return None
    path = Path(path)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs = [m["epoch"] for m in metrics]
    fig = Figure(figsize=(6, 4), dpi=100)  # not pyplot: no backend switched, no figure left open in a notebook
    FigureCanvasAgg(fig)
    from matplotlib.ticker import MaxNLocator

    ax = fig.add_subplot()
    shown = False  # a finite perplexity, anywhere (a diverged run's are all null or inf)
    for key, label in (("train_ppl", training), ("val_ppl", "validation (held out)")):
        ys = [m[key] for m in metrics]
        if key == "val_ppl" and all(y is None for y in ys):
            continue
        line, = ax.plot(epochs, ys, label=label, marker="o" if len(ys) <= 30 else None, markersize=3)
        # a point each; of many, those with no line to a neighbour (alone, or between overflowed ones) all the same
        ok = [y is not None and 0 < y < math.inf for y in ys]
        shown = shown or any(ok)
        alone = [i for i in range(len(ys)) if ok[i] and not (i and ok[i - 1]) and not (i + 1 < len(ys) and ok[i + 1])]
        if len(ys) > 30 and alone:
            ax.plot([epochs[i] for i in alone], [ys[i] for i in alone], "o", markersize=3, color=line.get_color())
    ax.set_xlabel("epoch")
    if all(float(e).is_integer() for e in epochs):  # epoch 1, 2, 3 (validations part-way through one: fractions too)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(set(epochs)) == 1:  # one validation: its epoch in the middle, not a scale of hundredths around it
        ax.set_xlim(max(0, epochs[0] - 1), epochs[0] + 1)
    ax.set_ylabel("perplexity")
    if not shown:  # (every perplexity overflowed: a diverged run)
        ax.text(0.5, 0.5, "no finite perplexity to plot (the run diverged)", transform=ax.transAxes, ha="center", va="center")
        ax.set_yticks([])
        if len(set(epochs)) > 1:
            ax.set_xlim(min(epochs), max(epochs))
    else:
        _perplexity_axis(ax)
        labels = [training, "validation (held out)"]  # above the plot, where it covers no point: side by side if they fit
        ax.legend(loc="lower left", bbox_to_anchor=(0, 1.01), ncol=2 if sum(map(len, labels)) <= 60 else 1,
                  frameon=False, borderaxespad=0)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    ckpt_io.write_atomic((path, buf.getvalue()))
    return path


def _perplexity_axis(ax) -> None:
    """A log scale labelled in plain numbers (300, not 3×10²): 1, 2, 3, 5, 10, ... over a decade or more; each unit (and 1.2, 1.5)
    within one; evenly spaced values with the decimals their spacing needs (79.2, 79.4) where fewer units fall in it."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter, NullLocator, ScalarFormatter

    ax.set_yscale("log")
    low, high = ax.get_ylim()
    decades = math.log10(high / low)
    units = [u * 10.0 ** e for e in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1) for u in range(1, 10)]
    if sum(low <= u <= high for u in units) < 3:
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6))
        ax.yaxis.set_minor_locator(NullLocator())
        plain = ScalarFormatter(useOffset=False)
        plain.set_scientific(False)
    else:  # over a decade 1, 2, 3, 5, 10; over three 1, 10, 100; over many, every so many powers of ten
        # (within a decade, 12 and 15 too: a curve from 14 to 5 had no label above its 10)
        major = (1.0, 1.2, 1.5, *map(float, range(2, 10))) if decades < 1 else (1.0, 2.0, 3.0, 5.0) if decades < 3 else (1.0,)
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=major, numticks=8))
        ax.yaxis.set_minor_locator(NullLocator() if decades >= 3 else
                                   LogLocator(base=10, subs=[float(x) for x in range(1, 10) if x not in major] or None))
        plain = FuncFormatter(lambda v, _: f"{v:.3g}" if v < 10 else f"{v:,.0f}" if v < 1e6 else _power_of_ten(v))
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(NullFormatter())


def _power_of_ten(v: float) -> str:
    """1e7, 2e12: a large perplexity in as few characters as it takes."""
    mantissa, exponent = f"{v:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def model_config_for(cfg_values: dict, vocab_size: int) -> ModelConfig:
    """The ``ModelConfig`` of a dict of settings (a preset's, say; other keys ignored) for a vocabulary of ``vocab_size``."""
    from .config import field_names

    return ModelConfig(**{k: v for k, v in cfg_values.items() if k in field_names(ModelConfig)}, vocab_size=vocab_size)


def _check_arguments(model_cfg, cfg, corpus, resume, init_weights, log=None) -> None:
    """A Trainer given the wrong kind of thing, or a corpus read by other settings than ``cfg`` (whose checkpoint would
    then describe another training), or ``cfg.init_from`` without the weights, is refused with what to do."""
    from .data import IN_MEMORY, READ_AS

    for name, value, kind in (("model_cfg", model_cfg, ModelConfig), ("cfg", cfg, TrainConfig), ("corpus", corpus, Corpus),
                              ("resume", resume, (ckpt_io.Checkpoint, type(None))), ("init_weights", init_weights, (dict, type(None)))):
        if not isinstance(value, kind):
            hint = " (charlm.load(path) reads one)" if name == "resume" else " (charlm.data.load_corpus(cfg))" if name == "corpus" else ""
            raise TypeError(f"{name} must be a {kind.__name__ if isinstance(kind, type) else kind[0].__name__}{hint}, "
                            f"got {type(value).__name__}")
    if log is not None and not callable(log):  # (failed only inside fit(), after the setup)
        raise TypeError(f"log must be a function that takes a line (print, a list's append) or None, got {type(log).__name__}")
    read_as = corpus.read_as or {}
    differ = [k for k in READ_AS if k in read_as and read_as[k] != getattr(cfg, k) and not (k == "encoding" and corpus.source == IN_MEMORY)]
    if differ:
        raise CharlmError("the corpus was read with " + ", ".join(f"{k}={read_as[k]!r}" for k in differ) + " but cfg has "
                          + ", ".join(f"{k}={getattr(cfg, k)!r}" for k in differ) + ": read it with load_corpus(cfg) (or "
                          "corpus_from_text(text, cfg)), so that the checkpoint says how its text was read")
    if cfg.init_from and init_weights is None and resume is None:
        raise CharlmError(f"cfg.init_from is {cfg.init_from!r}, but a Trainer takes the pre-trained weights as init_weights: "
                          "weights, model_cfg, corpus = charlm.transfer.fine_tune_setup(cfg.init_from, corpus) gives them")


def _recorded_source(cfg: TrainConfig, corpus: Corpus) -> TrainConfig:
    """``cfg`` with ``data`` saying where the corpus really came from, so that a checkpoint never names the wrong text.

    A corpus from :func:`corpus_from_text`, or one made by hand under the default ``data`` that is not
    the bundled lyrics, is recorded as :data:`IN_MEMORY`; a file's path is kept absolute.
    """
    import dataclasses
    import os

    from .data import IN_MEMORY, load_corpus

    source = corpus.source
    if source is None:  # made by hand: trusted to be cfg.data's text, but for the default, checked against the lyrics
        source = cfg.data
        if not cfg.data:
            bundled = load_corpus(cfg, vocab=corpus.vocab)
            source = "" if (bundled.train_text, bundled.val_text) == (corpus.train_text, corpus.val_text) else IN_MEMORY
    data = source if source in ("", IN_MEMORY) else os.path.abspath(source)  # where the corpus was read, whatever cfg says
    init_from = os.path.abspath(cfg.init_from) if cfg.init_from else ""  # read again from anywhere (--check-copy)
    return cfg if (data, init_from) == (cfg.data, cfg.init_from) else dataclasses.replace(cfg, data=data, init_from=init_from)


def held_out_unk(trainer: Trainer) -> int:
    """How many held-out characters a model with ``<unk>`` reads (and is scored on) as ``<unk>``."""
    return int((trainer.val_ids == 0).sum()) if trainer.corpus.vocab.unk and trainer.val_ids is not None else 0


def two_forms(chars, text: str) -> str:
    """Characters of a vocabulary that ``text`` writes both composed (é, one code point) and decomposed (e + U+0301),
    shown for a note; "" for none (most text: one form, or no accents; NFC text keeps marks on letters with no composed
    form, ẹ́, but writes à composed every time)."""
    have = set(chars)
    parts = {c: d for c in have if len(c) == 1 and len(d := unicodedata.normalize("NFD", c)) > 1 and set(d) <= have}
    marks = re.escape("".join(sorted({x for d in parts.values() for x in d[1:]})))
    # (one pass over the text: each letter with marks after it, composed, that is one of them)
    spelled = {unicodedata.normalize("NFC", m.group()) for m in re.finditer(f"[^{marks}][{marks}]+", text)} if marks else set()
    found = sorted(c for c, d in parts.items() if c in spelled and d in text)
    return ", ".join(f"{c!r} and {' + '.join(f'U+{ord(x):04X}' if unicodedata.combining(x) else repr(x) for x in parts[c])}"
                     for c in found[:3]) + (" …" if len(found) > 3 else "")


def describe(trainer: Trainer) -> str:
    """The lines a training run starts with: corpus, split, vocabulary, model, batches (and notes on <unk> and warm-up);
    the first :meth:`Trainer.fit` logs them."""
    c, cfg = trainer.corpus, trainer.cfg
    unk_note = warm_note = ""
    if c.vocab.unk:  # how much of the training text the model reads as <unk>: rare characters, or with --min-freq many
        n_unk = int((trainer.train_ids == 0).sum())
        unk_note = f"\n<unk>: {n_unk:,} of the {trainer.train_ids.numel():,} training characters ({n_unk / max(1, trainer.train_ids.numel()):.1%})"
        if (held := held_out_unk(trainer)):  # scored as the one class <unk>: the held-out figure is easier so
            unk_note += f" and {held:,} of the {trainer.val_ids.numel():,} held-out ones ({held / trainer.val_ids.numel():.1%})"
        unk_note += " are read as <unk>"
    # (the cosine's length is the run's that started it; a constant rate's warm-up goes on over the epochs a resume adds)
    run_steps = trainer.total_steps if cfg.schedule == "cosine" else trainer.n_batches * cfg.epochs
    if cfg.warmup_steps > run_steps and cfg.schedule != "plateau":
        warm_note = (f"\nnote: --warmup-steps {cfg.warmup_steps} is longer than the whole run ({run_steps} steps): "
                     f"the learning rate never reaches --lr {cfg.lr:g}")
    left_out = [p for p in cfg.prefixes if p and c.vocab.unknown(p)]
    if left_out:  # a prefix is used whole or not at all, as `charlm generate` does without --prefix
        missing = list(dict.fromkeys(ch for p in left_out for ch in c.vocab.unknown(p)))
        instead = trainer.sample_starts()[1]
        warm_note += (f"\nnote: the samples leave out --prefixes {' '.join(map(repr, left_out))}: the vocabulary lacks "
                      f"{show_chars(missing)}" + (f"; they {instead} instead" if instead else ""))
    val = f"validation {len(c.val_text):,}" + (f" ({trainer.val_skipped:,} outside the vocabulary, skipped when scoring)" if trainer.val_skipped else "")
    if cfg.val_fraction and trainer.val_ids is None:  # held out, but too little to score: said, not a run of null val_loss
        warm_note += (f"\nnote: the held-out part (--val-fraction {cfg.val_fraction:g}) has "
                      f"{'no character' if not len(c.val_text) else 'too few characters'} the model can score (it takes two): "
                      f"nothing is validated, and best/ is the last checkpoint; give a larger --val-fraction, or 0 to hold nothing out")
    if both := two_forms(c.vocab.itos, c.train_text):  # (each spelling learned apart, and a reader's é is one of them)
        warm_note += (f"\nnote: the text writes accented letters in both Unicode forms, as one character and as a letter with "
                      f"a combining mark after it ({both}): the model learns each spelling apart; normalise the text to "
                      f"one form first (NFC: python -c \"import sys, unicodedata; sys.stdout.write(unicodedata.normalize('NFC', "
                      f"sys.stdin.read()))\" < in.txt > out.txt)")
    from .data import SPACED_NOTE, spaced_symbols

    if spaced_symbols(c.train_text):
        warm_note += f"\nnote: {SPACED_NOTE}"
    if (secs := validation_seconds(trainer)) >= LONG_VALIDATION_SECONDS:
        hold = min(cfg.val_fraction, max(1e-4, float(f"{200_000 / c.total_chars:.0e}")))  # about 200,000 characters held out
        warm_note += (f"\nnote: a validation reads the {trainer.val_ids.numel():,} held-out characters one after another: about "
                      f"{_duration(secs)} here, at each epoch's end{' and each --eval-every' if cfg.eval_every else ''}, not "
                      f"counted in --max-minutes; --val-fraction {hold:g} holds out about {hold * c.total_chars:,.0f}")
    if trainer.n_batches >= LONG_EPOCH and not cfg.eval_every:
        warm_note += (f"\nnote: an epoch is {trainer.n_batches:,} batches, validated and checkpointed only at its end: "
                      f"--eval-every N does both every N steps")
    n, targets = trainer.train_ids.numel(), trainer.n_batches * cfg.batch_size * cfg.num_steps
    # (consecutive sampling: the same part every epoch; the lyrics leave out 1.1%, the seed 10%: no note)
    if cfg.sampling == "consecutive" and n > 1 and targets < 0.8 * (n - 1):
        warm_note += (f"\nnote: an epoch's {trainer.n_batches} batch{'es' if trainer.n_batches != 1 else ''} of {cfg.batch_size}x{cfg.num_steps} "
                      f"take{'s' if trainer.n_batches == 1 else ''} {targets:,} of the {n - 1:,} training characters as targets ({targets / (n - 1):.0%}): the rest, each row's "
                      f"last part shorter than --num-steps, is never learned from; a smaller --batch-size or --num-steps uses more of it")
    return (f"corpus: {c.total_chars:,} characters; training {len(c.train_text):,}, {val}\n"
            f"vocabulary: {len(c.vocab):,} character{'s' if len(c.vocab) != 1 else ''}; model: {trainer.model_cfg.cell} {trainer.model_cfg.num_layers}x{trainer.model_cfg.hidden_size}, "
            f"{num_parameters(trainer.model):,} parameters; {trainer.n_batches} batch{'es' if trainer.n_batches != 1 else ''} of {cfg.batch_size}x{cfg.num_steps} per epoch; device {trainer.device}\n"
            f"settings: {settings(trainer.model_cfg, cfg)}" + unk_note + warm_note + (
                f"\ndata parallel: {trainer.dist.world_size} process(es) ({trainer.dist.backend}), {cfg.batch_size // trainer.dist.world_size} "
                f"of the {cfg.batch_size} rows of every batch each; rank 0 writes the checkpoints" if trainer.dist.enabled else ""))


LONG_EPOCH = 5_000  # batches in an epoch from which describe() points to --eval-every
LONG_VALIDATION = 500_000  # held-out characters from which describe() times a piece of a validation
LONG_VALIDATION_SECONDS = 120.0  # the validation time it foresees from which it says so


def validation_seconds(trainer: Trainer, chunks: int = 8) -> float:
    """About how long one validation of a long held-out text takes, from the median time of its first ``chunks`` pieces
    of EVAL_CHUNK characters (after one untimed: set-up, a GPU's kernels); 0 for a held-out text under LONG_VALIDATION
    characters (or none)."""
    ids = trainer.val_ids
    if ids is None or ids.numel() < LONG_VALIDATION:
        return 0.0
    device = trainer.model.decoder.weight.device

    def tick(_):
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # (a chunk is queued, not done, when its loop step ends)
        times.append(time.perf_counter())

    evaluate(trainer.model, ids[:EVAL_CHUNK])
    times = [time.perf_counter()]
    evaluate(trainer.model, ids[: chunks * EVAL_CHUNK], progress=tick)
    return statistics.median(b - a for a, b in zip(times, times[1:])) * ids.numel() / EVAL_CHUNK


def _duration(seconds: float) -> str:
    return (f"{seconds / 3600:.1f} hours" if seconds >= 5400 else f"{seconds / 60:.0f} minutes" if seconds >= 90
            else f"{seconds:.0f} seconds")


def settings(m: ModelConfig, cfg: TrainConfig) -> str:
    """A training's regularisation and optimisation in one line, so that a preset's values are seen, not assumed."""
    def num(x) -> str:
        return f"{x:g}"

    locked = bool(m.locked_dropout and (m.dropout or m.embed_dropout))  # (one mask per sequence: of the two above)
    reg = [f"{name} {num(v)}" if v is not True else name for name, v in (
        ("dropout", m.dropout), ("embedding dropout", m.embed_dropout), ("locked dropout", locked),
        ("weight-drop", m.weight_drop), ("label smoothing", cfg.label_smoothing)) if v]
    schedule = {"constant": "", "cosine": f", cosine to {num(cfg.min_lr)}", "plateau": f", x{num(cfg.plateau_factor)} on a plateau"}[cfg.schedule]
    opt = [f"{cfg.optimizer} lr {num(cfg.lr)}{schedule}" + (f" after {cfg.warmup_steps:,} warm-up steps" if cfg.warmup_steps else "")]
    opt += [f"{name} {num(v)}" for name, v in (("weight decay", cfg.weight_decay), ("momentum", cfg.momentum if cfg.optimizer == "sgd" else 0),
                                               ("gradient clip", cfg.grad_clip)) if v]
    extra = ([f"copy attention over {m.copy_window:,} characters"] if m.copy_window else []) + (
        ["tied input and output weights"] if m.tie_weights else [])
    stop = [f"early stop after {cfg.early_stop} validation{'s' if cfg.early_stop != 1 else ''} without a better loss"] if cfg.early_stop else []
    return "; ".join([", ".join(reg) or "no dropout", ", ".join(opt), *extra, *stop, "losses in nats per character"])


__all__ = ["Trainer", "TrainingInterrupted", "evaluate", "evaluate_dynamic", "surprisal", "plot_metrics", "describe", "ppl", "pick_device",
           "model_config_for"]
