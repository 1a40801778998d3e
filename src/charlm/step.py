"""One training step: forward, loss, backward, clipping and the optimizer's update.

The same step runs three ways, chosen by ``TrainConfig``:

* eagerly in fp32 (the reference, and the only way on the CPU with ``--precision fp32``);
* under autocast, ``--precision bf16`` (GPU, or a CPU with bfloat16 instructions) or ``fp16`` (GPU only, with a gradient
  scaler so that small gradients do not flush to zero);
* captured whole in one CUDA graph, ``--cuda-graph``: forward, loss, backward,
  ``clip_grad_norm_`` and ``optimizer.step`` replayed as one launch.  At the seed's size a
  step is a few hundred small kernels, and launching them from Python costs more than
  running them (NOTES.md: 200k characters/s eager, 1.59M captured, on one H200).

A graph reads and writes fixed memory, so the captured step works on static buffers::

    batch (x, y) --copy_--> static x, y ──┐
    carried (h, c) --copy_--> static h, c ─┤ replay: forward, loss, backward, clip, update,
    lr (a float) --fill_--> static lr ────┘         then static h, c <- the new state
                                          -> static loss (fp32, detached)

The new state is written back into the buffers the next step reads, so the carried state
is detached by construction and costs no copy.  The learning rate is a one-element device
tensor that the graph's optimizer reads; before every replay it is set from the param
group's float, which the schedules keep updating as usual (and which checkpoints store).
No step reads a value back to the host: the loss is accumulated on the device by the caller.
"""

from __future__ import annotations

import contextlib
import os
import warnings

import torch
import torch.nn.functional as F

from .errors import CharlmError
from .model import detach, parts

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
GRAPH_WARMUP = 3  # eager steps (real ones, on a side stream) before capture: cuBLAS/cuDNN handles, optimizer state


