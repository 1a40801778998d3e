#!/usr/bin/env bash
# Tiny Shakespeare on one GPU, each run then scored by `charlm eval` on nanoGPT's validation split
# (the last 10%): first `shakespeare-gpu` (the CPU recipe measured at 1.442, on the GPU: under a
# minute), then `shakespeare-gpu-large` (3x1024, at most 5 minutes of training).
# One device call of about 7 minutes (the two time-outs add up to 580 s, within a call's 600); runs the package
# from src/ and installs nothing.
#
#   mkdir -p .benchdata && cp ../shared/data/tinyshakespeare.txt .benchdata/   # once; carry the folder
#   bash bench/gpu_quality.sh
#   PRESETS=shakespeare-gpu bash bench/gpu_quality.sh      # only the first
#
# Logs go to $OUT (the device tool's folder that comes back: a log per preset); the run folders, whose
# checkpoints are far too big to bring back, to $RUNS.  Each preset runs under `timeout` (its training
# stops itself at 5 minutes; validations are not counted in that), and the exit status is 1 if any failed.
set -u -o pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-/tmp/charlm-gpu-quality}
RUNS=${RUNS:-/tmp/charlm-gpu-quality-runs}
DATA=${DATA:-.benchdata/tinyshakespeare.txt}
PRESETS=${PRESETS:-shakespeare-gpu shakespeare-gpu-large}
mkdir -p "$OUT" "$RUNS"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null
status=0
for p in $PRESETS; do
    case $p in *large*) t=${TIMEOUT_LARGE:-460} ;; *) t=${TIMEOUT:-120} ;; esac
    echo "== $p (up to $t s)"
    timeout "$t" "$PYTHON" bench/quality.py shakespeare --preset "$p" --data "$DATA" --out "$RUNS/$p" --device cuda 2>&1 \
        | tee "$OUT/$p.log" | grep -v '^ - '
    rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || { status=1; echo "== $p: $([ "$rc" -eq 124 ] && echo "timed out after $t s" || echo "failed, rc $rc")"; }
done
exit $status
