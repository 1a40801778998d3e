#!/usr/bin/env bash
# The test suite with every dependency at the lowest version pyproject.toml allows (its ">=" floors), in a venv of
# its own: CI installs the newest, so a floor that no longer holds would go unseen.
#
#   bash bench/lowest.sh                        # torch 2.13.0 (the floor of torch is bench/oldtorch.sh's check)
#   TESTS=tests/test_serve.py bash bench/lowest.sh
#
# Needs PyPI.  matplotlib's floor, 3.5, has no wheel for Python 3.11 or later: there 3.6 stands in (said below).
# Made for Python 3.11: on 3.12 or later some floors (numpy 1.25) have no wheel either, and pip would try to build them.
# The venv goes in a temporary folder, removed at the end; the repository is installed editable from here.
set -euo pipefail
PYTHON=${PYTHON:-python3}
TORCH=${TORCH:-torch==2.13.0}
TESTS=${TESTS:-}
here=$(cd "$(dirname "$0")/.." >/dev/null && pwd)
venv=$(mktemp -d)/venv
trap 'rm -rf "$(dirname "$venv")"' EXIT

"$PYTHON" -m venv "$venv"
# the floors, pinned: "name>=x" becomes the first release at or after x ("regex>=2023": 2023.3.22), torch as given
# (the test extra's tools are left free)
"$venv/bin/python" - "$here/pyproject.toml" "$venv/bin/pip" > "$venv/constraints.txt" <<'EOF'
import re, subprocess, sys, tomllib
from pip._vendor.packaging.version import InvalidVersion, Version

deps = tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]
for d in deps:
    m = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9.]*)", d.strip())
    if not m:
        sys.exit(f"lowest.sh: cannot read a floor from {d!r}")
    name, floor = m[1], Version(m[2])
    if name == "torch":
        continue
    if name == "matplotlib" and sys.version_info >= (3, 11) and floor < Version("3.6"):
        print(f"lowest.sh: matplotlib {floor} has no wheel for Python {sys.version_info.major}.{sys.version_info.minor}: 3.6 stands in",
              file=sys.stderr)
        floor = Version("3.6")
    listed = subprocess.run([sys.argv[2], "index", "versions", name], capture_output=True, text=True).stdout
    found = re.search(r"Available versions: (.*)", listed)
    if not found:
        sys.exit(f"lowest.sh: pip lists no versions of {name}")
    versions = []
    for v in found[1].split(", "):
        try:
            versions.append(Version(v))
        except InvalidVersion:
            pass
    lowest = min((v for v in versions if v >= floor and not v.is_prerelease), default=None)
    if lowest is None:
        sys.exit(f"lowest.sh: no release of {name} at or after {floor}")
    print(f"{name}=={lowest}")
EOF
start=$(date +%s)
"$venv/bin/pip" install -q "$TORCH"
echo "$TORCH" >> "$venv/constraints.txt"
"$venv/bin/pip" install -q -c "$venv/constraints.txt" -e "$here[test]"
echo "install: $(( $(date +%s) - start )) s"
"$venv/bin/pip" freeze | { grep -iE "^($(sed 's/==.*//' "$venv/constraints.txt" | paste -sd'|'))==" || true; } | paste -sd' '
cd "$here"
# -o addopts= : pyproject's -q and this -q would make -qq, which drops the summary line; -rs lists why each skip
# shellcheck disable=SC2086  # TESTS: test paths, split on spaces
nice "$venv/bin/python" -m pytest -p no:cacheprovider -q -rs -o addopts= $TESTS
