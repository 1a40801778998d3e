"""The language model: a pure function ``forward(tokens, state) -> (logits, state)``.

The seed feeds one-hot vectors to the LSTM: ``onehot(x) @ W`` picks row ``x`` of ``W``,
which is exactly what an embedding lookup does without building the one-hot vectors.
``embedding_size=0`` keeps the seed's model literally (a fixed identity embedding, so the
LSTM's input weights are the seed's one-hot weights); any other width learns a smaller
table in front of the LSTM.

``copy_window=N`` adds a copy attention (a pointer, as in Merity et al.'s pointer sentinel
mixture): the model keeps the last N characters it read with a key for each, and may put
probability on the character that followed a context like the present one.  Lyrics repeat
their choruses within a song, which an LSTM's state alone cannot hold.  It is part of the
model (trained, its memory carried in the state like the hidden state); nothing adapts to
the text being read.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig

State = torch.Tensor | tuple[torch.Tensor, ...]
EMPTY = -1  # the copy memory's id for a slot that holds no character yet
MIX_EPS = 1e-12  # added to the mixture's probabilities before the log: no -inf for a character neither part gives any

_RNN = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


def make_rnn(cfg: ModelConfig, input_size: int) -> nn.Module:
    """The recurrent layers, batch first; dropout only between layers (PyTorch's rule)."""
    between = cfg.dropout if cfg.num_layers > 1 else 0.0
    if cfg.cell == "scratch":
        from .cells import ScratchLSTM  # the gate-by-gate LSTM, when present

        return ScratchLSTM(input_size, cfg.hidden_size, cfg.num_layers, dropout=between)
    return _RNN[cfg.cell](input_size, cfg.hidden_size, cfg.num_layers, dropout=between, batch_first=True)


class CharLM(nn.Module):
    """Embedding -> recurrent layers -> dropout -> linear layer over the vocabulary."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.vocab_size < 1:
            raise ValueError("ModelConfig.vocab_size must be set from the vocabulary")
        self.cfg = cfg
        one_hot = cfg.embedding_size == 0
        width = cfg.vocab_size if one_hot else cfg.embedding_size
        self.embedding = nn.Embedding(cfg.vocab_size, width)
        if one_hot:
            with torch.no_grad():
                self.embedding.weight.copy_(torch.eye(cfg.vocab_size))
            self.embedding.weight.requires_grad_(False)
        self.drop = nn.Dropout(cfg.dropout)
        self.rnn = make_rnn(cfg, width)
        self.decoder = nn.Linear(cfg.hidden_size, cfg.vocab_size)
        if cfg.tie_weights:
            # One table serves as input and output: keep it small (as word_language_model does) so the
            # first logits are near uniform instead of N(0, 1) embeddings times hidden states.
            nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
            self.decoder.weight = self.embedding.weight
        self.copy = CopyAttention(cfg.hidden_size, cfg.copy_dim, cfg.copy_window) if cfg.copy_window else None

    @property
    def is_lstm(self) -> bool:
        return self.cfg.cell in ("lstm", "scratch")

    def state_names(self) -> tuple[str, ...]:
        """Names of the state's parts, in order: ``h`` (and ``c`` for an LSTM), then ``copy_k``, ``copy_x`` with a copy memory."""
        return ("h", "c")[: 2 if self.is_lstm else 1] + (("copy_k", "copy_x") if self.copy is not None else ())

    def init_state(self, batch_size: int, device=None) -> State:
        """Zeros: (num_layers, batch, hidden), a pair (h, c) for an LSTM; then an empty copy memory, if any.

        Every part has the batch in dimension 1: the copy memory is keys (window, batch,
        copy_dim) and character ids (window, batch), ``EMPTY`` where nothing was read yet.
        """
        device = device or self.decoder.weight.device
        dtype = self.decoder.weight.dtype  # a model turned to float64 (or bf16) keeps its state in that type too
        h = torch.zeros(self.cfg.num_layers, batch_size, self.cfg.hidden_size, device=device, dtype=dtype)
        parts = (h, torch.zeros_like(h)) if self.is_lstm else (h,)
        if self.copy is not None:
            w = self.cfg.copy_window
            parts += (torch.zeros(w, batch_size, self.cfg.copy_dim, device=device, dtype=dtype),
                      torch.full((w, batch_size), EMPTY, dtype=torch.long, device=device))
        return parts if len(parts) > 1 else parts[0]

    def split_state(self, state: State) -> tuple[State, tuple | None]:
        """(the recurrent layers' state, the copy memory or None)."""
        if self.copy is None:
            return state, None
        rnn = state[:2] if self.is_lstm else state[0]
        return rnn, tuple(state[-2:])

    def forward(self, tokens: torch.Tensor, state: State | None = None, targets: torch.Tensor | None = None,
                label_smoothing: float = 0.0) -> tuple[torch.Tensor, State]:
        """tokens (batch, time) of ids -> logits (batch, time, vocab), new state.

        With a copy memory the "logits" are log-probabilities of the mixture (their softmax
        is the mixture itself), so that losses, sampling and scoring need not know.  Given
        ``targets`` (batch, time), the first output is the mean cross-entropy instead: for a
        copy model computed from the targets' probabilities alone, without building the
        mixture over the whole vocabulary (training with a vocabulary of thousands).
        """
        if tokens.dim() != 2 or tokens.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"tokens must be int64 (or int32) ids shaped (batch, time), got a {tokens.dtype} tensor shaped {tuple(tokens.shape)}"
                             f"{' (one sequence: tokens[None])' if tokens.dim() == 1 else ''}")
        if state is None:
            state = self.init_state(tokens.shape[0], tokens.device)
        rnn_state, memory = self.split_state(state)
        x = self._dropout(self._embed(tokens))  # (batch, time, width)
        y, rnn_state = self._recur(x, rnn_state)  # (batch, time, hidden)
        y = self._dropout(y)
        logits = self.decoder(y)
        if memory is None:
            if targets is None:
                return logits, rnn_state
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), label_smoothing=label_smoothing), rnn_state
        if targets is None:
            out, memory = self.copy(logits, y, tokens, memory)
        else:
            out, memory = self.copy.loss(logits, y, tokens, memory, targets, label_smoothing)
        return out, (*parts(rnn_state), *memory)

    # --- regularisation, active only in training mode -----------------------------------

    def _embed(self, tokens: torch.Tensor) -> torch.Tensor:
        p = self.cfg.embed_dropout
        if not (self.training and p > 0):
            return self.embedding(tokens)
        # Drop whole characters: a row of the table is zeroed for the whole batch (AWD-LSTM).
        w = self.embedding.weight
        keep = torch.empty(w.shape[0], 1, device=w.device, dtype=w.dtype).bernoulli_(1 - p) / (1 - p)
        return F.embedding(tokens, w * keep)

    def _dropout(self, x: torch.Tensor) -> torch.Tensor:
        p = self.cfg.dropout
        if not (self.training and p > 0):
            return x
        if not self.cfg.locked_dropout:
            return self.drop(x)
        # One mask per sequence, the same at every time step (variational dropout).
        mask = torch.empty(x.shape[0], 1, x.shape[2], device=x.device, dtype=x.dtype).bernoulli_(1 - p) / (1 - p)
        return x * mask

    def _recur(self, x: torch.Tensor, state: State):
        p = self.cfg.weight_drop
        if not (self.training and p > 0):
            return self.rnn(x, state)
        # DropConnect on the hidden-to-hidden weights, one mask per batch (AWD-LSTM's weight drop);
        # the parameters themselves are untouched, so checkpoints keep nn.LSTM's names.
        params = dict(self.rnn.named_parameters())
        for name in params:
            if name.startswith("weight_hh"):
                params[name] = F.dropout(params[name], p, training=True)
        return torch.func.functional_call(self.rnn, params, (x, state))