def physical_cores() -> int:
    """Physical cores this process may run on (SMT siblings counted once); the CPU count if unknown."""
    try:
        cpus = os.sched_getaffinity(0)
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
    cores = set()
    for cpu in cpus:
        try:
            with open(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list") as f:
                cores.add(f.read().strip())
        except OSError:
            cores.add(str(cpu))
    return max(1, len(cores))


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (oneDNN's test: AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def check_speed_flags(cfg, device: torch.device, world_size: int = 1) -> None:
    """A one-line error for a precision or CUDA-graph setting this device cannot run."""
    if cfg.cuda_graph and device.type != "cuda":
        raise CharlmError(f"--cuda-graph needs a CUDA GPU, but this run is on {device.type}; leave --cuda-graph out")
    if cfg.precision == "fp16" and device.type != "cuda":
        other = "bf16 or fp32" if device.type != "cpu" or cpu_has_bf16() else "fp32 (this CPU lacks bfloat16 instructions for bf16)"
        raise CharlmError(f"--precision fp16 needs a CUDA GPU (it trains with a gradient scaler); on {device.type} use {other}")
    if cfg.precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise CharlmError("--precision bf16: this GPU has no bfloat16 support; use fp16 or fp32")
    if cfg.precision == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        # oneDNN cannot build its bf16 LSTM without the instructions, and emulated bf16 is slower than fp32.
        raise CharlmError("--precision bf16 on the CPU needs bfloat16 instructions (AVX512-BF16 or AMX), which this CPU lacks; use fp32")
    if cfg.cuda_graph and cfg.precision == "fp16":
        raise CharlmError("--cuda-graph and --precision fp16 do not go together (the gradient scaler reads back to the host); use bf16")
    if cfg.cuda_graph and world_size > 1:
        raise CharlmError("--cuda-graph is for one process; a torchrun job trains eagerly (leave --cuda-graph out)")


def autocast(device: torch.device, precision: str, cache: bool = True):
    """The autocast context of ``precision`` (nothing for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[precision], cache_enabled=cache)


def make_grad_scaler(device: torch.device):
    """fp16's gradient scaler: torch.amp.GradScaler (PyTorch >= 2.3), else the CUDA one of older PyTorch."""
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler(device.type)
    return torch.cuda.amp.GradScaler()  # PyTorch 2.2: CUDA only (fp16 is refused on other devices anyway)


class TrainStep:
    """``step(x, y, state) -> (loss, state)``: one update of ``params``; the loss (a 0-d fp32 tensor) and state come back detached.

    ``model`` is what training calls (the module, or its DistributedDataParallel wrapper);
    ``base`` is the plain :class:`CharLM` (for ``init_state``).  ``graph`` (default
    ``cfg.cuda_graph``) runs the static-buffer protocol of the CUDA graph; on the CPU, where
    nothing can be captured, it calls the same body directly, which lets tests check the
    protocol against the plain step.
    """

    def __init__(self, model, base, params, optimizer, cfg, device: torch.device, graph: bool | None = None):
        self.model, self.base, self.params, self.optimizer = model, base, params, optimizer
        self.cfg, self.device = cfg, device
        self.use_graph = cfg.cuda_graph if graph is None else graph
        self.vocab_size = base.cfg.vocab_size
        self.scaler = make_grad_scaler(device) if cfg.precision == "fp16" else None
        self.graph = None  # a torch.cuda.CUDAGraph, or on the CPU the body itself
        self.warm = 0
        self.forward = one_hot_forward(model, cfg, device) or model

    def __call__(self, x: torch.Tensor, y: torch.Tensor, state):
        if self.use_graph:
            return self._graph_step(x, y, state)
        return self.eager(x, y, state)

    # --- the step itself ------------------------------------------------------------

    def eager(self, x: torch.Tensor, y: torch.Tensor, state, cache: bool = True):
        """Forward, loss, backward, clip, update: the reference, and the body of the CUDA graph."""
        cfg = self.cfg
        with autocast(self.device, cfg.precision, cache):
            if self.forward is self.model:  # the model's own loss (a copy model's without its mixture over the vocabulary)
                loss, state = self.model(x, state, targets=y, label_smoothing=cfg.label_smoothing)
            else:  # the one-hot fast path (fp32 only) gives logits
                logits, state = self.forward(x, state)  # (batch, steps, vocab)
                loss = F.cross_entropy(logits.reshape(-1, self.vocab_size), y.reshape(-1), label_smoothing=cfg.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip, foreach=True)
            self.optimizer.step()
        else:  # fp16: scale the loss up, unscale before clipping; a step with inf/NaN gradients is skipped
            self.scaler.scale(loss).backward()
            if cfg.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip, foreach=True)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        return loss.detach(), detach(state)

    # --- the CUDA graph ---------------------------------------------------------------

    def _graph_step(self, x, y, state):
        cuda = self.device.type == "cuda"
        if self.graph is None and self.warm < GRAPH_WARMUP:
            # Real training steps, on a side stream as capture wants: they create the
            # optimizer's state and the library handles the graph will use.
            self.warm += 1
            with warnings.catch_warnings():  # "capturable=True ... running without graph capture": expected here
                warnings.filterwarnings("ignore", message="This instance was constructed with capturable=True")
                if not cuda:
                    return self.eager(x, y, state)
                side = torch.cuda.Stream(self.device)
                side.wait_stream(torch.cuda.current_stream(self.device))
                with torch.cuda.stream(side):
                    out = self.eager(x, y, state)
                torch.cuda.current_stream(self.device).wait_stream(side)
                return out
        if self.graph is None:
            self._capture(x.shape)
        if x.shape != self.static_x.shape:
            raise CharlmError(f"--cuda-graph: batch of shape {tuple(x.shape)}, the graph was captured for {tuple(self.static_x.shape)}")
        self.static_x.copy_(x)
        self.static_y.copy_(y)
        for s, new, empty in zip(self.static_state, parts(state) if state is not None else [None] * len(self.static_state),
                                 self._state_empty):
            if new is None:
                s.copy_(empty)
            elif new.data_ptr() != s.data_ptr():  # from an eager step or a checkpoint, not the graph's own output
                s.copy_(new)
        for g, lr in zip(self.optimizer.param_groups, self.static_lr):
            lr.fill_(g["lr"])
        if cuda:
            self.graph.replay()
        else:
            with self._lr_tensors(), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="This instance was constructed with capturable=True")
                self.graph()
        return self.static_loss, self._state_out

    def _body(self) -> None:
        """What the graph holds: the step on the static buffers, the new state written over the old."""
        loss, new = self.eager(self.static_x, self.static_y, self._state_out, cache=False)
        for s, n in zip(self.static_state, parts(new)):
            s.copy_(n)
        self.static_loss = loss

    @contextlib.contextmanager
    def _lr_tensors(self):
        """The optimizer reads its rates from ``static_lr`` (device memory) inside; plain floats again after."""
        groups = self.optimizer.param_groups
        floats = [g["lr"] for g in groups]
        for g, lr in zip(groups, self.static_lr):
            g["lr"] = lr
        try:
            yield
        finally:
            for g, f in zip(groups, floats):
                g["lr"] = f  # checkpoints, metrics and schedules keep plain floats

    def _capture(self, shape) -> None:
        dev = self.device
        self.static_x = torch.zeros(shape, dtype=torch.long, device=dev)
        self.static_y = torch.zeros(shape, dtype=torch.long, device=dev)
        self._state_out = self.base.init_state(shape[0], dev)
        self.static_state = list(parts(self._state_out))
        self._state_empty = [p.clone() for p in self.static_state]  # zeros, and EMPTY ids for a copy memory
        self.static_lr = [torch.tensor(float(g["lr"]), dtype=torch.float32, device=dev) for g in self.optimizer.param_groups]
        if dev.type != "cuda":
            self.graph = self._body
            return
        self.optimizer.zero_grad(set_to_none=True)  # the gradients are allocated inside the graph's pool
        graph = torch.cuda.CUDAGraph()
        with self._lr_tensors(), torch.cuda.graph(graph):
            self._body()
        self.graph = graph


