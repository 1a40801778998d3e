"""Training and generation speed: charlm against the seed's loop, side by side, in one run.

    .venv/bin/python bench/speed.py --device cpu                       # CPU rows: seed size, vocabulary 1,027 and 2,582; generation
    PYTHONPATH=src python3 bench/speed.py --device cuda --data .benchdata/tinyshakespeare.txt   # GPU rows (bench/gpu.sh)
    .venv/bin/python bench/speed.py --device cpu --smoke               # every section at toy sizes: checks the script end to end

Sections (``--sections``, default: those of the device):

* ``cpu-seed``: training at the seed's settings on the CPU (256-unit LSTM, batch 32 x 35,
  Adam 1e-2, clipping 1e-2; newlines as spaces).  The seed's loop (bench/seed_loop.py)
  against charlm's ``seed`` preset (a learned 256-wide embedding) and charlm with the seed's
  own one-hot model (``--embedding-size 0``), on the first 10,000 characters (vocabulary
  1,027) and on the whole file (2,582).
* ``gpu-seed``: the same on the GPU, whole file: charlm eager fp32, bf16 and fp16, and with
  ``--cuda-graph`` in fp32 and bf16.
* ``gpu-large``: 3 x 1,024 LSTM, embedding 512, batch 128 x 256, Tiny Shakespeare
  (vocabulary 65): the seed's loop at that size (one-hot input, 3 layers) against charlm
  eager fp32, bf16 and with a CUDA graph.
* ``gen``: generation, 1 and 64 samples, seed size (an untrained model: the speed does not
  depend on the weights), on ``--device``; also through the module called per character
  (the path before the lean step), for comparison.
* ``compile``: ``torch.compile`` of charlm's model, eager fp32, seed size, against the same without.
* ``eval``: scoring, as ``charlm eval`` and the validation during training read a text: one stream,
  the state carried (``charlm.train.evaluate``), over 100,000 characters of the bundled lyrics
  repeated; the seed size untrained, or ``--checkpoint``'s model.

Training figures are charlm's training loop alone (``Trainer._train_epoch``: validation,
checkpoints and samples are not timed) and the seed's own per-epoch figure.  The first
epoch of each is a warm-up (it holds the CUDA graph's capture); figures are medians of the
rest.  On the CPU the seed's and charlm's epochs alternate, so that all see the same machine
load; on a GPU each variant runs alone, so that its peak memory is its own.  Peak memory:
``torch.cuda.max_memory_allocated`` on a GPU, the process's peak RSS on the CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402
from seed_loop import seed_epochs  # noqa: E402

from charlm import numpy_sampling, sampling  # noqa: E402
from charlm.checkpoint import load_model  # noqa: E402
from charlm.config import SampleConfig, TrainConfig, field_names  # noqa: E402
from charlm.data import load_corpus, read_text  # noqa: E402
from charlm.model import CharLM  # noqa: E402
from charlm.presets import get_preset  # noqa: E402
from charlm.sampling import generate, make_generator  # noqa: E402
from charlm.train import Trainer, evaluate, model_config_for  # noqa: E402

ROWS: list[dict] = []
LARGE = dict(embedding_size=512, hidden_size=1024, num_layers=3, dropout=0.5, batch_size=128, num_steps=256,
             optimizer="adamw", lr=2e-3, weight_decay=0.1, grad_clip=1.0, schedule="cosine", min_lr=1e-4,
             newlines="keep", vocab_from="all", val_fraction=0.1, limit_chars=0)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_memory(device: str) -> str:
    if device.startswith("cuda"):
        return f"{torch.cuda.max_memory_allocated() / 2**20:,.0f} MiB GPU"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB RSS"


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        gc.collect()  # the trainers of earlier rows (their CUDA graphs' pools too)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def make_trainer(values: dict, device: str, out: str) -> Trainer:
    values = {**values, "device": device, "out": out, "sample_every": 0}
    cfg = TrainConfig(**{k: v for k, v in values.items() if k in field_names(TrainConfig)})
    corpus = load_corpus(cfg)
    trainer = Trainer(model_config_for(values, len(corpus.vocab)), cfg, corpus, log=lambda *_: None)
    if values.get("module_path"):  # for comparison: the one-hot model through nn.LSTM, not the looked-up recurrence
        trainer._train_step(trainer.train_model).forward = trainer.train_model
    return trainer


def charlm_epoch(trainer: Trainer) -> tuple[float, float]:
    """One epoch of charlm's training loop alone: (chars/s, training perplexity)."""
    dev = str(trainer.device)
    sync(dev)
    t0 = time.perf_counter()
    trainer._train_epoch()
    sync(dev)
    dt = time.perf_counter() - t0
    tokens, loss = trainer.tokens, float(trainer.loss_sum) / max(1, trainer.tokens)
    # what _end_epoch resets, without its validation, checkpoints and samples
    trainer.epoch += 1
    trainer.batch, trainer.tokens, trainer.elapsed, trainer.state = 0, 0, 0.0, None
    trainer.loss_sum.zero_()
    return tokens / dt, math.exp(min(loss, 700))


