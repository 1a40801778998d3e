#!/usr/bin/env bash
# The test suite on the oldest PyTorch that pyproject.toml allows (torch>=2.2), in a venv of its own.
#
#   bash bench/oldtorch.sh                      # torch 2.2.*, NumPy 1 (2.2 was built for NumPy 1)
#   TORCH_SPEC="torch==2.3.*" bash bench/oldtorch.sh
#
# Needs the network (PyPI's torch 2.2 for Linux pulls its CUDA 12.1 libraries, about 2.5 GB; it runs on the CPU),
# and a Python torch 2.2 has wheels for: 3.10 to 3.12 (PYTHON=python3.11 where python3 is newer).
# The venv goes in a temporary folder, removed at the end; the repository is installed editable from here.
set -euo pipefail
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.2.*}
NUMPY_SPEC=${NUMPY_SPEC:-numpy<2}
here=$(cd "$(dirname "$0")/.." >/dev/null && pwd)
venv=$(mktemp -d)/venv
trap 'rm -rf "$(dirname "$venv")"' EXIT

"$PYTHON" -m venv "$venv"
start=$(date +%s)
"$venv/bin/pip" install -q "$TORCH_SPEC" "$NUMPY_SPEC"
printf '%s\n' "$TORCH_SPEC" "$NUMPY_SPEC" > "$venv/constraints.txt"  # so that installing charlm moves neither
"$venv/bin/pip" install -q -c "$venv/constraints.txt" -e "$here[test]"
echo "install: $(( $(date +%s) - start )) s"
"$venv/bin/python" - <<'EOF'
import platform, numpy, torch
print(f"python {platform.python_version()}, torch {torch.__version__}, numpy {numpy.__version__}")
EOF
cd "$here"
# -o addopts= : pyproject's -q and this -q would make -qq, which drops the summary line; -rs lists why each skip
nice "$venv/bin/python" -m pytest -p no:cacheprovider -q -rs -o addopts=
