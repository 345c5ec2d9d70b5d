"""`--executor slurm`: `SlurmExecutor` submits every run that needs training as a Slurm job and
follows the jobs to their end, or, with `--no-wait`, returns at once and leaves a small job that
regenerates the leaderboard once they have ended.

May import the rest of `harness.sweeps.slurm` and the executors' shared `SweepOptions`.
"""

from __future__ import annotations

import logging
import signal
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.sweeps.executor import SweepOptions, regenerate_leaderboard
from harness.sweeps.plan import PlannedRun
from harness.sweeps.resources import SlurmResources
from harness.sweeps.slurm.scheduler import preflight, queue
from harness.sweeps.slurm.submission import StopFollowing, Tracked, follow, make_executor, submit_runs
from harness.sweeps.status import render_table
from harness.sweeps.summary import SweepSummary

log = logging.getLogger("harness")


@dataclass
class SlurmOptions:
    """How the Slurm executor submits and follows."""

    resources: SlurmResources
    wait: bool = True
    poll_s: float = 10.0


@dataclass
class SlurmExecutor:
    """One Slurm job per run (harness.sweeps.slurm), followed until the last one ends."""

    options: SweepOptions
    slurm: SlurmOptions

    def run(self, runs: list[PlannedRun], summary: SweepSummary) -> None:
        runs_dir = Path(summary.runs_dir)
        options, slurm = self.options, self.slurm
        preflight(slurm.resources)
        with StopFollowing() as stop:
            tracked = submit_runs(runs, runs_dir, options, slurm.resources, summary, stop)
            summary.save()
            if stop.signum:
                summary.interrupted = signal.Signals(stop.signum).name
            elif not slurm.wait:
                if options.leaderboard and tracked:
                    out = options.leaderboard_dir(runs_dir)
                    summary.leaderboard = _submit_leaderboard(
                        tracked, runs_dir, out, slurm.resources, summary.sweep_id
                    )
            elif tracked:
                print(
                    render_table(tracked, runs_dir, queue(), max(len(t.run.run_id) for t in tracked)),
                    file=sys.stderr,
                )
                follow(tracked, runs_dir, summary, stop, slurm.poll_s)
                if stop.signum:
                    summary.interrupted = signal.Signals(stop.signum).name
                    log.info(
                        "sweep: stopped following; the jobs go on (`harness sweep --status --runs-dir %s`)",
                        runs_dir,
                    )


def _submit_leaderboard(
    tracked: list[Tracked], runs_dir: Path, out: Path, resources: SlurmResources, sweep_id: str
) -> dict[str, Any]:
    """--no-wait: a small job that regenerates the leaderboard once every run's job has ended."""
    light = replace(
        resources,
        nodes=1,
        gpus_per_run=0,
        cpus_per_run=1,
        time="1:00:00",
        mem=None,
        constraint=None,
        sbatch=[],
    )
    ids = ":".join(t.job_id for t in tracked if t.job_id)
    executor = make_executor(
        runs_dir / "slurm" / sweep_id, light, "harness-leaderboard", dependency=f"afterany:{ids}"
    )
    job = executor.submit(regenerate_leaderboard, runs_dir, out)
    return {
        "status": "submitted",
        "out": str(out),
        "job_id": str(job.job_id),
        "reason": f"job {job.job_id} regenerates {out} once every run's job has ended",
    }