def record(section: str, what: str, ours: float | None, seed: float | None, ppl: str = "", mem: str = "", note: str = "") -> dict:
    row = dict(section=section, what=what, charlm=ours, seed=seed, ratio=(ours / seed if ours and seed else None), ppl=ppl, mem=mem, note=note)
    ROWS.append(row)
    r = f"{row['ratio']:.2f}x" if row["ratio"] else ""
    print(f"  {section:9s} {what:44s} charlm {ours or 0:>12,.0f}  seed {seed or 0:>10,.0f}  {r:>7s}  {ppl}  {mem}  {note}", flush=True)
    return row


def compare(section: str, device: str, seed_kw: dict | None, ids, vocab_size: int, variants: list[tuple[str, dict]],
            epochs: int, out: str, label_seed: str) -> None:
    """The seed's loop and each charlm variant for ``epochs`` epochs; medians after the first."""
    alternate = not device.startswith("cuda")
    seed_gen = seed_epochs(ids, vocab_size, device=device, **seed_kw) if seed_kw is not None else None
    seed_rates, seed_ppl = [], None
    results = {}
    if alternate:
        trainers = [(name, make_trainer(v, device, f"{out}/{i}")) for i, (name, v) in enumerate(variants)]
        rates = {name: [] for name, _ in trainers}
        ppls = {}
        for e in range(epochs):
            if seed_gen is not None:
                seed_ppl, r = next(seed_gen)
                seed_rates.append(r)
            for name, t in trainers:
                r, ppls[name] = charlm_epoch(t)
                rates[name].append(r)
        for name, _ in trainers:
            results[name] = (rates[name], ppls[name], peak_memory(device))
        seed_mem = peak_memory(device)
    else:
        seed_mem = ""
        if seed_gen is not None:
            reset_peak(device)
            for _ in range(epochs):
                seed_ppl, r = next(seed_gen)
                seed_rates.append(r)
            seed_mem = peak_memory(device)
            del seed_gen
        for i, (name, v) in enumerate(variants):
            reset_peak(device)
            try:
                t = make_trainer(v, device, f"{out}/{i}")
                rs, p = [], None
                for _ in range(epochs):
                    r, p = charlm_epoch(t)
                    rs.append(r)
                results[name] = (rs, p, peak_memory(device))
                del t
            except Exception as e:  # one variant failing must not lose the others
                results[name] = ([], None, f"FAILED: {type(e).__name__}: {str(e)[:200]}")
    seed_med = statistics.median(seed_rates[1:] or seed_rates) if seed_rates else None
    if seed_med:
        record(section, label_seed, None, seed_med, f"ppl {seed_ppl:.2f}", seed_mem, note=f"{epochs} epochs")
    for name, (rs, p, mem) in results.items():
        med = statistics.median(rs[1:] or rs) if rs else None
        record(section, name, med, seed_med, f"ppl {p:.2f}" if p else "", mem)


