#!/usr/bin/env bash
# The speed issue's GPU set in one go, in under 5 minutes on one H200: correctness checks (graph ==
# eager for training and for generation, bf16/fp16 vs fp32, resume with a graph and with fp16), the speed table against the seed's loop, torch.compile,
# then the DDP overhead check (bench/ddp_gpu.sh) if it is there.  Runs the package from src/ and
# installs nothing; Tiny Shakespeare is read from .benchdata/ (copy it there and carry the folder).
#
#   bash bench/gpu.sh                  # on the GPU machine; logs in $OUT (default /tmp/charlm-gpu)
#   DEVICE=cpu bash bench/gpu.sh       # the same scripts at toy sizes on the CPU, to check them end to end
#
# Each section runs on its own under `timeout` (a failure or a time-out in one does not stop the
# others) and within BUDGET seconds in all (default 320); full logs go to $OUT/*.log, and a compact
# table is printed last.
set -u
cd "$(dirname "$0")/.."

DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python3}
OUT=${OUT:-/tmp/charlm-gpu}
BUDGET=${BUDGET:-320}
DATA=${DATA:-.benchdata/tinyshakespeare.txt}
mkdir -p "$OUT"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
SMOKE=()
SECTIONS=()
[ "$DEVICE" = cpu ] && SMOKE=(--smoke) && SECTIONS=(--sections gpu-seed,gpu-large,gen)  # the GPU sections, at toy sizes
STATUS=()

section() {  # name, seconds wanted, command...: run it time-boxed within what is left of BUDGET
    local name=$1 want=$2; shift 2
    local left=$((BUDGET - SECONDS))
    local t=$((left < want ? left : want))
    if [ "$t" -lt 15 ]; then
        STATUS+=("$name: skipped, ${left} s left of the budget"); echo "== $name: skipped"; return
    fi
    echo "== $name (up to ${t} s) at ${SECONDS} s"
    local t0=$SECONDS
    timeout "$t" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    local how="rc $rc"; [ $rc -eq 124 ] && how="timed out"
    STATUS+=("$name: $how, $((SECONDS - t0)) s")
    tail -n 3 "$OUT/$name.log"
}

{
    date -u; nproc; lscpu | grep 'Model name' || true
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv 2>/dev/null || echo "no nvidia-smi"
    "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU', 'threads', torch.get_num_threads())"
} >"$OUT/env.log" 2>&1
cat "$OUT/env.log"

section checks 90 "$PYTHON" bench/gpu_checks.py --device "$DEVICE" --data "$DATA" --json "$OUT/checks.json" "${SMOKE[@]}"
section speed 150 "$PYTHON" bench/speed.py --device "$DEVICE" --data "$DATA" --json "$OUT/speed.json" "${SMOKE[@]}" "${SECTIONS[@]}"
if [ "$DEVICE" != cpu ]; then  # compiling on a small CPU takes minutes: the GPU machine only
    section compile $((BUDGET - SECONDS - 65)) "$PYTHON" bench/speed.py --device "$DEVICE" --sections compile --json "$OUT/compile.json"
fi
if [ -f bench/ddp_gpu.sh ]; then
    section ddp 60 env DEVICE="$DEVICE" bash bench/ddp_gpu.sh
fi

echo
echo "== summary (${SECONDS} s; logs in $OUT)"
printf '%s\n' "${STATUS[@]}"
grep -h -E '^(PASS|FAIL)' "$OUT/checks.log" 2>/dev/null | cut -c1-220
sed -n '/^== table/,$p' "$OUT/speed.log" 2>/dev/null | tail -n +2
grep -h -E '^\| compile|torch.compile /' "$OUT/compile.log" 2>/dev/null
tail -n 3 "$OUT/ddp.log" 2>/dev/null
