import pytest
import torch
import torch.nn.functional as F
from torch import nn

from charlm.config import ModelConfig
from charlm.model import CharLM, detach


def test_an_embedding_is_one_hot_input_with_the_table_folded_into_the_first_weights():
    """The mission's "an embedding is the same mathematics": W_ih E^T read from one-hot vectors is W_ih read from E's rows."""
    torch.manual_seed(0)
    V, E, H = 30, 8, 12
    emb = CharLM(ModelConfig(vocab_size=V, embedding_size=E, hidden_size=H, num_layers=2)).eval()
    one_hot = CharLM(ModelConfig(vocab_size=V, embedding_size=0, hidden_size=H, num_layers=2)).eval()
    weights = {k: v for k, v in emb.state_dict().items() if k != "embedding.weight"}
    weights["rnn.weight_ih_l0"] = emb.rnn.weight_ih_l0 @ emb.embedding.weight.T  # (4H, V)
    one_hot.load_state_dict(weights, strict=False)
    x = torch.randint(0, V, (3, 7))
    with torch.no_grad():
        assert torch.allclose(emb(x)[0], one_hot(x)[0], atol=1e-5)


class SeedRNNModel(nn.Module):
    """The seed's model: one-hot vectors (built per step) into nn.LSTM, then a dense layer."""

    def __init__(self, vocab_size, hidden):
        super().__init__()
        self.vocab_size = vocab_size
        self.rnn = nn.LSTM(input_size=vocab_size, hidden_size=hidden)
        self.dense = nn.Linear(hidden, vocab_size)

    def forward(self, inputs, state):  # inputs (batch, seq)
        X = [F.one_hot(inputs[:, i], self.vocab_size).float() for i in range(inputs.shape[1])]
        Y, state = self.rnn(torch.stack(X), state)
        return self.dense(Y.view(-1, Y.shape[-1])), state


def test_one_hot_model_equals_the_seed():
    torch.manual_seed(0)
    V, H = 40, 16
    seed = SeedRNNModel(V, H)
    ours = CharLM(ModelConfig(vocab_size=V, embedding_size=0, hidden_size=H))
    for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
        getattr(ours.rnn, name).data.copy_(getattr(seed.rnn, name).data)
    ours.decoder.load_state_dict(seed.dense.state_dict())
    x = torch.randint(0, V, (4, 9))
    out_seed, (h1, c1) = seed(x, None)
    logits, (h2, c2) = ours(x)
    # the seed's output rows are time-major: (seq * batch, vocab)
    assert torch.allclose(out_seed, logits.transpose(0, 1).reshape(-1, V), atol=1e-6)
    assert torch.allclose(h1, h2, atol=1e-6) and torch.allclose(c1, c2, atol=1e-6)
    assert not ours.embedding.weight.requires_grad


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("layers", [1, 3])
def test_cells_and_layers_carry_state(cell, layers):
    torch.manual_seed(0)
    m = CharLM(ModelConfig(vocab_size=20, cell=cell, num_layers=layers, embedding_size=8, hidden_size=12, dropout=0.2)).eval()
    x = torch.randint(0, 20, (2, 10))
    full, _ = m(x)
    a, s = m(x[:, :4])
    b, _ = m(x[:, 4:], s)
    assert full.shape == (2, 10, 20)
    assert torch.allclose(full, torch.cat([a, b], 1), atol=1e-5)  # carrying the state = reading on


def test_tied_weights_share_one_tensor():
    m = CharLM(ModelConfig(vocab_size=30, embedding_size=16, hidden_size=16, tie_weights=True))
    assert m.decoder.weight is m.embedding.weight
    with pytest.raises(ValueError, match="tie_weights needs embedding_size == hidden_size"):
        ModelConfig(vocab_size=30, embedding_size=8, hidden_size=16, tie_weights=True)


def test_detach_cuts_the_graph():
    m = CharLM(ModelConfig(vocab_size=10, embedding_size=4, hidden_size=4))
    _, s = m(torch.zeros(1, 3, dtype=torch.long))
    assert s[0].requires_grad
    d = detach(s)
    assert not d[0].requires_grad and not d[1].requires_grad
    assert torch.equal(d[0], s[0])


