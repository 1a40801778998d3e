"""The language model: a pure function ``forward(tokens, state) -> (logits, state)``.

The seed feeds one-hot vectors to the LSTM: ``onehot(x) @ W`` picks row ``x`` of ``W``,
which is exactly what an embedding lookup does without building the one-hot vectors.
``embedding_size=0`` keeps the seed's model literally (a fixed identity embedding, so the
LSTM's input weights are the seed's one-hot weights); any other width learns a smaller
table in front of the LSTM.
"""

from __future__ import annotations

import torch
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
        x = self.drop(self.embedding(tokens))  # (batch, time, width)
        y, state = self.rnn(x, state)  # (batch, time, hidden)
        return self.decoder(self.drop(y)), state


def detach(state: State | None) -> State | None:
    """Cut the graph behind a carried state (the seed's detach between batches)."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
