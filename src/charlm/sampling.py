"""Sampling: small functions from logits to logits, and one generator that yields characters.

The hidden state is carried one character at a time: the prefix is read once, then each
new character costs one step of the model, whatever came before.  The command line, the
trainer's samples and the server all use :func:`generate`.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from .config import SampleConfig
from .errors import CharlmError
from .vocab import Vocab


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide by ``temperature`` (> 0): below 1 sharpens the distribution, above 1 flattens it."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int | None) -> torch.Tensor:
    """Keep the ``k`` largest logits of each row, set the rest to -inf."""
    if k is None or k >= logits.shape[-1]:
        return logits
    if k < 1:
        raise ValueError(f"top_k must be >= 1, got {k}")
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of most likely characters whose probability reaches ``p`` (nucleus sampling)."""
    if not 0 < p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {p}")
    if p >= 1:
        return logits
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    cum = sorted_logits.softmax(-1).cumsum(-1)
    drop = cum - sorted_logits.softmax(-1) >= p  # the mass before this one already reaches p
    drop[..., 0] = False
    return logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))


def choose(logits: torch.Tensor, cfg: SampleConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """Next ids (batch,) from last-step logits (batch, vocab)."""
    if cfg.greedy:
        return logits.argmax(-1)
    logits = top_p_filter(top_k_filter(apply_temperature(logits.float(), cfg.temperature), cfg.top_k), cfg.top_p)
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)


def check_known(vocab: Vocab, text: str, what: str, unknown: str = "error") -> str:
    """``text`` itself, or without the characters ``vocab`` lacks when ``unknown='skip'``; else a one-line error."""
    missing = vocab.unknown(text)
    if not missing:
        return text
    if unknown == "skip":
        return "".join(c for c in text if c in vocab)
    shown = " ".join(repr(c) for c in missing[:20]) + (" ..." if len(missing) > 20 else "")
    raise CharlmError(f"the {what} has characters the model's vocabulary does not know: {shown} (use --unknown skip to drop them)")


def make_generator(seed: int, device) -> torch.Generator:
    """A private random stream for sampling; ``seed < 0`` draws a fresh one."""
    g = torch.Generator(device=device)
    if seed >= 0:
        g.manual_seed(seed)
    else:
        g.seed()
    return g


@torch.no_grad()
def generate(
    model,
    vocab: Vocab,
    prefix: str,
    cfg: SampleConfig,
    *,
    style_prefix: str = "",
    acrostic: str = "",
    generator: torch.Generator | None = None,
) -> Iterator[list[str]]:
    """Yield, step by step, one string per sample: first the prefix, then one character each (``""`` once a sample is done).

    Stops after ``cfg.length`` characters, or ``cfg.lines`` line breaks, or one line per
    character of ``acrostic`` (藏头), each line starting with that character.  The caller
    checks the texts against the vocabulary first (:func:`check_known`).
    """
    was_training = model.training
    model.eval()
    try:
        yield from _generate(model, vocab, prefix, cfg, style_prefix, acrostic, generator)
    finally:
        model.train(was_training)


def _generate(model, vocab, prefix, cfg, style_prefix, acrostic, generator):
    device = model.decoder.weight.device
    n = cfg.num_samples
    newline = vocab.stoi.get("\n")
    heads = [vocab.stoi[c] for c in acrostic]
    if heads:
        # An acrostic starts at the beginning of a line: its first head is the first character.
        context = style_prefix + ("\n" if newline is not None else "")
        prefix = ""
    else:
        context = style_prefix + prefix
    if not context:
        raise CharlmError("the prefix is empty and the model has no newline token to start from; give --prefix")

    state = None
    ids = torch.tensor(vocab.encode(context), device=device).expand(n, -1)  # (n, len)
    logits, state = model(ids, state)  # the whole context is read once
    logits = logits[:, -1]
    if prefix:
        yield [prefix] * n

    max_chars = cfg.lines * cfg.max_line_length if cfg.lines else cfg.length
    if heads:
        max_chars = len(heads) * (cfg.max_line_length + 1)
    line_len = torch.zeros(n, dtype=torch.long, device=device)
    lines_done = torch.zeros(n, dtype=torch.long, device=device)
    done = torch.zeros(n, dtype=torch.bool, device=device)
    at_line_start = torch.full((n,), bool(heads), dtype=torch.bool, device=device)
    newline_id = newline if newline is not None else -1
    for i in range(max_chars):
        nxt = choose(logits, cfg, generator)
        if heads:
            head = torch.tensor(heads, device=device)[lines_done.clamp(max=len(heads) - 1)]
            nxt = torch.where(at_line_start, head, nxt)
        if cfg.lines or heads:
            # A line that runs too long is ended, so that --lines and --acrostic always finish.
            if newline is not None:
                nxt = torch.where(line_len >= cfg.max_line_length, torch.full_like(nxt, newline), nxt)
        is_break = nxt == newline_id
        if newline is None and (cfg.lines or heads):
            is_break = line_len + 1 >= cfg.max_line_length
        chars = [("" if d else vocab.itos[i]) + ("\n" if (b and newline is None and not d) else "")
                 for i, d, b in zip(nxt.tolist(), done.tolist(), is_break.tolist())]
        yield chars
        lines_done = lines_done + (is_break & ~done).long()
        line_len = torch.where(is_break, torch.zeros_like(line_len), line_len + 1)
        at_line_start = is_break & bool(heads)
        if heads:
            done = done | (lines_done >= len(heads))
        elif cfg.lines:
            done = done | (lines_done >= cfg.lines)
        if i == max_chars - 1 or bool(done.all()):
            return
        logits, state = model(nxt[:, None], state)
        logits = logits[:, -1]


def sample_text(model, vocab: Vocab, prefix: str, cfg: SampleConfig, **kw) -> list[str]:
    """The whole samples as strings (no streaming)."""
    out = [""] * cfg.num_samples
    for step in generate(model, vocab, prefix, cfg, **kw):
        out = [a + b for a, b in zip(out, step)]
    return out
