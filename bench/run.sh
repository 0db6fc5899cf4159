#!/usr/bin/env bash
# make bench: runs every bench/bench_*.py, each in its own virtual environment under bench/.work/
# holding its peers (MLflow, Feast, DuckDB, onnxruntime, ...) from bench/requirements-<name>.txt.
# Peers never enter Keel's own dependencies. Usage: bench/run.sh [NAME ...] (default: all).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"

names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for f in bench/bench_*.py; do n=${f#bench/bench_}; names+=("${n%.py}"); done
fi

for name in "${names[@]}"; do
  venv="bench/.work/venv-$name"
  reqs="bench/requirements-$name.txt"
  if [ ! -x "$venv/bin/python" ]; then
    # System site-packages give Keel's own deps (numpy, pandas); the venv adds only the peers.
    "$PYTHON" -m venv --system-site-packages "$venv"
  fi
  if [ -f "$reqs" ] && ! cmp -s "$reqs" "$venv/.installed" 2>/dev/null; then
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$reqs"
    cp "$reqs" "$venv/.installed"
  fi
  echo "== bench_$name"
  "$venv/bin/python" "bench/bench_$name.py"
done
