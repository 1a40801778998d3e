"""How long reading a training text and turning it into ids takes (what a training does before its first line).

    .venv/bin/python bench/corpus_ids.py BIG.txt [--src OLD/src] [--repeat 2]

``--src`` takes charlm from another source tree (e.g. ``git archive REV src | tar -x -C OLD``), to compare.
"""

import argparse
import sys
import time

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("file")
ap.add_argument("--src", default=None, help="a charlm source tree to import instead of the installed one")
ap.add_argument("--repeat", type=int, default=2)
args = ap.parse_args()
if args.src:
    sys.path.insert(0, args.src)

from charlm.config import TrainConfig  # noqa: E402
from charlm.data import load_corpus  # noqa: E402

for _ in range(args.repeat):
    start = time.perf_counter()
    corpus = load_corpus(TrainConfig(data=args.file))
    read = time.perf_counter()
    ids, (val, _) = corpus.train_ids, corpus.val_ids()
    done = time.perf_counter()
    print(f"{args.file}: {corpus.total_chars:,} characters, vocabulary {len(corpus.vocab):,}: read and split {read - start:.2f} s, "
          f"ids {done - read:.2f} s ({ids.numel():,} + {val.numel():,})", flush=True)
