"""Training characters per second: charlm's trainer against the seed's loop, same settings, one run.

    .venv/bin/python bench/seed_speed.py [--epochs 6] [--whole-file] [--device cpu]

Both train the seed's model (256-unit LSTM, batch 32 x 35 steps, Adam 1e-2, clipping
1e-2) on the seed's corpus (first 10,000 characters, newlines as spaces, vocabulary
1,027; with --whole-file all 63,282 characters, vocabulary 2,582), alternating epoch by
epoch so that both see the same machine load.  Each figure is the training loop alone
(charlm's is what it reports as chars/s; validation and checkpoints are not timed).  The
first epoch is a warm-up; the rest give medians and their ratio, and the training
perplexity each reaches.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed_loop import seed_epochs  # noqa: E402

from charlm.config import TrainConfig, field_names  # noqa: E402
from charlm.data import load_corpus  # noqa: E402
from charlm.presets import get_preset  # noqa: E402
from charlm.train import Trainer, model_config_for  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=6, help="epochs each; the first is a warm-up")
    ap.add_argument("--whole-file", action="store_true", help="the whole corpus (vocabulary 2,582)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="/tmp/charlm-bench-seed")
    args = ap.parse_args()

    values = get_preset("seed")
    values.update(out=args.out, device=args.device, epochs=args.epochs, val_fraction=0.0)
    if args.whole_file:
        values["limit_chars"] = 0
    cfg = TrainConfig(**{k: v for k, v in values.items() if k in field_names(TrainConfig)})
    corpus = load_corpus(cfg)
    ids = corpus.vocab.encode(corpus.train_text)
    trainer = Trainer(model_config_for(values, len(corpus.vocab)), cfg, corpus, log=lambda *_: None)
    trainer.print_samples = lambda: None
    trainer.out.mkdir(parents=True, exist_ok=True)
    seed = seed_epochs(ids, len(corpus.vocab), device=args.device)

    print(f"corpus {len(ids):,} characters, vocabulary {len(corpus.vocab):,}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {platform.machine()}, device {args.device}")
    seed_rates, ours_rates = [], []
    for epoch in range(args.epochs):
        ppl_s, rate_s = next(seed)
        t0 = time.perf_counter()
        trainer._train_epoch()
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        rate_o = trainer.tokens / (time.perf_counter() - t0)
        trainer._end_epoch()
        ppl_o = trainer.metrics[-1]["train_ppl"]
        print(f"epoch {epoch + 1}: seed {rate_s:>10,.0f} chars/s (train ppl {ppl_s:8.2f})   "
              f"charlm {rate_o:>10,.0f} chars/s (train ppl {ppl_o:8.2f})", flush=True)
        if epoch > 0:
            seed_rates.append(rate_s)
            ours_rates.append(rate_o)
    ms, mo = statistics.median(seed_rates), statistics.median(ours_rates)
    print(f"median of epochs 2-{args.epochs}: seed {ms:,.0f} chars/s, charlm {mo:,.0f} chars/s, ratio {mo / ms:.2f}x")
    print(f"training perplexity after {args.epochs} epochs: seed {ppl_s:.2f}, charlm {ppl_o:.2f}")


if __name__ == "__main__":
    main()