@pytest.mark.parametrize("kw", [{"embed_dropout": 0.3}, {"dropout": 0.3, "locked_dropout": True}, {"weight_drop": 0.4}])
def test_regularisers_act_in_training_only(kw):
    torch.manual_seed(0)
    m = CharLM(ModelConfig(vocab_size=20, embedding_size=8, hidden_size=8, **kw))
    x = torch.randint(0, 20, (3, 6))
    m.eval()
    a, _ = m(x)
    b, _ = m(x)
    assert torch.equal(a, b)
    m.train()
    c, _ = m(x)
    assert not torch.allclose(a, c)
    c.sum().backward()
    assert m.rnn.weight_hh_l0.grad is not None and m.rnn.weight_hh_l0.grad.abs().sum() > 0
    assert set(m.state_dict()) == set(CharLM(ModelConfig(vocab_size=20, embedding_size=8, hidden_size=8)).state_dict())


def test_locked_dropout_uses_one_mask_across_time():
    torch.manual_seed(0)
    m = CharLM(ModelConfig(vocab_size=5, embedding_size=8, hidden_size=8, dropout=0.5, locked_dropout=True)).train()
    y = m._dropout(torch.ones(2, 7, 8))
    assert torch.equal(y[:, :1].expand_as(y), y)  # every time step has the same mask
    assert (y == 0).any()


# --- the copy attention ---------------------------------------------------------------


def _copy_model(cell="lstm", layers=1, window=6, **kw):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=25, cell=cell, num_layers=layers, embedding_size=8, hidden_size=12,
                      copy_window=window, copy_dim=8, **kw)
    m = CharLM(cfg).eval()
    with torch.no_grad():
        m.copy.sentinel_bias.fill_(0.0)  # let the copies carry real weight
    return m


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 2])
def test_copy_attention_reads_on_and_gives_probabilities(cell, layers):
    m = _copy_model(cell, layers)
    x = torch.randint(0, 25, (3, 23))
    full, state = m(x)
    assert len(state) == len(m.state_names())
    torch.testing.assert_close(full.exp().sum(-1), torch.ones(3, 23), rtol=0, atol=1e-5)  # the mixture sums to one
    parts, s = [], None
    for i in range(0, 23, 4):  # the memory carried in the state: reading in chunks = reading on
        out, s = m(x[:, i : i + 4], s)
        parts.append(out)
    torch.testing.assert_close(full, torch.cat(parts, 1), rtol=1e-5, atol=1e-5)


def test_copy_attention_sees_only_the_past_window():
    m = _copy_model(window=6)
    x = torch.randint(0, 25, (2, 20))
    base, _ = m(x)
    later = x.clone()
    later[:, 12:] = (later[:, 12:] + 1) % 25  # change the future: nothing before it moves
    out, _ = m(later)
    torch.testing.assert_close(out[:, :12], base[:, :12])
    # With a uniform decoder, copied mass is what stands out: the last query points at exactly the
    # characters that followed the 6 before it (ids[5..10]), not at those that followed older ones.
    with torch.no_grad():
        m.decoder.weight.zero_()
        m.decoder.bias.zero_()
    ids = torch.arange(3, 14)[None]  # 11 different characters
    p = m(ids)[0][0, -1].exp().detach()
    copied = set(range(8, 14))
    rest = torch.tensor([p[c] for c in range(25) if c not in copied])
    torch.testing.assert_close(rest, rest[:1].expand_as(rest))  # all the same: the decoder's share alone
    assert all(p[c] > rest[0] for c in copied)


def test_copy_model_learns_to_repeat_a_chorus(tmp_path):
    """Songs whose random line comes back three times: the copy attention predicts the repeats, a plain LSTM cannot."""
    import random

    from charlm.config import TrainConfig
    from charlm.data import load_corpus
    from charlm.train import Trainer

    rng = random.Random(0)
    alphabet = [chr(0x4E00 + i) for i in range(40)]
    songs = []
    for _ in range(120):
        line = "".join(rng.choice(alphabet) for _ in range(10))
        songs.append((line + "\n") * 3)
    (tmp_path / "songs.txt").write_text("".join(songs), encoding="utf-8")
    results = {}
    for window in (0, 48):
        cfg = TrainConfig(data=str(tmp_path / "songs.txt"), batch_size=8, num_steps=32, epochs=6, lr=1e-2, optimizer="adam",
                          seed=0, device="cpu", out=str(tmp_path / f"w{window}"), prefixes=())
        corpus = load_corpus(cfg)
        mcfg = ModelConfig(vocab_size=len(corpus.vocab), embedding_size=32, hidden_size=64, copy_window=window)
        t = Trainer(mcfg, cfg, corpus, log=lambda *_: None)
        results[window] = min(m["val_loss"] for m in t.fit())
    # a third of the held-out characters start a new random line (log 40 = 3.7 nats); the rest are repeats
    assert results[48] < 0.6 * results[0], results


