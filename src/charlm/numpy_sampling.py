"""Generation on the CPU in numpy: the LSTM step, the decoder, the copy ring and the draw.

On a CPU one character of one sample is two matrix-vector products and a few dozen small
operations on vectors of a thousand numbers.  A torch call costs 3-10 µs of dispatch
against about 1 µs for a numpy call, and numpy's OpenBLAS multiplies a vector by the
1 MB matrices of the seed's size in about half the time torch's MKL takes on the AMD CPU
of BENCHMARKS.md; so the whole loop is done here, in numpy, sampling settings included
(temperature, top-k, top-p, greedy).  It reads the weights :class:`_LeanStep`
prepared (numpy views of the same memory) and gives the characters the torch path gives
for the same generator, to float rounding: each uniform number comes from the same torch
generator, in the same order, and is placed in the running sum the same way (:func:`draw`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from .config import SampleConfig
from .model import MIX_EPS

BLOCK = 256  # uniform numbers drawn from the torch generator at a time (on the CPU, the same stream as one at a time)


def fits(lean, cfg: SampleConfig) -> bool:
    """Whether a :class:`Sampler` can take over from a lean step: one sample of an LSTM on the CPU.

    One sample only: at 64 the arithmetic outweighs the dispatch, and torch's two threads
    are faster than numpy's one (BENCHMARKS.md).
    """
    return lean.kind == "lstm" and lean.dec_w.device.type == "cpu" and cfg.num_samples == 1


class Sampler:
    """``draw() -> [id]`` from the last logits, ``step([id])`` reads it: one sample, in numpy.

    The uniform numbers are taken from ``generator`` in blocks, ``steps`` in all: what the
    torch path draws one at a time (a generation that stops early, at its last line, leaves
    the rest of the block drawn).
    """

    def __init__(self, lean, logits: torch.Tensor, cfg: SampleConfig, generator: torch.Generator | None, steps: int,
                 banned: int | None = None):
        self.net = _NumpyStep(lean)
        self.z = logits.detach().float().numpy()
        self.cfg = cfg
        self.uniforms = None if cfg.greedy else _uniforms(generator, steps)
        self.banned = banned  # an id never drawn (<unk>), as the torch path

    def draw(self) -> list[int]:
        z = self.z
        if self.banned is not None:
            z = z.copy()
            z[:, self.banned] = -np.inf
        return [_choose(z, self.cfg, self.uniforms)]

    def step(self, ids: list[int]) -> None:
        self.z = self.net(ids[0])


def _uniforms(generator: torch.Generator | None, steps: int) -> Iterator[float]:
    """``steps`` uniform numbers in [0, 1), drawn in blocks: exactly what ``steps`` calls of ``torch.rand((1, 1))`` draw."""
    left = steps
    while left:
        k = min(BLOCK, left)
        yield from torch.rand(k, generator=generator, dtype=torch.float64).tolist()
        left -= k


def _choose(z: np.ndarray, cfg: SampleConfig, uniforms) -> int:
    """The next id from logits ``z`` (1, V): :func:`charlm.sampling.choose`, its filters and its draw."""
    if cfg.greedy:
        return int(z.argmax())
    z = z[0]
    if cfg.temperature != 1:
        z = z / np.float32(cfg.temperature)
    if cfg.top_k is not None and cfg.top_k < len(z):  # the k largest (and any tied with the k-th) stay
        kth = np.partition(z, len(z) - cfg.top_k)[len(z) - cfg.top_k]
        z = np.where(z < kth, np.float32(-np.inf), z)
    p = np.exp(z - z.max())
    if cfg.top_p < 1:  # nucleus: the most likely characters until their probability reaches top_p
        order = np.argsort(-p, kind="stable")
        sp = p[order] / p.sum()
        drop = np.cumsum(sp) - sp >= cfg.top_p  # the mass before this one already reaches top_p
        drop[0] = False
        p[order[drop]] = 0
    cdf = np.cumsum(p, dtype=np.float64)
    v = (1 - next(uniforms)) * cdf[-1]  # in (0, total]
    return int(np.searchsorted(cdf, v))  # the first index whose running sum reaches v


class _NumpyStep:
    """:class:`charlm.sampling._LeanStep` for an LSTM, in numpy, on numpy views of the weights it prepared."""

    def __init__(self, lean):
        def arr(t):
            return t.detach().float().numpy()

        self.hidden = lean.hidden
        self.table = None if lean.table is None else arr(lean.table)
        self.emb = arr(lean.emb)
        self.layers = [(arr(w), None if b is None else arr(b)) for w, b in lean.layers]
        self.dec_w, self.dec_b = arr(lean.dec_w), arr(lean.dec_b)
        self.h = [arr(h).copy() for h in lean.h]
        self.c = [arr(c).copy() for c in lean.c]
        self.ring = None if lean.ring is None else _NumpyRing(lean.ring)

    def __call__(self, tok: int) -> np.ndarray:
        """Logits (1, V) after reading the id ``tok``."""
        H = self.hidden
        x = None
        for k, (w, b) in enumerate(self.layers):
            if b is None:  # the first layer, its input part looked up
                gates = self.h[k] @ w
                gates += self.table[tok]
            else:
                x = self.emb[tok : tok + 1] if k == 0 else x
                gates = np.concatenate([x, self.h[k]], 1) @ w
                gates += b
            s = np.tanh(gates * 0.5)  # sigmoid(x) = (1 + tanh(x / 2)) / 2, without exp's overflow
            s *= 0.5
            s += 0.5
            c = s[:, H : 2 * H] * self.c[k]
            c += s[:, :H] * np.tanh(gates[:, 2 * H : 3 * H])
            x = np.tanh(c)
            x *= s[:, 3 * H :]
            self.h[k], self.c[k] = x, c
        logits = x @ self.dec_w
        logits += self.dec_b
        return logits if self.ring is None else self.ring(tok, x, logits)


class _NumpyRing:
    """:class:`charlm.model.CopyRing` in numpy, on numpy views of the ring it set up (one sample)."""

    def __init__(self, ring):
        self.window = ring.window
        self.keys, self.nxt, self.bias = ring.keys[0].numpy(), ring.nxt[0].numpy(), ring.bias[0].numpy()
        self.pending = int(ring.slot)
        self.masked = np.isneginf(self.bias[1:]).tolist()  # slots whose key was never made
        self.wq = np.ascontiguousarray((ring.wq.detach() / ring.scale).numpy())  # the division by sqrt(dim), done once
        self.wk = np.ascontiguousarray(ring.wk.detach().numpy())

    def __call__(self, tok: int, y: np.ndarray, logits: np.ndarray) -> np.ndarray:
        """The id ``tok`` just read, the top output ``y`` (1, H) and ``logits`` (1, V) after it -> log-probabilities (1, V)."""
        self.nxt[self.pending] = tok
        scores = self.keys @ (y[0] @ self.wq)  # (1 + W,): the sentinel, then each key
        scores += self.bias
        share = np.exp(scores - scores.max())
        share /= share.sum()
        probs = np.exp(logits[0] - logits[0].max())
        probs *= share[0] / probs.sum()
        np.add.at(probs, self.nxt, share[1:])  # keys never made have share 0
        p = self.pending = (self.pending + 1) % self.window  # the oldest pair makes room for the newest key
        self.keys[1 + p] = y[0] @ self.wk
        if self.masked[p]:
            self.bias[1 + p] = 0.0
            self.masked[p] = False
        probs += MIX_EPS
        return np.log(probs, out=probs)[None]