# --- the seed's one-hot LSTM on the CPU -----------------------------------------------


def one_hot_forward(model, cfg, device: torch.device):
    """A faster ``forward(x, state) -> (logits, state)`` for the seed's own model on the CPU, or None.

    With ``embedding_size=0`` the input is one-hot, so ``onehot(x) @ W_ih^T`` is row ``x`` of
    ``W_ih^T``: a lookup, not a (vocabulary x 4 hidden) matrix product per character.  nn.LSTM
    cannot take its input already projected, so the recurrence is written out
    (:class:`_Recurrence`); at the seed's settings on 2 cores this model trains at 1.85x the
    seed's loop (vocabulary 1,027) and 2.18x (the whole file), BENCHMARKS.md, 2026-11-30.
    Only for one plain LSTM layer with no dropout of any kind, fp32, on the CPU; anything
    else returns None and the model is called as it is.
    """
    mc = getattr(model, "cfg", None)
    rnn = getattr(model, "rnn", None)
    if (device.type != "cpu" or cfg.precision != "fp32" or mc is None or mc.embedding_size != 0 or mc.cell != "lstm"
            or not isinstance(rnn, torch.nn.LSTM) or rnn.num_layers != 1 or mc.dropout or mc.embed_dropout or mc.weight_drop
            or rnn.proj_size or not rnn.bias or mc.copy_window or model._forward_hooks or model._forward_pre_hooks):
        return None

    def forward(x: torch.Tensor, state):
        batch, hidden = x.shape[0], rnn.hidden_size
        if state is None:
            h0 = c0 = x.new_zeros((batch, hidden), dtype=rnn.weight_hh_l0.dtype)
        else:
            h0, c0 = state[0][0], state[1][0]
        bias = rnn.bias_ih_l0 + rnn.bias_hh_l0
        # Columns of W_ih (4 hidden, vocab), in time-major order: gathered and scattered back in the
        # parameter's own layout, with no transposed copy of the (large) matrix either way.
        cols = rnn.weight_ih_l0.index_select(1, x.t().reshape(-1))  # (4 hidden, time * batch)
        # (time, batch, 4 hidden): the input part of the gates, row-major (the sum would keep cols.t()'s column-major
        # layout, and every step of the recurrence would then read and write rows 1,120 floats apart)
        gin = (cols.t() + bias).contiguous().reshape(x.shape[1], batch, -1)
        ys, h, c = _Recurrence.apply(gin, h0, c0, rnn.weight_hh_l0)  # ys (time, batch, hidden)
        logits = model.decoder(ys.transpose(0, 1))  # (batch, time, vocab)
        return logits, (h[None], c[None])

    return forward


