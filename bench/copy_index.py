"""How long the copy check's index takes to build, how much memory it takes, and what one check costs.

    .venv/bin/python bench/copy_index.py FILE [FILE ...] [--module PATH]

For each file (its first 90%, as a training split), in a fresh process so that peak memory is its own:
the seconds to build `CopyIndex`, the milliseconds to check a 200-character sample (100 samples: windows
of the text with every 7th character replaced, so spans end inside the sample), the seconds to check one sample
that copies 4,000 characters and then writes 4,000 of its own (random characters of the text's alphabet), and
the process's peak RSS.
`--module` loads `CopyIndex` from another file instead, e.g. an older copycheck.py taken with `git show`,
so that two versions are measured in one run on the same machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import resource
import subprocess
import sys
import time
from pathlib import Path


def measure(path: str, module: str | None) -> str:
    if module:
        spec = importlib.util.spec_from_file_location("copycheck_under_test", module)
        mod = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # dataclasses look their module up
        spec.loader.exec_module(mod)
        CopyIndex = mod.CopyIndex
    else:
        from charlm.copycheck import CopyIndex
    with open(path, encoding="utf-8") as f:
        text = f.read()
    text = text[: int(len(text) * 0.9)]
    t = time.perf_counter()
    index = CopyIndex(text)
    build = time.perf_counter() - t
    rng = random.Random(0)
    samples = []
    for _ in range(100):
        chars = list(text[(i := rng.randrange(len(text) - 200)) : i + 200])
        for k in range(0, 200, 7):
            chars[k] = rng.choice(text)
        samples.append("".join(chars))
    t = time.perf_counter()
    longest = [index.check(s).longest for s in samples]
    check = (time.perf_counter() - t) / len(samples)
    alphabet = sorted(set(text) - {"\n"})
    long = text[len(text) // 3 : len(text) // 3 + 4000] + "".join(rng.choice(alphabet) for _ in range(4000))
    t = time.perf_counter()
    index.check(long)
    long_check = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return (f"{path}: {len(text):,} characters, build {build:.2f} s, check {check * 1e3:.2f} ms per 200 characters, "
            f"{long_check:.3f} s for 4,000 copied then 4,000 new, peak RSS {rss:,.0f} MB (longest spans summed: {sum(longest)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--module", help="a copycheck.py to take CopyIndex from (default: the installed charlm)")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # the child process
    a = ap.parse_args()
    missing = [f for f in a.files + ([a.module] if a.module else []) if not Path(f).is_file()]
    if missing:
        sys.exit(f"copy_index.py: no such file: {missing[0]}")
    if a.one:
        print(measure(a.files[0], a.module), flush=True)
        return
    for path in a.files:  # one process each: ru_maxrss is the peak of the whole process
        extra = ["--module", a.module] if a.module else []
        if subprocess.run([sys.executable, __file__, "--one", path, *extra]).returncode:
            sys.exit(f"copy_index.py: measuring {path} failed (above)")


if __name__ == "__main__":
    main()
