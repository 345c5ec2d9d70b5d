#!/usr/bin/env bash
# One GPU, at most 8 minutes: what the CPU tests cannot prove (harness/benchmarking/gpu_check.py).
#   benchmarks/gpu_check.sh                 # on a machine with one CUDA GPU
#   benchmarks/gpu_check.sh --dry-run       # every check, tiny, on the CPU (the script's test)
#   benchmarks/gpu_check.sh --only steps,nccl --out DIR
# Writes one Markdown table to DIR/gpu_check.md (default benchmarks/results/) and stdout;
# exit status 1 if a check failed, 124 if it ran past 8 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
exec timeout --signal=TERM 480 "$PY" -m harness.benchmarking.gpu_check "$@"
