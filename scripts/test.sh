#!/usr/bin/env bash
# Run the test suite (installing whatever is missing first): lint, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
.venv/bin/ruff check harness tests benchmarks
.venv/bin/python -m pytest -q "$@"
