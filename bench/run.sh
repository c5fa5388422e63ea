#!/usr/bin/env bash
# Run every benchmark in bench/ (each makes its anchors' virtual environments under
# bench/.envs/ and writes bench/results/<name>.json), then refresh the README's table.
set -euo pipefail
cd "$(dirname "$0")/.."
shopt -s nullglob
for b in bench/bench_*.py; do
  echo "== $b"
  .venv/bin/python "$b"
done
.venv/bin/python bench/report.py
