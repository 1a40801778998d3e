#!/usr/bin/env bash
# Tiny Shakespeare on one GPU, each run then scored by `charlm eval` on nanoGPT's validation split
# (the last 10%): first `shakespeare-gpu` (the CPU recipe measured at 1.442, on the GPU: under a
# minute), then `shakespeare-gpu-large` (3x1024, at most 5 minutes of training).
# One device call of about 7 minutes; runs the package from src/ and installs nothing.
#
#   bash bench/gpu_quality.sh          # Tiny Shakespeare read from .benchdata/ (carry the folder)
#   PRESETS=shakespeare-gpu bash bench/gpu_quality.sh      # only the first
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-/tmp/charlm-gpu-quality}
DATA=${DATA:-.benchdata/tinyshakespeare.txt}
PRESETS=${PRESETS:-shakespeare-gpu shakespeare-gpu-large}
mkdir -p "$OUT"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null
status=0
for p in $PRESETS; do
    echo "== $p"
    "$PYTHON" bench/quality.py shakespeare --preset "$p" --data "$DATA" --out "$OUT/$p" --device cuda 2>&1 \
        | tee "$OUT/$p.log" | grep -v '^ - ' || status=1
done
exit $status
