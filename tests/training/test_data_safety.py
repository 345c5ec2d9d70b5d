"""Nothing that fails rewrites an earlier, good file; environment faults are one line.

Real runs of the tiny recipe: a run whose epoch 2 diverges leaves a finished epoch 1 (its metrics
row and last.pt) to resume from; file-size limits and a regular file in place of the runs folder
are real faults of the operating system.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.config import load_recipe
from harness.errors import DivergedError
from harness.store.metrics_file import read_metrics
from harness.training.lifecycle import train
from harness.training.loop import RunOptions
from tests.support.recipes import REPO, SMALL, run_cli, tiny_recipe, write_recipe

pytestmark = pytest.mark.fashion


def one_line_error(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.fixture(scope="module")
def epoch_one_run(tmp_path_factory) -> tuple[Path, Path]:
    """(recipe, run folder) of a run with epoch 1 finished (a metrics row, last.pt at epoch 1)."""
    root = tmp_path_factory.mktemp("safety")
    # epoch 1 trains at lr 0.05; the step schedule multiplies it by 1e8 for epoch 2: diverged
    path = write_recipe(
        root / "recipes" / "safety.yaml",
        tiny_recipe(data=SMALL, schedule={"epochs": 2, "name": "step", "decay_epochs": 1, "decay_rate": 1e8}),
    )
    with pytest.raises(DivergedError):
        train(load_recipe(path), root / "runs", RunOptions(progress=False))
    run = root / "runs" / load_recipe(path).run_id
    assert [r["epoch"] for r in read_metrics(run / "metrics.parquet")] == [1]
    return path, run


@pytest.mark.slow
def test_failed_resume_changes_no_file_and_a_resume_says_running_at_once(epoch_one_run, tmp_path):
    path, original = epoch_one_run
    runs_dir = tmp_path / "runs"
    run = runs_dir / original.name
    shutil.copytree(original, run)
    last = run / "checkpoints" / "last.pt"
    good = last.read_bytes()
    last.write_bytes(good[: len(good) // 2])  # a truncated checkpoint
    stale = run / "checkpoints" / ".last.pt.k3j2h1.tmp"  # what a kill -9 mid-write leaves
    stale.write_bytes(b"\0" * 4096)
    before = {p.name: p.read_bytes() for p in (run / "metrics.parquet", last)}

    proc = run_cli("run", str(path), "--runs-dir", str(runs_dir), "--resume")
    assert proc.returncode == 2
    assert "not a readable checkpoint" in one_line_error(proc.stderr)
    assert {p.name: p.read_bytes() for p in (run / "metrics.parquet", last)} == before
    assert len(read_metrics(run / "metrics.parquet")) == 1
    assert json.loads((run / "status.json").read_text())["status"] == "failed"
    assert not stale.exists()  # cleaned by the process that took the run's lock

    # a good checkpoint: the resumed run says `running` while it trains epoch 2 (it then diverges)
    last.write_bytes(good)
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", str(path), "--runs-dir", str(runs_dir), "--resume"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = []
    while proc.poll() is None:
        try:
            seen.append(json.loads((run / "status.json").read_text())["status"])
        except (OSError, ValueError):
            pass
        time.sleep(0.002)
    proc.communicate()
    assert "running" in seen, seen
    assert json.loads((run / "status.json").read_text())["status"] == "diverged"


def _limit_file_size(limit: int):
    def apply() -> None:  # Python ignores SIGXFSZ: a write past the limit is an OSError (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_write_the_disk_refuses_is_one_line_and_keeps_earlier_files(recipe_file, runs_dir):
    path = recipe_file("fault", data=SMALL)
    run = runs_dir / load_recipe(path).run_id
    # the recipe, status and metrics files fit under 64 KiB; a checkpoint of test_resnet does not
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", str(path), "--runs-dir", str(runs_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=_limit_file_size(64 * 1024),
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.returncode == 74
    line = one_line_error(proc.stderr)
    assert line.endswith("checkpoints/last.pt: File too large (errno 27)"), line
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "failed" and "File too large" in status["error"]
    rows = read_metrics(run / "metrics.parquet")  # epoch 1's row, written before the checkpoint
    assert [(r["epoch"], r["status"]) for r in rows] == [(1, "failed")]
    assert not list((run / "checkpoints").glob(".*.tmp"))


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_runs_folder_under_a_regular_file_is_one_line(recipe_file, tmp_path, command):
    path = recipe_file("fault", data=SMALL)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a regular file\n")
    proc = run_cli(command, str(path), "--runs-dir", str(blocker / "runs"))
    assert proc.returncode != 0
    assert "not-a-folder" in one_line_error(proc.stderr)
    assert blocker.read_text() == "a regular file\n"
