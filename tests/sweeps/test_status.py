"""`harness sweep status`: every run folder's state; the Slurm scheduler is asked (and a silent one
noted) only when some run of the folder was submitted to it."""

from __future__ import annotations

import json
import os
import stat

from click.testing import CliRunner

from harness.cli import main
from harness.store.rundir import RunDir
from harness.sweeps.slurm.scheduler import RECORD


def silent_squeue(folder):
    """A Slurm client on PATH whose controller does not answer (as on a machine without Slurm)."""
    folder.mkdir()
    squeue = folder / "squeue"
    squeue.write_text("#!/bin/sh\necho 'squeue: error: Unable to contact slurm controller' >&2\nexit 1\n")
    squeue.chmod(squeue.stat().st_mode | stat.S_IXUSR)
    return folder


def test_status_of_local_runs_says_nothing_of_slurm_and_notes_it_for_submitted_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{silent_squeue(tmp_path / 'bin')}{os.pathsep}{os.environ['PATH']}")
    runs = tmp_path / "runs"
    RunDir(runs, "local-s0-aaaa").write_status("completed", epoch=2)
    result = CliRunner().invoke(main, ["sweep", "status", str(runs)])
    assert result.exit_code == 0, result.output
    assert "local-s0-aaaa  completed" in result.output and "scheduler" not in result.output.split("\n", 1)[1]

    submitted = RunDir(runs, "slurm-s0-bbbb")
    submitted.write_status("interrupted", epoch=1)
    (submitted.root / RECORD).write_text(json.dumps({"job_id": "12_0"}))
    result = CliRunner().invoke(main, ["sweep", "status", str(runs)])
    assert result.exit_code == 0, result.output
    note = result.output.strip().splitlines()[-1]
    assert note.startswith("(scheduler not asked: squeue: the Slurm controller does not answer"), note