class _Recurrence(torch.autograd.Function):
    """The LSTM recurrence over precomputed input gates, with its backward written out.

    Forward, per time step: ``gates = gin[t] + h @ W_hh^T``; i, f, o sigmoid, g tanh;
    ``c = f*c + i*g``, ``h = o*tanh(c)``.  The backward computes every factor that does not
    depend on the incoming gradient for all steps at once, so that the reverse walk is six
    small operations a step; then ``dW_hh`` is one (4 hidden, time*batch) x (time*batch,
    hidden) product instead of one small product per step.
    """

    @staticmethod
    def forward(ctx, gin, h0, c0, w_hh):
        steps, hidden = gin.shape[0], h0.shape[1]
        hs = gin.new_empty((steps + 1, *h0.shape))  # hs[t] is the state before step t
        cs = gin.new_empty((steps + 1, *h0.shape))
        tcs = gin.new_empty((steps, *h0.shape))  # tanh(c) after step t
        acts = torch.empty_like(gin)  # the gates after their nonlinearities: i, f, g, o
        hs[0], cs[0] = h0, c0
        w_t = w_hh.t()
        i_, f_, g_, o_ = (slice(k * hidden, (k + 1) * hidden) for k in range(4))
        for t in range(steps):
            gates = torch.addmm(gin[t], hs[t], w_t)
            a = acts[t]
            torch.sigmoid(gates, out=a)
            torch.tanh(gates[:, g_], out=a[:, g_])
            c = cs[t + 1]
            torch.mul(a[:, f_], cs[t], out=c)
            c.addcmul_(a[:, i_], a[:, g_])
            torch.tanh(c, out=tcs[t])
            torch.mul(a[:, o_], tcs[t], out=hs[t + 1])
        ctx.save_for_backward(hs, cs, tcs, acts, w_hh)
        return hs[1:], hs[steps].clone(), cs[steps].clone()

    @staticmethod
    def backward(ctx, d_ys, d_h, d_c):
        hs, cs, tcs, acts, w_hh = ctx.saved_tensors
        steps, batch, hidden = tcs.shape
        i, f, g, o = acts.view(steps, batch, 4, hidden).unbind(2)  # each (steps, batch, hidden)
        # d loss / d c through h, per unit of dh; and through each gate, per unit of dc (or dh for o)
        o_dtc = o * (1 - tcs * tcs)
        per_dc = torch.stack([g * i * (1 - i), cs[:-1] * f * (1 - f), i * (1 - g * g)], 2)  # (steps, batch, 3, hidden): i, f, g
        per_dh = tcs * o * (1 - o)  # o
        d_gates = torch.empty_like(acts)
        dh = torch.zeros_like(hs[0]) if d_h is None else d_h.clone()
        dc = torch.zeros_like(hs[0]) if d_c is None else d_c.clone()
        for t in range(steps - 1, -1, -1):
            if d_ys is not None:
                dh += d_ys[t]
            dc.addcmul_(dh, o_dtc[t])
            d = d_gates[t]
            torch.mul(per_dc[t], dc[:, None, :], out=d[:, : 3 * hidden].view(batch, 3, hidden))
            torch.mul(dh, per_dh[t], out=d[:, 3 * hidden :])
            dc.mul_(f[t])
            dh = d @ w_hh
        d_w = d_gates.view(-1, 4 * hidden).t() @ hs[:-1].reshape(-1, hidden)
        return d_gates, dh, dc, d_w


def prepare_optimizer(optimizer: torch.optim.Optimizer, cfg, device: torch.device) -> None:
    """Make a (possibly restored) optimizer fit this run: capturable for a CUDA graph, and the step counters of a
    capturable or fused one on its parameters' device (PyTorch places a restored counter by the *saved* run's kernels:
    a checkpoint from a foreach run keeps it on the CPU)."""
    for g in optimizer.param_groups:
        if "capturable" in g:  # Adam, AdamW; a checkpoint may come from a run with the other setting
            g["capturable"] = bool(cfg.cuda_graph)
        if not (g.get("capturable") or g.get("fused")):
            continue
        for p in g["params"]:
            step = optimizer.state.get(p, {}).get("step")
            if isinstance(step, torch.Tensor) and (step.device != p.device or step.dtype != torch.float32):
                optimizer.state[p]["step"] = step.to(device=p.device, dtype=torch.float32)
