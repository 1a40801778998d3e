"""The language model: a pure function ``forward(tokens, state) -> (logits, state)``.

The seed feeds one-hot vectors to the LSTM: ``onehot(x) @ W`` picks row ``x`` of ``W``,
which is exactly what an embedding lookup does without building the one-hot vectors.
``embedding_size=0`` keeps the seed's model literally (a fixed identity embedding, so the
LSTM's input weights are the seed's one-hot weights); any other width learns a smaller
table in front of the LSTM.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]

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

    @property
    def is_lstm(self) -> bool:
        return self.cfg.cell in ("lstm", "scratch")

    def init_state(self, batch_size: int, device=None) -> State:
        """Zeros: (num_layers, batch, hidden), a pair (h, c) for an LSTM."""
        device = device or self.decoder.weight.device
        h = torch.zeros(self.cfg.num_layers, batch_size, self.cfg.hidden_size, device=device)
        return (h, torch.zeros_like(h)) if self.is_lstm else h

    def forward(self, tokens: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """tokens (batch, time) of ids -> logits (batch, time, vocab), new state."""
        if state is None:
            state = self.init_state(tokens.shape[0], tokens.device)
        x = self._dropout(self._embed(tokens))  # (batch, time, width)
        y, state = self._recur(x, state)  # (batch, time, hidden)
        return self.decoder(self._dropout(y)), state

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


def detach(state: State | None) -> State | None:
    """Cut the graph behind a carried state (the seed's detach between batches)."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
