"""Sweeps: many runs (recipes x seeds) that survive interruption, lose nothing and go on past failures.

`harness sweep` takes recipe paths, globs and/or a sweep file (format in docs/sweeps.md):

    seeds: [0, 1, 2]                        # default seeds of every entry
    overrides: ["runtime.device=cuda"]      # --set overrides of every entry
    recipes:
      - ../recipes/cifar100/resnet18_ce.yaml          # path or glob, relative to this file
      - path: ../recipes/cifar100/resnet18_tfkd_reg.yaml
        seeds: [0]                                    # this entry's seeds
        overrides: ["optim.lr=0.05"]                  # after the global overrides

and expands it into runs, each identified like any run by its resolved recipe and seed
(`Recipe.run_id`). For each run, in order: a completed run is skipped; one that diverged before
is reported, not retried (it would diverge again); one locked by another process is reported
`busy` (never waited for, never run twice); every other run (new, interrupted, failed, killed)
is trained or resumed from its last checkpoint.

Each run trains in its own worker process (`python -m harness.sweeps.worker SPEC RESULT`), for
isolation: an out-of-memory kill, a segfault or a hung CUDA context ends that run only, GPU memory
is returned between runs, and torch's process-wide state (seeds, deterministic-algorithm flags,
cuDNN settings, compiled graphs) cannot leak from one run into the next. The worker calls the
same `lifecycle.train` as `harness run --resume` and reports its outcome in a small JSON file, so
the sweep knows exactly whether a run trained, was found complete, was busy, diverged or failed
(with the error). A process start costs a few seconds, nothing next to a GPU run.

SIGTERM or SIGINT to the sweep is forwarded to the running worker as SIGTERM: the run stops at the
next step boundary, checkpoints and is marked interrupted; the sweep then starts nothing more,
writes its summary and exits 130. On Linux a worker also receives SIGTERM if the sweep itself is
killed (`kill -9`), so it still checkpoints. The summary (`<runs-dir>/sweeps/<sweep id>.json`,
one file per invocation, rewritten atomically after every run) says what ran, what was skipped,
what failed (with the error) and what was busy; the exit status is 0 when every run is complete,
1 when any failed or diverged, 130 when interrupted, 2 for bad input.

This module runs a sweep: `run_sweep` writes the summary, hands the runs to an executor
(`executor_for`: one run after another, `--jobs N` slots, or Slurm) and regenerates the
leaderboard. May import every other module of `harness.sweeps`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import RecipeError
from harness.sweeps.executor import Executor, SweepOptions, regenerate_leaderboard
from harness.sweeps.local import SerialExecutor, SlotsExecutor
from harness.sweeps.plan import PlannedRun, with_teacher_runs
from harness.sweeps.summary import RunRecord, SweepSummary, new_sweep_id

if TYPE_CHECKING:
    from harness.sweeps.slurm.executor import SlurmOptions


def executor_for(options: SweepOptions, slurm: SlurmOptions | None = None) -> Executor:
    """The sweep's executor: Slurm when `slurm` is given, else `options.jobs` local slots when more
    than one, else one run after another."""
    if slurm is not None:
        from harness.sweeps.slurm.executor import SlurmExecutor  # loads submitit

        return SlurmExecutor(options, slurm)
    if options.jobs > 1:
        return SlotsExecutor(options)
    return SerialExecutor(options)


def start_summary(runs: list[PlannedRun], runs_dir: Path, options: SweepOptions) -> SweepSummary:
    """Refuse a sweep with a bad recipe (unless keep_going), then write its summary, every run
    listed, to RUNS_DIR/sweeps/ before anything trains or is submitted (every executor)."""
    if not options.keep_going:
        bad = next((r for r in runs if r.error), None)
        if bad is not None:
            raise RecipeError(bad.error or "")
    runs_dir.mkdir(parents=True, exist_ok=True)
    sweep_id = new_sweep_id()
    summary = SweepSummary(sweep_id=sweep_id, runs_dir=str(runs_dir), command=sys.argv, started=time.time())
    summary.path = runs_dir / "sweeps" / f"sweep-{sweep_id}.json"
    summary.runs = [
        RunRecord(
            r.run_id,
            str(r.recipe_path),
            r.seed,
            list(r.overrides),
            r.group,
            error=r.error,
            teacher_of=r.teacher_of,
        )
        for r in runs
    ]
    summary.save()
    return summary


def run_sweep(
    runs: list[PlannedRun],
    runs_dir: Path | str,
    options: SweepOptions | None = None,
    executor: Executor | None = None,
) -> SweepSummary:
    """Run (or skip, or resume, or submit) every planned run, and the teacher runs they will train
    (`with_teacher_runs`), with `executor` (default: `executor_for(options)`), then regenerate the
    leaderboard."""
    options = options or SweepOptions()
    executor = executor or executor_for(options)
    runs_dir = Path(runs_dir).resolve()
    runs = with_teacher_runs(runs, runs_dir)
    summary = start_summary(runs, runs_dir, options)
    executor.run(runs, summary)
    if options.leaderboard and not summary.interrupted and not summary.leaderboard:
        summary.leaderboard = regenerate_leaderboard(runs_dir, options.leaderboard_dir(runs_dir))
    summary.finished = time.time()
    summary.save()
    return summary
