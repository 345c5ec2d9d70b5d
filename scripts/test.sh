#!/usr/bin/env bash
# Run the test suite (installing whatever is missing first): lint, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
.venv/bin/ruff check harness tests benchmarks
# a private one-node Slurm for tests/test_slurm.py (they skip, saying why, when it cannot start);
# stopped again at the end unless it was already running
slurm_started=""
if ! scripts/slurm-local.sh status >/dev/null 2>&1; then
  if scripts/slurm-local.sh start; then slurm_started=1; else echo "test: no local Slurm; its tests will skip"; fi
fi
[ -n "$slurm_started" ] && trap 'scripts/slurm-local.sh stop >/dev/null' EXIT
eval "$(scripts/slurm-local.sh env)"
.venv/bin/python -m pytest -q "$@"
