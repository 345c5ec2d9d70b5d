"""benchmarks/gpu_check.sh runs every check end to end with --dry-run (tiny, on the CPU)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.recipes import REPO

pytestmark = pytest.mark.slow


@pytest.mark.ffcv
@pytest.mark.timeout(600)
def test_gpu_check_dry_run_writes_one_table(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--dry-run", "--out", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=590,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = (tmp_path / "gpu_check.md").read_text()
    assert table.startswith("## GPU check (") and "DRY RUN on CPU" in table
    lines = {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines() if line.startswith("| ")}
    for check in (
        "steps: eager fp32",
        "steps: bf16 + channels_last + compile",
        "steps: speed-up over eager fp32",
        "peak GPU memory / step: eager fp32",
        "ffcv loader, RRC to 32 px",
        "ffcv KD live / ffcv CE",
        "ffcv KD cached / ffcv CE",
        "cache build: teacher forwards per view",
        "cached KD run equals live KD run",
        "harness run --nproc 1 (DDP, 1 rank)",
    ):
        assert check in lines, (check, table)
    assert "| yes |" in lines["cached KD run equals live KD run"]
    assert "| yes |" in lines["cache build: teacher forwards per view"]
    assert "backend gloo" in lines["harness run --nproc 1 (DDP, 1 rank)"]
    assert "FAILED" not in table and "| NO |" not in table
