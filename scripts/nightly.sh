#!/usr/bin/env bash
# The nightly benchmark: run a sweep file as tonight's runs, compare with the previous night.
#   scripts/nightly.sh SWEEP.yaml [harness nightly options]
#   scripts/nightly.sh sweeps/nightly_gpu.yaml --root /data/harness-nightly --report nightly-report.md
# Exit status: 0 all runs completed and nothing regressed, 1 a regression or a failed run (see the
# report), 130 interrupted (run it again the same night to resume), 2 bad input. Rules and layout:
# docs/sweeps.md. Run scripts/setup.sh once before (the scheduled workflow does).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
  echo "usage: scripts/nightly.sh SWEEP.yaml [harness nightly options]" >&2
  exit 2
fi
PYTHON=${HARNESS_PYTHON:-.venv/bin/python}
# exec: the job's signals (cancellation, time-out, pre-emption) reach harness directly
exec "$PYTHON" -m harness nightly "$@"
