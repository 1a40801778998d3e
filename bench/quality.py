"""Held-out quality, each figure measured by charlm's own `charlm eval`.

    .venv/bin/python bench/quality.py jaychou [--preset jaychou] [--extra "--epochs 30"]
    .venv/bin/python bench/quality.py shakespeare --preset shakespeare-cpu
    .venv/bin/python bench/quality.py copies RUN_DIR [--samples 50]

`jaychou` trains a preset on the bundled lyrics (the last 10% held out, vocabulary of the
whole file, 2,583 characters), writes the held-out text to a file and scores it with
`charlm eval`: static perplexity, the state carried over the whole held-out text, no
adaptation.  `shakespeare` does the same on ../shared/data/tinyshakespeare.txt with
nanoGPT's split (first 90% / last 10%, vocabulary 65) and reports nats per character.
`copies` samples 200-character lyrics at the default settings and reports the
distribution of the longest span copied from the training text.
"""

from __future__ import annotations

import argparse
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CHARLM = [sys.executable, "-m", "charlm"]


def run(cmd: list[str]) -> str:
    print("$ " + " ".join(shlex.quote(str(c)) for c in cmd), flush=True)
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
    return r.stdout + r.stderr


def heldout_file(data: Path, out: Path, newlines: str = "keep") -> Path:
    from charlm.data import normalize, read_text, split

    text = normalize(read_text(data), newlines)
    _, val = split(text, 0.1)
    out.mkdir(parents=True, exist_ok=True)
    f = out / "heldout.txt"
    f.write_text(val, encoding="utf-8")
    return f


def train_and_eval(preset: str, data: Path | None, out: Path, extra: str) -> None:
    t0 = time.time()
    cmd = CHARLM + ["train", "--preset", preset, "--out", out] + (["--data", data] if data else []) + shlex.split(extra)
    log = run(cmd)
    minutes = (time.time() - t0) / 60
    print("\n".join(line for line in log.splitlines() if line.startswith(("epoch", "held-out", "vocabulary", "corpus"))))
    held = heldout_file(data or ROOT / "src/charlm/corpus/jaychou_lyrics.txt", out)
    ev = run(CHARLM + ["eval", out / "best", held])
    print(ev)
    loss = float(re.search(r"loss: ([\d.]+)", ev).group(1))
    ppl = float(re.search(r"perplexity: ([\d.]+)", ev).group(1))
    print(f"RESULT preset={preset} train+eval wall {minutes:.1f} min; held-out loss {loss:.4f} nats/char, perplexity {ppl:.2f}")


def copies(run_dir: Path, samples: int) -> None:
    out = run(CHARLM + ["generate", run_dir, "--prefix", "分开", "--length", "200", "--num-samples", str(samples),
                        "--seed", "0", "--check-copy"])
    spans = [int(m) for m in re.findall(r"training text (\d+) characters", out)]
    q = statistics.quantiles(spans, n=4)
    print(f"RESULT longest copied span over {len(spans)} samples of 200 characters: median {statistics.median(spans):g}, "
          f"quartiles {q[0]:g}/{q[2]:g}, max {max(spans)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("jaychou", "shakespeare", "copies"))
    ap.add_argument("run", nargs="?", help="copies: the run folder to sample from")
    ap.add_argument("--preset", default=None)
    ap.add_argument("--extra", default="", help="more flags for charlm train")
    ap.add_argument("--out", default=None)
    ap.add_argument("--samples", type=int, default=50)
    a = ap.parse_args()
    if a.what == "copies":
        copies(Path(a.run), a.samples)
    elif a.what == "jaychou":
        train_and_eval(a.preset or "jaychou", None, Path(a.out or "/tmp/charlm-quality-jaychou"), a.extra)
    else:
        train_and_eval(a.preset or "shakespeare-cpu", SHARED / "tinyshakespeare.txt", Path(a.out or "/tmp/charlm-quality-shakespeare"), a.extra)


if __name__ == "__main__":
    main()
