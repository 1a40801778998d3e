"""A bounded load test of ``charlm serve``: many concurrent clients, a fixed number of requests.

Starts the server on 127.0.0.1 (a free port, a subprocess) with the given checkpoint, or
trains a tiny one first; sends ``--requests`` requests from ``--clients`` concurrent
clients (mostly /v1/generate, some streamed, some scored); prints the error count,
latency percentiles and throughput; stops the server.  Exits 1 on any error.

    python bench/load_test.py [CHECKPOINT] [--clients 32] [--requests 500] [--length 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

PREFIXES = ["分开", "不分开", "我", "你说", "天青色", "想要"]  # all in the bundled lyrics' vocabulary


def percentile(xs: list[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank."""
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = max(0, min(len(xs) - 1, math.ceil(q / 100 * len(xs)) - 1))
    return xs[k]


async def _one(client: httpx.AsyncClient, i: int, length: int, mix: tuple[float, float],
               prefixes: list[str]) -> tuple[str, float, str | None, bool]:
    """One request: (kind, seconds, error or None, whether the generation was cut short)."""
    rng = random.Random(i)
    body = {"prefix": rng.choice(prefixes), "length": length, "temperature": 0.8, "top_p": 0.95, "seed": i}
    r = rng.random()
    kind = "stream" if r < mix[0] else "score" if r < mix[0] + mix[1] else "generate"
    t0 = time.perf_counter()
    cut = False
    try:
        if kind == "generate":
            resp = await client.post("/v1/generate", json=body)
            ok = resp.status_code == 200 and resp.json()["samples"][0].startswith(body["prefix"])
            err = None if ok else f"generate: HTTP {resp.status_code} {resp.text[:200]}"
            cut = ok and resp.json()["finish_reason"] != "done"
        elif kind == "stream":
            err = "stream: no done event"
            async with client.stream("POST", "/v1/generate/stream", json=body) as resp:
                if resp.status_code != 200:
                    err = f"stream: HTTP {resp.status_code}"
                else:
                    done = False
                    async for line in resp.aiter_lines():
                        if line == "event: done":
                            err, done = None, True
                        elif done and line.startswith("data: "):
                            cut = json.loads(line[6:])["finish_reason"] != "done"
        else:
            resp = await client.post("/v1/score", json={"text": "分开的时候我说不分开\n你说我们还会再见\n", "unknown": "skip"})
            err = None if resp.status_code == 200 and resp.json()["perplexity"] > 0 else f"score: HTTP {resp.status_code}"
    except httpx.HTTPError as e:
        err = f"{kind}: {e.__class__.__name__}: {e}"
    return kind, time.perf_counter() - t0, err, cut


async def run_load(url: str, clients: int = 32, requests: int = 500, length: int = 50,
                   mix: tuple[float, float] = (0.1, 0.1), timeout: float = 600.0, prefixes: list[str] = PREFIXES) -> dict:
    """Send ``requests`` requests from ``clients`` concurrent clients; the figures as a dict.

    ``mix`` is the fraction streamed and the fraction scored; the rest are /v1/generate.
    """
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    results: list[tuple[str, float, str | None, bool]] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=httpx.Timeout(120.0)) as client:

        async def worker():
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                results.append(await _one(client, i, length, mix, prefixes))

        t0 = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(clients))), timeout)
        wall = time.perf_counter() - t0

    lat = [r[1] for r in results]
    errors = [r[2] for r in results if r[2]]
    kinds = {k: sum(1 for r in results if r[0] == k) for k in ("generate", "stream", "score")}
    return {
        "requests": len(results), "clients": clients, "length": length, "errors": len(errors),
        "cut": sum(1 for r in results if r[3]),
        "first_errors": errors[:5], "kinds": kinds, "wall_s": wall, "rps": len(results) / wall,
        "p50_ms": 1000 * percentile(lat, 50), "p90_ms": 1000 * percentile(lat, 90),
        "p99_ms": 1000 * percentile(lat, 99), "max_ms": 1000 * max(lat, default=float("nan")),
        "generate_p50_ms": 1000 * percentile([r[1] for r in results if r[0] == "generate"], 50),
        "generate_p99_ms": 1000 * percentile([r[1] for r in results if r[0] == "generate"], 99),
    }


def train_tiny(out: Path) -> Path:
    """A small model on the bundled lyrics, trained in about a minute: only a benchmark subject."""
    cmd = [sys.executable, "-m", "charlm", "train", "--limit-chars", "20000", "--embedding-size", "64",
           "--hidden-size", "128", "--no-tie-weights", "--epochs", "1", "--out", str(out)]
    print("training a tiny model:", " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return out


def start_server(ckpt: Path, extra: list[str], log: Path, wait: float = 120.0) -> tuple[subprocess.Popen, str]:
    """``charlm serve`` on 127.0.0.1 and a free port, its output to ``log``; (process, base URL) once /healthz answers."""
    cmd = [sys.executable, "-m", "charlm", "serve", str(ckpt), "--host", "127.0.0.1", "--port", "0", *extra]
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + wait
    url = None
    while time.monotonic() < deadline and proc.poll() is None:
        if url is None:
            m = re.search(r"on (http://127\.0\.0\.1:\d+)", log.read_text())
            url = m and m.group(1)
        if url:
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    return proc, url
            except httpx.HTTPError:
                pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"the server did not start:\n{log.read_text()[-2000:]}")


def machine() -> str:
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    import torch

    return f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, torch {torch.__version__}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", nargs="?", help="checkpoint or run folder (default: train a tiny one)")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--length", type=int, default=50)
    ap.add_argument("--stream-fraction", type=float, default=0.1)
    ap.add_argument("--score-fraction", type=float, default=0.1)
    ap.add_argument("--timeout", type=float, default=600, help="give up after this many seconds of load")
    ap.add_argument("--server-args", default="", help="extra flags for charlm serve, e.g. '--threads 2 --workers 4'")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON line too")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(args.checkpoint) if args.checkpoint else train_tiny(Path(tmp) / "run")
        proc, url = start_server(ckpt, args.server_args.split(), Path(tmp) / "server.log")
        try:
            info = httpx.get(url + "/v1/model", timeout=10).json()
            m = info["model_config"]
            print(f"server {url}: {m['cell']} {m['num_layers']}x{m['hidden_size']}, vocabulary {info['vocab_size']}, "
                  f"{info['parameters']:,} parameters; {args.server_args or 'default flags'}")
            print(f"machine: {machine()}")
            httpx.post(url + "/v1/generate", json={"length": 5}, timeout=60)  # warm up
            res = asyncio.run(run_load(url, args.clients, args.requests, args.length,
                                       (args.stream_fraction, args.score_fraction), args.timeout))
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    ok = res["errors"] == 0
    print(f"requests: {res['requests']} ({res['kinds']['generate']} generate, {res['kinds']['stream']} stream, "
          f"{res['kinds']['score']} score) from {res['clients']} concurrent clients, length {res['length']}")
    print(f"errors: {res['errors']}" + ("  OK" if ok else f"  FAILED: {res['first_errors']}")
          + f"; generations cut by the time limit: {res['cut']}")
    print(f"latency: p50 {res['p50_ms']:.0f} ms, p90 {res['p90_ms']:.0f} ms, p99 {res['p99_ms']:.0f} ms, max {res['max_ms']:.0f} ms "
          f"(/v1/generate alone: p50 {res['generate_p50_ms']:.0f} ms, p99 {res['generate_p99_ms']:.0f} ms)")
    print(f"throughput: {res['rps']:.1f} requests/s ({res['wall_s']:.1f} s wall)")
    if args.json:
        print(json.dumps(res))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