def test_generation_steps_leave_the_given_state_alone():
    from charlm.sampling import _LeanStep, one_step

    m = _copy_model(window=8)
    x = torch.randint(0, 25, (1, 20))
    with torch.no_grad():
        _, state = m(x[:, :3])  # the memory not yet full
        kept = [s.clone() for s in state]
        step = one_step(m, state, 1000)
        assert isinstance(step, _LeanStep)
        for t in range(3, 20):
            step(x[:, t])
    for a, b in zip(state, kept):
        assert torch.equal(a, b)


@pytest.mark.parametrize("window", [0, 6])
def test_training_loss_from_the_targets_equals_cross_entropy_of_the_output(window):
    """forward(..., targets=y) is the mean cross-entropy of what forward returns, gradients and carried memory included."""
    torch.manual_seed(0)
    m = CharLM(ModelConfig(vocab_size=25, embedding_size=8, hidden_size=12, copy_window=window, copy_dim=8))
    if window:
        with torch.no_grad():
            m.copy.sentinel_bias.fill_(0.0)
    params = [p for p in m.parameters() if p.requires_grad]
    x, y = torch.randint(0, 25, (3, 20)), torch.randint(0, 25, (3, 20))
    state = detach(m(x)[1])  # a carried state, the memory full
    out, s1 = m(x, state)
    ref = F.cross_entropy(out.reshape(-1, 25), y.reshape(-1))
    ref_grads = torch.autograd.grad(ref, params)
    loss, s2 = m(x, state, targets=y)
    grads = torch.autograd.grad(loss, params)
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    for a, b in zip(s1, s2):
        torch.testing.assert_close(a, b)


def test_weight_drop_drops_the_recurrent_weights_only():
    """One step from a zero state does not use W_hh (it multiplies h0 = 0): with only W_hh dropped, train mode
    gives the eval output there, and not at later steps."""
    torch.manual_seed(0)
    m = CharLM(ModelConfig(vocab_size=20, embedding_size=8, hidden_size=8, weight_drop=0.5))
    x = torch.randint(0, 20, (4, 6))
    m.eval()
    ev, _ = m(x)
    m.train()
    tr, _ = m(x)
    assert torch.allclose(ev[:, 0], tr[:, 0]) and not torch.allclose(ev[:, 1:], tr[:, 1:])


def test_embedding_dropout_is_unbiased():
    torch.manual_seed(0)
    m = CharLM(ModelConfig(vocab_size=20, embedding_size=8, hidden_size=8, embed_dropout=0.3))
    tokens = torch.arange(20)[None]
    with torch.no_grad():
        m.eval()
        plain = m._embed(tokens)
        m.train()
        draws = torch.stack([m._embed(tokens) for _ in range(4000)])
    assert (draws == 0).float().mean() == pytest.approx(0.3, abs=0.02)  # whole characters dropped at the rate asked
    assert float((draws.mean(0) / plain).median()) == pytest.approx(1.0, abs=0.03)  # and the rest scaled up to match


@pytest.mark.parametrize("embedding_size", [8, 0])
def test_label_smoothing_changes_the_training_loss(embedding_size):
    torch.manual_seed(0)
    m = CharLM(ModelConfig(vocab_size=25, embedding_size=embedding_size, hidden_size=12, tie_weights=False))
    x, y = torch.randint(0, 25, (3, 20)), torch.randint(0, 25, (3, 20))
    torch.set_grad_enabled(False)
    try:
        logits, _ = m(x)
        losses = {ls: m(x, targets=y, label_smoothing=ls)[0] for ls in (0.0, 0.1, 0.5)}
    finally:
        torch.set_grad_enabled(True)
    for ls, loss in losses.items():
        want = F.cross_entropy(logits.reshape(-1, 25), y.reshape(-1), label_smoothing=ls)
        assert float(loss) == pytest.approx(float(want), rel=1e-5)


def test_tokens_that_are_not_a_batch_of_ids_are_named():
    """A 1-D sequence was refused by torch's LSTM as "hx and cx should also be 2-D"; floats by the embedding."""
    model = CharLM(ModelConfig(vocab_size=10, embedding_size=8, hidden_size=8))
    with pytest.raises(ValueError, match=r"shaped \(batch, time\), got a torch.int64 tensor shaped \(3,\) \(one sequence: tokens\[None\]\)"):
        model(torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"got a torch.float32 tensor shaped \(1, 2\)$"):
        model(torch.tensor([[1.0, 2.0]]))
    assert model(torch.tensor([[1, 2]], dtype=torch.int32))[0].shape == (1, 2, 10)