class CopyAttention(nn.Module):
    """Mix the model's distribution with copies of characters that followed similar contexts.

    Each character read leaves a key ``k_j = W_k h_j`` (``h_j``: the top layer's output
    after reading character ``j``); the character that came next, ``x_{j+1}``, is what the
    key points at.  At step ``t`` the query ``q_t = W_q h_t`` scores the last ``window``
    keys and a learned sentinel; one softmax over all of them gives the sentinel's share
    ``g`` and each key's share ``a_j``::

        p(c) = g * softmax(decoder(h_t))[c] + sum over j with x_{j+1} = c of a_j

    The memory (keys and ids of the last ``window`` characters) is carried from batch to
    batch like the hidden state, and detached with it.
    """

    def __init__(self, hidden: int, dim: int, window: int):
        super().__init__()
        self.window, self.dim = window, dim
        self.query = nn.Linear(hidden, dim, bias=False)
        self.key = nn.Linear(hidden, dim, bias=False)
        self.sentinel = nn.Parameter(torch.zeros(dim))
        # The sentinel starts with most of the mass (g about 0.9): the model begins as a plain LSTM.
        self.sentinel_bias = nn.Parameter(torch.tensor(math.log(window) + 2.0))

    def shares(self, y: torch.Tensor, tokens: torch.Tensor, memory: tuple):
        """The sentinel's and each key's share (B, T, 1 + K), the id each key points at (B, T, K), the new memory."""
        mem_k, mem_x = memory  # (W, B, dim), (W, B)
        B, T = tokens.shape
        W = self.window
        k_new = self.key(y)  # (B, T, dim)
        keys = torch.cat([mem_k.transpose(0, 1).to(k_new.dtype), k_new], 1)  # (B, W + T, dim): key j after id j
        ids = torch.cat([mem_x.t(), tokens], 1)  # (B, W + T)
        q = self.query(y)  # (B, T, dim)
        scores = (q @ keys[:, :-1].transpose(1, 2)).float() / math.sqrt(self.dim)  # (B, T, W + T - 1)
        j = torch.arange(W + T - 1, device=y.device)
        t = torch.arange(T, device=y.device)[:, None]
        seen = (j >= t) & (j < t + W)  # query t sees keys t .. t+W-1: the W characters before it, each with its successor
        seen = seen[None] & (ids[:, None, :-1] != EMPTY)
        scores = scores.masked_fill(~seen, float("-inf"))
        sentinel = (q @ self.sentinel.to(q.dtype)).float() + self.sentinel_bias  # (B, T)
        share = torch.cat([sentinel[..., None], scores], -1).softmax(-1)
        nxt = ids[:, 1:].clamp_min(0)[:, None, :].expand(B, T, -1)  # the id each key points at (masked keys have share 0)
        return share, nxt, (keys[:, -W:].transpose(0, 1), ids[:, -W:].t())

    def forward(self, logits: torch.Tensor, y: torch.Tensor, tokens: torch.Tensor, memory: tuple):
        """logits (B, T, V), outputs y (B, T, H), the ids read (B, T), memory -> (log-probabilities (B, T, V), memory)."""
        share, nxt, memory = self.shares(y, tokens, memory)
        probs = logits.float().softmax(-1) * share[..., :1]
        probs = probs.scatter_add(-1, nxt, share[..., 1:])
        return (probs + MIX_EPS).log(), memory

    def loss(self, logits, y, tokens, memory, targets: torch.Tensor, label_smoothing: float = 0.0):
        """The mean of -log p(target) under the mixture, from the targets' entries only; and the new memory.

        ``label_smoothing`` spreads its share over the decoder's own distribution (the
        mixture over the whole vocabulary is what this avoids building).
        """
        share, nxt, memory = self.shares(y, tokens, memory)
        lf = logits.float()
        lse = lf.logsumexp(-1)  # (B, T)
        p_target = (lf.gather(-1, targets[..., None])[..., 0] - lse).exp() * share[..., 0]
        p_target = p_target + (share[..., 1:] * (nxt == targets[..., None])).sum(-1)
        nll = -(p_target + MIX_EPS).log()
        if label_smoothing:
            nll = (1 - label_smoothing) * nll + label_smoothing * (lse - lf.mean(-1))
        return nll.mean(), memory


