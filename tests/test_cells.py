"""ScratchLSTM is nn.LSTM written out: same parameters, same outputs, same gradients."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from charlm.cells import GATE_NAMES, ScratchLSTM
from charlm.checkpoint import load_model
from charlm.config import ModelConfig
from charlm.model import CharLM, make_rnn

from .conftest import train_tiny

TOL = dict(rtol=1e-5, atol=1e-5)


def pair(input_size: int, hidden: int, layers: int, seed: int = 0) -> tuple[nn.LSTM, ScratchLSTM]:
    """An nn.LSTM with random weights and a ScratchLSTM holding a copy of them."""
    torch.manual_seed(seed)
    ref = nn.LSTM(input_size, hidden, layers, batch_first=True)
    with torch.no_grad():  # not the default init, so biases and weights of every block matter
        for p in ref.parameters():
            p.normal_(0, 0.5)
    ours = ScratchLSTM(input_size, hidden, layers)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def grads(m: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in m.named_parameters()}


@pytest.mark.parametrize(
    "batch, steps, input_size, hidden, layers",
    [(1, 1, 1, 1, 1), (2, 5, 3, 4, 1), (4, 13, 7, 6, 2), (3, 9, 10, 16, 3), (8, 20, 5, 12, 2)],
)
@pytest.mark.parametrize("carried", [False, True])
def test_outputs_states_and_gradients_match_nn_lstm(batch, steps, input_size, hidden, layers, carried):
    ref, ours = pair(input_size, hidden, layers, seed=batch * 100 + steps)
    x = torch.randn(batch, steps, input_size)
    state = (torch.randn(layers, batch, hidden), torch.randn(layers, batch, hidden)) if carried else None
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    s1 = tuple(s.clone().requires_grad_() for s in state) if carried else None
    s2 = tuple(s.clone().requires_grad_() for s in state) if carried else None

    y1, (h1, c1) = ref(x1, s1)
    y2, (h2, c2) = ours(x2, s2)
    assert y2.shape == (batch, steps, hidden) and h2.shape == c2.shape == (layers, batch, hidden)
    torch.testing.assert_close(y2, y1, **TOL)
    torch.testing.assert_close(h2, h1, **TOL)
    torch.testing.assert_close(c2, c1, **TOL)

    # A loss that reaches every output and both final states.
    w = torch.randn_like(y1)
    ((y1 * w).sum() + h1.pow(2).sum() + c1.sin().sum()).backward()
    ((y2 * w).sum() + h2.pow(2).sum() + c2.sin().sum()).backward()
    g1, g2 = grads(ref), grads(ours)
    assert g1.keys() == g2.keys()
    for name in g1:
        torch.testing.assert_close(g2[name], g1[name], **TOL, msg=lambda m, n=name: f"{n}: {m}")
    torch.testing.assert_close(x2.grad, x1.grad, **TOL)
    if carried:
        for a, b in zip(s1, s2):
            torch.testing.assert_close(b.grad, a.grad, **TOL)


def test_same_parameter_names_shapes_and_initialisation():
    torch.manual_seed(3)
    ref = nn.LSTM(5, 8, 3, batch_first=True)
    torch.manual_seed(3)
    ours = ScratchLSTM(5, 8, 3)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [(n, p.shape) for n, p in ref.named_parameters()]
    for (n, a), b in zip(ref.named_parameters(), ours.parameters()):
        assert torch.equal(a, b), n


def test_state_is_carried_across_calls():
    ref, ours = pair(4, 6, 2)
    x = torch.randn(3, 12, 4)
    whole, _ = ours(x)
    first, state = ours(x[:, :5])
    second, _ = ours(x[:, 5:], state)
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole, **TOL)
    torch.testing.assert_close(whole, ref(x)[0], **TOL)


def test_gates_are_the_lstm_equations():
    _, ours = pair(3, 5, 2)
    x = torch.randn(2, 7, 3)
    y, (h, c), gates = ours(x, return_gates=True)
    assert len(gates) == 2
    for layer in gates:
        assert set(layer) == set(GATE_NAMES)
        assert all(v.shape == (2, 7, 5) for v in layer.values())
        for name in ("input", "forget", "output"):
            assert layer[name].min() >= 0 and layer[name].max() <= 1
        # c_t = f_t * c_{t-1} + i_t * g_t  and  h_t = o_t * tanh(c_t), step by step
        prev = torch.cat([torch.zeros(2, 1, 5), layer["cell"][:, :-1]], dim=1)
        torch.testing.assert_close(layer["cell"], layer["forget"] * prev + layer["input"] * layer["candidate"], **TOL)
        torch.testing.assert_close(layer["hidden"], layer["output"] * torch.tanh(layer["cell"]), **TOL)
    torch.testing.assert_close(gates[-1]["hidden"], y)
    torch.testing.assert_close(gates[0]["cell"][:, -1], c[0])
    torch.testing.assert_close(gates[1]["hidden"][:, -1], h[1])


def test_dropout_only_between_layers_and_only_in_training():
    torch.manual_seed(0)
    ours = ScratchLSTM(4, 6, 2, dropout=0.5)
    ref = nn.LSTM(4, 6, 2, dropout=0.5, batch_first=True)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, 5, 4)
    ours.eval(), ref.eval()
    torch.testing.assert_close(ours(x)[0], ref(x)[0], **TOL)
    ours.train()
    a, b = ours(x)[0], ours(x)[0]
    assert not torch.allclose(a, b)  # dropout is on in training...
    one = ScratchLSTM(4, 6, 1, dropout=0.5).train()
    torch.testing.assert_close(one(x)[0], one(x)[0])  # ...but a single layer has no "between"


def test_trained_weights_load_both_ways():
    """Train each kind a few steps; the other kind, loaded with its state dict, computes the same."""
    x, target = torch.randn(4, 10, 3), torch.randn(4, 10, 6)
    for make_a, make_b in [
        (lambda: ScratchLSTM(3, 6, 2), lambda: nn.LSTM(3, 6, 2, batch_first=True)),
        (lambda: nn.LSTM(3, 6, 2, batch_first=True), lambda: ScratchLSTM(3, 6, 2)),
    ]:
        torch.manual_seed(1)
        a = make_a()
        before = {k: v.clone() for k, v in a.state_dict().items()}
        opt = torch.optim.Adam(a.parameters(), lr=0.05)
        for _ in range(5):
            opt.zero_grad()
            (a(x)[0] - target).pow(2).mean().backward()
            opt.step()
        assert any(not torch.equal(before[k], v) for k, v in a.state_dict().items())
        b = make_b()
        b.load_state_dict(a.state_dict())  # strict: same names, same shapes
        torch.testing.assert_close(b(x)[0], a(x)[0], **TOL)


def test_make_rnn_builds_scratch_for_cell_scratch():
    rnn = make_rnn(ModelConfig(vocab_size=5, cell="scratch", hidden_size=8, num_layers=2, dropout=0.3), 4)
    assert isinstance(rnn, ScratchLSTM) and rnn.dropout == 0.3 and rnn.num_layers == 2


def test_charlm_with_scratch_trains_and_reloads_as_lstm(tmp_path):
    trainer = train_tiny(tmp_path, model_kw={"cell": "scratch"}, epochs=3)
    losses = [m["train_loss"] for m in trainer.metrics]
    assert isinstance(trainer.model.rnn, ScratchLSTM)
    assert losses[-1] < losses[0] - 0.5, losses  # it learns
    model, vocab, ckpt = load_model(tmp_path / "run" / "last")
    assert isinstance(model.rnn, ScratchLSTM) and ckpt.model_config.cell == "scratch"
    # The same weights in an nn.LSTM model give the same logits.
    lstm = CharLM(dataclasses.replace(ckpt.model_config, cell="lstm")).eval()
    lstm.load_state_dict(model.state_dict())
    tokens = torch.tensor([vocab.encode("分开的时候我说不分开\n你说")])
    torch.testing.assert_close(model(tokens)[0], lstm(tokens)[0], **TOL)


def test_docs_point_at_the_lines_that_compute_each_equation():
    """docs/lstm.md links each equation to a line of cells.py; the line must still compute it."""
    root = Path(__file__).resolve().parents[1]
    doc = (root / "docs" / "lstm.md").read_text(encoding="utf-8")
    code = (root / "src" / "charlm" / "cells.py").read_text(encoding="utf-8").splitlines()
    rows = re.findall(r"^\| `(\w+)` \|.*\[cells\.py:(\d+)\]\(\.\./src/charlm/cells\.py#L(\d+)\) \|$", doc, re.M)
    assert {r[0] for r in rows} >= {"i_t", "f_t", "g_t", "o_t", "c_t", "h_t"}
    for symbol, shown, target in rows:
        assert shown == target
        line = code[int(target) - 1]
        # The equation's symbol in the comment (i_t = ...), or the variable assigned on that line.
        assert f"{symbol} =" in line.split("#")[-1] or line.strip().startswith(f"{symbol} ="), (symbol, target, line)


def test_a_state_of_the_wrong_shape_is_named():
    lstm = ScratchLSTM(4, 8, num_layers=2)
    with pytest.raises(ValueError, match=r"state's h as \(num_layers, batch, hidden\) = \(2, 3, 8\), got \(2, 2, 8\)"):
        lstm(torch.randn(3, 5, 4), (torch.zeros(2, 2, 8), torch.zeros(2, 2, 8)))