def seed_values(whole_file: bool) -> dict:
    v = get_preset("seed")
    v.update(val_fraction=0.0, epochs=1000)
    if whole_file:
        v["limit_chars"] = 0
    return v


def corpus_ids(values: dict):
    cfg = TrainConfig(**{k: v for k, v in values.items() if k in field_names(TrainConfig)})
    corpus = load_corpus(cfg)
    return corpus.vocab.encode(corpus.train_text), len(corpus.vocab)


def section_seed(section: str, device: str, whole: bool, epochs: int, smoke: bool, out: str, variants_of) -> None:
    base = seed_values(whole)
    if smoke:
        base.update(limit_chars=3000)
    ids, vocab_size = corpus_ids(base)
    what = f"{'whole file' if whole else 'first 10,000 chars'}, vocab {vocab_size:,}"
    print(f"[{section}] {what}: {len(ids):,} training characters", flush=True)
    variants = variants_of(base, what)
    if not device.startswith("cuda"):  # the GPU-only variants, when the script is checked on the CPU
        variants = [(n, v) for n, v in variants if not v.get("cuda_graph") and v.get("precision", "fp32") == "fp32"]
    compare(section, device, {}, ids, vocab_size, variants, epochs, out, f"seed loop, {what}")


def cpu_variants(base, what):
    return [(f"charlm seed preset (embedding 256), {what}", dict(base)),
            (f"charlm one-hot (the seed's model), {what}", dict(base, embedding_size=0)),
            (f"charlm one-hot through nn.LSTM (fast path off), {what}", dict(base, embedding_size=0, module_path=True))]


def gpu_variants(base, what):
    return [(f"charlm eager fp32, {what}", dict(base)),
            (f"charlm eager bf16, {what}", dict(base, precision="bf16")),
            (f"charlm eager fp16, {what}", dict(base, precision="fp16")),
            (f"charlm CUDA graph fp32, {what}", dict(base, cuda_graph=True)),
            (f"charlm CUDA graph bf16, {what}", dict(base, cuda_graph=True, precision="bf16"))]


def section_large(device: str, data: str, epochs: int, smoke: bool, out: str) -> None:
    values = dict(LARGE, data=data, epochs=1000)
    if smoke:
        values.update(hidden_size=32, embedding_size=16, batch_size=4, num_steps=16, limit_chars=3_000)
    ids, vocab_size = corpus_ids(values)
    what = f"{values['num_layers']}x{values['hidden_size']}, emb {values['embedding_size']}, {values['batch_size']}x{values['num_steps']}, vocab {vocab_size}"
    print(f"[gpu-large] {what}: {len(ids):,} training characters", flush=True)
    seed_kw = dict(num_hiddens=values["hidden_size"], num_steps=values["num_steps"], batch_size=values["batch_size"],
                   num_layers=values["num_layers"])
    variants = [(f"charlm eager fp32, {what}", dict(values)),
                (f"charlm eager bf16, {what}", dict(values, precision="bf16")),
                (f"charlm CUDA graph fp32, {what}", dict(values, cuda_graph=True)),
                (f"charlm CUDA graph bf16, {what}", dict(values, cuda_graph=True, precision="bf16"))]
    if not device.startswith("cuda"):
        variants = [v for v in variants if "graph" not in v[0] and "bf16" not in v[0]]
    compare("gpu-large", device, seed_kw, ids, vocab_size, variants, epochs, out, f"seed loop (one-hot, 3 layers), {what}")