class CopyRing:
    """The copy attention one character at a time, for generation: the last ``window`` (key, next id) pairs in a ring.

    Gives what :meth:`CopyAttention.forward` gives for the same characters (to float
    rounding).  The sentinel sits in the key table as slot 0 (scaled so that the common
    division by sqrt(dim) gives back ``q . sentinel``), with its bias, and ``-inf`` for slots
    whose key was never made, in one bias row: a step is one product with the table, one
    softmax, and one scatter of the shares onto the vocabulary.  The slot of the newest key
    is a tensor on the device, so a step reads nothing back and can be captured in a CUDA graph.
    """

    def __init__(self, copy: CopyAttention, memory: tuple):
        mem_k, mem_x = memory  # (W, n, dim), (W, n): key j was left by id j
        n, W = mem_x.shape[1], copy.window
        self.window, self.scale = W, math.sqrt(copy.dim)
        self.keys = torch.empty(n, W + 1, copy.dim, device=mem_k.device)  # slot 0: the sentinel; slot 1 + j: key j
        self.keys[:, 0] = copy.sentinel.float() * self.scale
        self.keys[:, 1:] = mem_k.transpose(0, 1)
        ids = mem_x.t()
        self.nxt = torch.zeros(n, W, dtype=torch.long, device=mem_x.device)  # the id that followed key j
        self.nxt[:, :-1] = ids[:, 1:].clamp_min(0)
        self.bias = torch.zeros(n, W + 1, device=mem_k.device)
        self.bias[:, 0] = copy.sentinel_bias.float()
        self.bias[:, 1:] = torch.where(ids == EMPTY, float("-inf"), 0.0)  # a slot counts once its key was made
        self.slot = torch.full((1,), W - 1, dtype=torch.long, device=mem_k.device)  # the newest key, awaiting its successor
        self.wq = copy.query.weight.t().float()
        self.wk = copy.key.weight.t().float()

    def __call__(self, ids: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """``ids`` (n,) just read, the top output ``y`` (n, H) and ``logits`` (n, V) after it -> log-probabilities (n, V)."""
        self.nxt.index_copy_(1, self.slot, ids[:, None])
        y = y.float()
        scores = torch.bmm(self.keys, torch.mm(y, self.wq).unsqueeze(2)).squeeze(2)  # (n, 1 + W)
        share = scores.div_(self.scale).add_(self.bias).softmax(-1)
        probs = logits.float().softmax(-1).mul_(share[:, :1])
        probs.scatter_add_(1, self.nxt, share[:, 1:])  # keys never made have share 0
        self.slot.add_(1).remainder_(self.window)  # the oldest pair makes room for the newest key
        made = self.slot + 1
        self.keys.index_copy_(1, made, torch.mm(y, self.wk)[:, None])
        self.bias.index_fill_(1, made, 0.0)  # the slot counts from now on
        return probs.add_(MIX_EPS).log_()


def parts(state: State) -> tuple:
    """The state's tensors as a tuple: ``(h,)`` for a GRU or RNN without a copy memory, else the state itself."""
    return state if isinstance(state, tuple) else (state,)


def detach(state: State | None) -> State | None:
    """Cut the graph behind a carried state (the seed's detach between batches)."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
