#!/usr/bin/env bash
# Tiny Shakespeare on one GPU with the shakespeare-gpu preset (at most 5 minutes of training), then
# the validation loss measured by `charlm eval` on nanoGPT's validation split (the last 10%).
# One device call of about 7 minutes; runs the package from src/ and installs nothing.
#
#   bash bench/gpu_quality.sh          # Tiny Shakespeare read from .benchdata/ (carry the folder)
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-/tmp/charlm-gpu-quality}
DATA=${DATA:-.benchdata/tinyshakespeare.txt}
mkdir -p "$OUT"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null
"$PYTHON" bench/quality.py shakespeare --preset shakespeare-gpu --data "$DATA" --out "$OUT/run" --device cuda 2>&1 | tee "$OUT/quality.log" | grep -v '^ - '