@contextlib.contextmanager
def gen_path(model, path: str):
    """Which generation path generate() takes: "fast" (its own choice), "torch" (numpy's CPU path off), "eager" (no CUDA
    graph on a GPU) or "module" (a hook on the model makes generate() call the module per character, not its lean step)."""
    handle = model.register_forward_hook(lambda *a: None) if path == "module" else None
    fits, min_chars = numpy_sampling.fits, sampling.GRAPH_MIN_CHARS
    if path == "torch":
        numpy_sampling.fits = lambda *a: False
    if path == "eager":
        sampling.GRAPH_MIN_CHARS = 1 << 62
    try:
        yield
    finally:
        numpy_sampling.fits, sampling.GRAPH_MIN_CHARS = fits, min_chars
        if handle is not None:
            handle.remove()


def gen_rate(model, vocab, device: str, n: int, length: int, repeats: int, path: str = "fast") -> float:
    prefix = "分开" if "分" in vocab else vocab.itos[1]
    rates = []
    with gen_path(model, path):
        for r in range(repeats + 1):
            g = make_generator(r, device)
            cfg = SampleConfig(length=length if r else 20, num_samples=n)  # the first is a warm-up
            sync(device)
            t0 = time.perf_counter()
            chars = 0
            for step in generate(model, vocab, prefix, cfg, generator=g):
                chars += sum(len(s) for s in step)
            sync(device)
            if r:
                rates.append((chars - n * len(prefix)) / (time.perf_counter() - t0))
    return statistics.median(rates)


def bench_model(section: str, device: str, checkpoint: str = ""):
    """A trained model (the default preset's has a copy ring) from ``checkpoint``, else the seed's size untrained; and its vocabulary."""
    if checkpoint:
        model, vocab, ckpt = load_model(checkpoint, device)
        print(f"[{section}] {checkpoint}: {ckpt.model_config}; device {device}", flush=True)
        return model, vocab
    values = seed_values(False)
    cfg = TrainConfig(**{k: v for k, v in values.items() if k in field_names(TrainConfig)})
    vocab = load_corpus(cfg).vocab
    torch.manual_seed(0)
    model = CharLM(model_config_for(values, len(vocab))).to(device).eval()
    print(f"[{section}] seed size: embedding 256, 256 units, vocab {len(vocab):,}; device {device}", flush=True)
    return model, vocab


