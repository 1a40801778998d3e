"""The LSTM written out gate by gate, as Dive into Deep Learning's from-scratch chapter does.

:class:`ScratchLSTM` is a drop-in replacement for ``nn.LSTM(batch_first=True)``: the same
parameter names and layout (``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``,
``bias_hh_l{k}``, the four gates stacked in PyTorch's order i, f, g, o), the same
initialisation, the same state ``(h, c)`` of shape (num_layers, batch, hidden), so weights
move between the two with ``load_state_dict`` and the outputs agree to float rounding.
What it adds is ``return_gates=True``: every gate's activation at every step, which is
what ``charlm inspect`` draws.

For each layer, with x_t the layer's input at step t and (h, c) its state (``@`` is a
matrix product, ``*`` elementwise)::

    i_t = sigmoid(x_t @ W_ii.T + b_ii + h_{t-1} @ W_hi.T + b_hi)   input gate
    f_t = sigmoid(x_t @ W_if.T + b_if + h_{t-1} @ W_hf.T + b_hf)   forget gate
    g_t =    tanh(x_t @ W_ig.T + b_ig + h_{t-1} @ W_hg.T + b_hg)   candidate cell
    o_t = sigmoid(x_t @ W_io.T + b_io + h_{t-1} @ W_ho.T + b_ho)   output gate
    c_t = f_t * c_{t-1} + i_t * g_t                                 cell state
    h_t = o_t * tanh(c_t)                                           hidden state

``W_ii, W_if, W_ig, W_io`` are the four row blocks of ``weight_ih_l{k}`` (4 * hidden rows),
and likewise for the other three tensors.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

GATE_NAMES = ("input", "forget", "output", "candidate", "cell", "hidden")


class ScratchLSTM(nn.Module):
    """A multi-layer LSTM, batch first, with ``nn.LSTM``'s parameters and a loop over time."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0):
        super().__init__()
        if input_size < 1 or hidden_size < 1 or num_layers < 1:
            raise ValueError(f"input_size, hidden_size and num_layers must be >= 1, got {input_size}, {hidden_size}, {num_layers}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.input_size, self.hidden_size, self.num_layers, self.dropout = input_size, hidden_size, num_layers, dropout
        # Registered in nn.LSTM's order, so reset_parameters draws the same numbers for the same seed.
        for k in range(num_layers):
            width = input_size if k == 0 else hidden_size
            self.register_parameter(f"weight_ih_l{k}", nn.Parameter(torch.empty(4 * hidden_size, width)))
            self.register_parameter(f"weight_hh_l{k}", nn.Parameter(torch.empty(4 * hidden_size, hidden_size)))
            self.register_parameter(f"bias_ih_l{k}", nn.Parameter(torch.empty(4 * hidden_size)))
            self.register_parameter(f"bias_hh_l{k}", nn.Parameter(torch.empty(4 * hidden_size)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform in +-1/sqrt(hidden), as ``nn.LSTM`` does."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, dropout={self.dropout}, batch_first=True"

    def layer_weights(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(weight_ih, weight_hh, bias_ih, bias_hh) of layer ``k``."""
        return (getattr(self, f"weight_ih_l{k}"), getattr(self, f"weight_hh_l{k}"),
                getattr(self, f"bias_ih_l{k}"), getattr(self, f"bias_hh_l{k}"))

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None, return_gates: bool = False):
        """x (batch, time, input_size) -> y (batch, time, hidden), (h, c) each (num_layers, batch, hidden).

        With ``return_gates=True`` a third value: one dict per layer, mapping each of
        :data:`GATE_NAMES` to its activations (batch, time, hidden).
        """
        if x.dim() != 3 or x.shape[2] != self.input_size:
            raise ValueError(f"ScratchLSTM expects input (batch, time, {self.input_size}), got {tuple(x.shape)}")
        batch, steps, _ = x.shape
        if state is None:
            zeros = x.new_zeros(self.num_layers, batch, self.hidden_size)
            state = (zeros, zeros)
        h0, c0 = state
        H = self.hidden_size
        want = (self.num_layers, batch, H)
        for name, t in (("h", h0), ("c", c0)):
            if tuple(t.shape) != want:
                raise ValueError(f"ScratchLSTM expects the state's {name} as (num_layers, batch, hidden) = {want}, got {tuple(t.shape)}")
        layer_in = x  # (batch, time, features)
        hs, cs, gates = [], [], []
        for k in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = self.layer_weights(k)
            if k > 0 and self.dropout > 0 and self.training:
                layer_in = F.dropout(layer_in, self.dropout, training=True)  # between layers only, as nn.LSTM
            # The input half of every gate's pre-activation, for all steps in one product:
            # x_t @ W_i*.T + b_i* + b_h* for t = 1..T.
            x_part = F.linear(layer_in, w_ih, b_ih + b_hh)  # (batch, time, 4H)
            h, c = h0[k], c0[k]  # (batch, H)
            w_hh_t = w_hh.t()  # (H, 4H)
            out_h, seen = [], {name: [] for name in GATE_NAMES} if return_gates else None
            for t in range(steps):
                z = torch.addmm(x_part[:, t], h, w_hh_t)  # + h_{t-1} @ W_h*.T: (batch, 4H), blocks i, f, g, o
                i = torch.sigmoid(z[:, 0 * H : 1 * H])  # input gate      i_t = sigmoid(...)
                f = torch.sigmoid(z[:, 1 * H : 2 * H])  # forget gate     f_t = sigmoid(...)
                g = torch.tanh(z[:, 2 * H : 3 * H])  # candidate cell  g_t = tanh(...)
                o = torch.sigmoid(z[:, 3 * H : 4 * H])  # output gate     o_t = sigmoid(...)
                c = f * c + i * g  # cell state      c_t = f_t * c_{t-1} + i_t * g_t
                h = o * torch.tanh(c)  # hidden state    h_t = o_t * tanh(c_t)
                out_h.append(h)
                if seen is not None:
                    for name, v in zip(GATE_NAMES, (i, f, o, g, c, h)):
                        seen[name].append(v)
            layer_in = torch.stack(out_h, dim=1) if steps else x.new_zeros(batch, 0, H)  # (batch, time, H)
            hs.append(h)
            cs.append(c)
            if seen is not None:
                gates.append({name: torch.stack(v, dim=1) if v else x.new_zeros(batch, 0, H) for name, v in seen.items()})
        new_state = (torch.stack(hs), torch.stack(cs))  # each (num_layers, batch, H)
        if return_gates:
            return layer_in, new_state, gates
        return layer_in, new_state
