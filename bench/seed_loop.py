"""A faithful copy of the seed's training loop (Dive-into-DL-PyTorch, LSTM chapter), as the baseline.

Kept as the seed wrote it, on purpose: one-hot vectors built for every step as a Python
list, ``torch.stack`` of that list, ``.item()`` after every step, and its gradient
clipping, which iterates the ``model.parameters()`` generator twice and so never clips
(it still costs the norm computation).  Only the learning rate is 1e-2 (the seed's 1e2
is a typo that diverges) and the vocabulary is built in a fixed order so that runs are
comparable.  Do not "fix" this file: it is what charlm is measured against.
"""

from __future__ import annotations

import math
import time

import torch
from torch import nn


def to_onehot(X, n_class):
    # X shape: (batch, seq_len), output: seq_len elements of (batch, n_class)
    def one_hot(x, n_class, dtype=torch.float32):
        x = x.long()
        res = torch.zeros(x.shape[0], n_class, dtype=dtype, device=x.device)
        res.scatter_(1, x.view(-1, 1), 1)
        return res

    return [one_hot(X[:, i], n_class) for i in range(X.shape[1])]


def data_iter_consecutive(corpus_indices, batch_size, num_steps, device=None):
    corpus_indices = torch.tensor(corpus_indices, dtype=torch.float32, device=device)
    data_len = len(corpus_indices)
    batch_len = data_len // batch_size
    indices = corpus_indices[0 : batch_size * batch_len].view(batch_size, batch_len)
    epoch_size = (batch_len - 1) // num_steps
    for i in range(epoch_size):
        i = i * num_steps
        X = indices[:, i : i + num_steps]
        Y = indices[:, i + 1 : i + num_steps + 1]
        yield X, Y


class RNNModel(nn.Module):
    def __init__(self, rnn_layer, vocab_size):
        super().__init__()
        self.rnn = rnn_layer
        self.hidden_size = rnn_layer.hidden_size * (2 if rnn_layer.bidirectional else 1)
        self.vocab_size = vocab_size
        self.dense = nn.Linear(self.hidden_size, vocab_size)
        self.state = None

    def forward(self, inputs, state):  # inputs: (batch, seq_len)
        X = to_onehot(inputs, self.vocab_size)  # a list
        Y, self.state = self.rnn(torch.stack(X), state)
        output = self.dense(Y.view(-1, Y.shape[-1]))
        return output, self.state


def grad_clipping(params, theta, device):
    norm = torch.tensor([0.0], device=device)
    for param in params:
        norm += (param.grad.data ** 2).sum()
    norm = norm.sqrt().item()
    if norm > theta:
        for param in params:  # the generator is spent: this loop never runs
            param.grad.data *= theta / norm


def seed_epochs(corpus_indices, vocab_size, device="cpu", num_hiddens=256, num_steps=35,
                batch_size=32, lr=1e-2, clipping_theta=1e-2, seed=0, num_layers=1):
    """The seed's ``train_and_predict_rnn_pytorch`` without its sampling, one epoch per ``next()``: yields (perplexity, chars/s).

    ``num_layers`` (1, the seed's) only lets bench/speed.py run the same loop at a larger size.
    """
    torch.manual_seed(seed)
    model = RNNModel(nn.LSTM(input_size=vocab_size, hidden_size=num_hiddens, num_layers=num_layers), vocab_size)
    loss = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.to(device)
    state = None
    while True:
        l_sum, n, start = 0.0, 0, time.time()
        for X, Y in data_iter_consecutive(corpus_indices, batch_size, num_steps, device):
            if state is not None:
                if isinstance(state, tuple):
                    state = (state[0].detach(), state[1].detach())
                else:
                    state = state.detach()
            (output, state) = model(X, state)
            y = torch.transpose(Y, 0, 1).contiguous().view(-1)
            l = loss(output, y.long())  # noqa: E741
            optimizer.zero_grad()
            l.backward()
            grad_clipping(model.parameters(), clipping_theta, device)
            optimizer.step()
            l_sum += l.item() * y.shape[0]
            n += y.shape[0]
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()
        try:
            perplexity = math.exp(l_sum / n)
        except OverflowError:
            perplexity = float("inf")
        yield perplexity, n / (time.time() - start)