def section_gen(device: str, smoke: bool, checkpoint: str = "") -> None:
    model, vocab = bench_model("gen", device, checkpoint)
    length = 200 if smoke else 2000
    for n, ln in ((1, length), (64, length // 4)):
        what = f"{n} sample{'s' if n > 1 else ''} x {ln} chars, {device}" + (f", {Path(checkpoint).name}" if checkpoint else "")
        reset_peak(device)
        record("gen", what, gen_rate(model, vocab, device, n, ln, 3), None, mem=peak_memory(device))
        if n == 1 and device == "cpu":  # the numpy path's own baseline: the same lean step in torch
            record("gen", f"{what}, torch lean step (numpy path off)", gen_rate(model, vocab, device, n, ln, 3, "torch"), None)
        if device.startswith("cuda"):  # the graph's own baseline: the same lean step, its kernels launched one by one
            record("gen", f"{what}, lean step without the CUDA graph", gen_rate(model, vocab, device, n, ln, 3, "eager"), None)
        record("gen", f"{what}, module per char", gen_rate(model, vocab, device, n, ln, 3, "module"), None)


def section_eval(device: str, smoke: bool, checkpoint: str = "") -> None:
    model, vocab = bench_model("eval", device, checkpoint)
    text = read_text()
    n = 5_000 if smoke else 100_000
    ids = torch.tensor(vocab.encode_known((text * (n // len(text) + 1))[:n])[0])
    rates = []
    for _ in range(3):
        sync(device)
        t0 = time.perf_counter()
        evaluate(model, ids)
        sync(device)
        rates.append(ids.numel() / (time.perf_counter() - t0))
    what = f"one stream, {ids.numel():,} chars, {device}" + (f", {Path(checkpoint).name}" if checkpoint else ", seed size untrained")
    record("eval", what, statistics.median(rates), None, note=f"runs {', '.join(f'{r:,.0f}' for r in rates)}")


def section_compile(device: str, epochs: int, smoke: bool, out: str) -> None:
    base = seed_values(device.startswith("cuda"))
    if smoke:
        base.update(limit_chars=3000)
    res = {}
    for name, compiled in (("eager", False), ("torch.compile", True)):
        reset_peak(device)
        t = make_trainer(base, device, f"{out}/compile-{name}")
        if compiled:
            t.train_model = torch.compile(t.model)
        t0 = time.perf_counter()
        rs = [charlm_epoch(t)[0] for _ in range(epochs)]
        res[name] = statistics.median(rs[1:] or rs)
        record("compile", f"charlm {name}, fp32, seed size, {device}", res[name], None, mem=peak_memory(device),
               note=f"total {time.perf_counter() - t0:.1f} s incl. compiling")
    print(f"  torch.compile / eager: {res['torch.compile'] / res['eager']:.2f}x", flush=True)


def table() -> str:
    lines = ["| section | what | charlm chars/s | seed loop chars/s | charlm / seed | training ppl | peak memory |",
             "|---|---|---:|---:|---:|---|---|"]
    for r in ROWS:
        f = lambda x: f"{x:,.0f}" if x else ""  # noqa: E731
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] else ""
        lines.append(f"| {r['section']} | {r['what']} | {f(r['charlm'])} | {f(r['seed'])} | {ratio} | {r['ppl']} | {r['mem']} {r['note']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--sections", default="", help="comma-separated: cpu-seed, gpu-seed, gpu-large, gen, compile, eval (default: by device)")
    ap.add_argument("--data", default=str(ROOT / ".benchdata" / "tinyshakespeare.txt"), help="Tiny Shakespeare, for gpu-large")
    ap.add_argument("--epochs", type=int, default=0, help="epochs per figure, the first a warm-up (default: by section)")
    ap.add_argument("--smoke", action="store_true", help="toy sizes, to check the script end to end")
    ap.add_argument("--checkpoint", default="", help="gen, eval: a trained model's folder instead of the untrained seed size")
    ap.add_argument("--json", default="", help="also write the rows here")
    args = ap.parse_args()
    cuda = args.device.startswith("cuda")
    sections = args.sections.split(",") if args.sections else (["gpu-seed", "gpu-large", "gen"] if cuda else ["cpu-seed", "gen"])
    print(f"torch {torch.__version__}; {platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads; device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if cuda else ""), flush=True)
    out = tempfile.mkdtemp(prefix="charlm-speed-")
    ep = lambda default: args.epochs or (2 if args.smoke else default)  # noqa: E731
    jobs = {
        "cpu-seed": lambda: (section_seed("cpu-seed", args.device, False, ep(6), args.smoke, out, cpu_variants),
                             section_seed("cpu-seed", args.device, True, ep(4), args.smoke, out, cpu_variants)),
        "gpu-seed": lambda: section_seed("gpu-seed", args.device, True, ep(6), args.smoke, out, gpu_variants),
        "gpu-large": lambda: section_large(args.device, args.data, ep(3), args.smoke, out),
        "gen": lambda: section_gen(args.device, args.smoke, args.checkpoint),
        "compile": lambda: section_compile(args.device, ep(4), args.smoke, out),
        "eval": lambda: section_eval(args.device, args.smoke, args.checkpoint),
    }
    failed = []
    for s in sections:
        t0 = time.perf_counter()
        try:
            jobs[s]()
        except Exception as e:  # each section on its own: one failing must not lose the others
            failed.append(s)
            print(f"[{s}] FAILED: {type(e).__name__}: {e}", flush=True)
        print(f"[{s}] {time.perf_counter() - t0:.1f} s", flush=True)
    print("\n== table\n" + table())
    if args.json:
        Path(args.json).write_text(json.dumps(ROWS, indent=1))
    if failed:
        sys.exit(f"failed sections: {', '.join(failed)}")


if __name__ == "__main__":
    main()
