#!/usr/bin/env bash
# What data parallelism costs on one device: the same short training as a plain process and as a
# one-process torchrun job (DistributedDataParallel over NCCL on a GPU, gloo on the CPU).
#
#   bash bench/ddp_gpu.sh                 # on a GPU machine; runs the package from src/, installs nothing
#   DEVICE=cpu bash bench/ddp_gpu.sh      # CPU smoke test (gloo)
#
# Both runs train the seed's model (256-unit LSTM, batch 32 x 35) with no validation split, from the
# same seed; the figure is what charlm reports as chars/s for the training loop (metrics.jsonl), the
# median over the epochs after the first (a warm-up).  With one process DDP has nobody to average
# with, so the ratio is its bookkeeping (gradient hooks, one all-reduce per step) and nothing else.
# Settings: DEVICE (cuda), EPOCHS (GPU 10, CPU 3), LIMIT_CHARS (GPU 0 = the whole corpus, CPU 10000),
# PYTHON (python3), OMP_NUM_THREADS (1 for both runs, as torchrun would set it for one).
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python3}
if [ "$DEVICE" = cpu ]; then EPOCHS=${EPOCHS:-3}; LIMIT_CHARS=${LIMIT_CHARS:-10000}
else EPOCHS=${EPOCHS:-10}; LIMIT_CHARS=${LIMIT_CHARS:-0}; fi
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

ARGS=(train --preset seed --epochs "$EPOCHS" --limit-chars "$LIMIT_CHARS" --val-fraction 0 --device "$DEVICE"
      --sample-every 0 --sample-length 1)

run() {  # name, command...
    local name=$1; shift
    local t0=$SECONDS
    if ! "$@" "${ARGS[@]}" --out "$OUT/$name" >"$OUT/$name.log" 2>&1; then
        echo "$name run failed:"; tail -n 20 "$OUT/$name.log"; exit 1
    fi
    echo "$name: $((SECONDS - t0)) s wall"
}

"$PYTHON" -c "import torch; print(f'torch {torch.__version__}', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')"
run plain "$PYTHON" -m charlm
run torchrun "$PYTHON" -m torch.distributed.run --standalone --nproc-per-node 1 -m charlm
grep -h "data parallel" "$OUT/torchrun.log" || true

"$PYTHON" - "$OUT" "$DEVICE" <<'EOF'
import json, statistics, sys
from pathlib import Path

out, device = Path(sys.argv[1]), sys.argv[2]
def rate(name):
    recs = [json.loads(line) for line in (out / name / "metrics.jsonl").read_text().splitlines()]
    speeds = [r["chars_per_s"] for r in recs[1:]] or [recs[0]["chars_per_s"]]
    return statistics.median(speeds), recs[-1]["train_loss"]
(plain, lp), (ddp, ld) = rate("plain"), rate("torchrun")
backend = "nccl" if device.startswith("cuda") else "gloo"
print(f"plain process:              {plain:12,.0f} chars/s   (final train_loss {lp:.6f})")
print(f"torchrun, 1 process, {backend}: {ddp:12,.0f} chars/s   (final train_loss {ld:.6f})")
print(f"DDP / plain: {ddp / plain:.3f}  (overhead {100 * (plain / ddp - 1):+.1f}% time per character)")
EOF
