#!/usr/bin/env bash
# Run the test suite (installing whatever is missing first): lint, then pytest.
#   scripts/test.sh            every test (what CI and the README run)
#   scripts/test.sh --quick    the tests not marked slow, without the private Slurm (its tests are slow)
# Any other argument goes to pytest: scripts/test.sh --quick tests/strategies -x
set -euo pipefail
cd "$(dirname "$0")/.."
quick=""
args=()
for arg in "$@"; do
  if [ "$arg" = "--quick" ]; then quick=1; else args+=("$arg"); fi
done
scripts/setup.sh --test
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
.venv/bin/ruff check harness tests benchmarks
if [ -n "$quick" ]; then
  exec .venv/bin/python -m pytest -q -m "not slow" ${args[@]+"${args[@]}"}
fi
# a private one-node Slurm for tests/sweeps/test_slurm.py (they skip, saying why, when it cannot
# start); stopped again at the end unless it was already running
slurm_started=""
if ! scripts/slurm-local.sh status >/dev/null 2>&1; then
  if scripts/slurm-local.sh start; then slurm_started=1; else echo "test: no local Slurm; its tests will skip"; fi
fi
[ -n "$slurm_started" ] && trap 'scripts/slurm-local.sh stop >/dev/null' EXIT
eval "$(scripts/slurm-local.sh env)"
.venv/bin/python -m pytest -q ${args[@]+"${args[@]}"}
