"""The local executors' progress lines: which slot (and which CPU cores or GPU) a run went to."""

from __future__ import annotations

import logging

from harness.sweeps.executor import SweepOptions
from harness.sweeps.plan import plan_sweep
from harness.sweeps.sweep import run_sweep
from tests.support.recipes import tiny_recipe, write_recipe


def test_jobs_progress_lines_name_the_slot_and_its_cores(tmp_path, caplog):
    # two recipes that do not load: the slots settle them without a worker, in a blink
    paths = [write_recipe(tmp_path / f"{n}.yaml", tiny_recipe(optim={"lr": -1})) for n in ("a", "b")]
    runs = plan_sweep([str(p) for p in paths])
    options = SweepOptions(device="cpu", jobs=2, leaderboard=False)
    with caplog.at_level(logging.INFO, logger="harness"):
        summary = run_sweep(runs, tmp_path / "runs", options)
    assert [r.outcome for r in summary.runs] == ["failed", "failed"]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("sweep [")]
    assert len(lines) == 2 and not [line for line in lines if "{" in line], lines
    assert {line.split("(", 1)[1].split(",")[0] for line in lines} == {"slot 1/2", "slot 2/2"}, lines
    assert all(", cpu " in line or ", cpus " in line for line in lines), lines
