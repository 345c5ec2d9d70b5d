"""The triage of a sweep's run, the same under every executor: a run that does not load or whose
status is unreadable is `failed`, a completed one `skipped`, one that diverged before `diverged`
(not retried), one locked, claimed or scheduled by another process `busy`; every other run
(new, interrupted, failed, killed) trains or resumes. Also what a run's folder tells its record
afterwards, and a dead worker's `failed` status.

May import `harness.store`, `harness.data` (the data-file check, lazily), the plan, the summary
and the runs' Slurm records (`harness.sweeps.slurm.scheduler`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from harness.errors import HarnessError, RunStateError
from harness.store.files import FileLock, held_elsewhere
from harness.store.rundir import RunDir
from harness.sweeps.plan import PlannedRun
from harness.sweeps.slurm.scheduler import scheduled_elsewhere
from harness.sweeps.summary import RunRecord

DIVERGED_BEFORE = "diverged in an earlier sweep (retry it with `harness run RECIPE --restart`)"


def triage(run: PlannedRun, record: RunRecord, rundir: RunDir) -> dict[str, Any] | None:
    """The run's status when it still needs training; else None, with its record filled in (a
    recipe that does not load or an unreadable status: failed; completed: skipped; diverged
    before: diverged)."""
    if run.recipe is None:
        record.outcome, record.error = "failed", run.error
        return None
    try:
        status = rundir.read_status()
    except RunStateError as exc:
        record.outcome, record.error = "failed", str(exc)
        return None
    if status.get("status") == "completed":
        record_skipped(record, rundir, status)
        return None
    if status.get("status") == "diverged":
        fill_from_folder(record, rundir, status)
        record.outcome, record.earlier = "diverged", True
        record.error = DIVERGED_BEFORE
        return None
    return status


def record_skipped(record: RunRecord, rundir: RunDir, status: dict[str, Any]) -> None:
    """The run completed earlier: skipped, with its final metrics."""
    fill_from_folder(record, rundir, status)
    record.outcome, record.earlier = "skipped", True


def record_busy(record: RunRecord, status: dict[str, Any], error: str | None = None) -> None:
    """Another process has the run: busy (never waited for, never trained twice)."""
    record.outcome, record.status = "busy", status.get("status")
    if error is not None:
        record.error = error


def data_missing(run: PlannedRun, record: RunRecord) -> bool:
    """True (the record failed) when the run's data files are missing: a run that cannot start
    gets no folder (`harness run` checks the same)."""
    from harness.data.preflight import check_data_files

    assert run.recipe is not None
    try:
        check_data_files(run.recipe.data)
    except HarnessError as exc:
        record.outcome, record.error, record.exit_code = "failed", str(exc), exc.exit_code
        return True
    return False


@contextlib.contextmanager
def claim_to_train(rundir: RunDir, record: RunRecord, status: dict[str, Any]) -> Iterator[bool]:
    """Hold the run's claim while this sweep trains it; True when it may: the run did not complete
    meanwhile (else skipped) and no other process locks, claims or schedules it (else busy)."""
    with claim(rundir) as ours:
        if ours:  # the other sweep that held the claim may have just finished the run: look again
            status = rundir.read_status()
            if status.get("status") == "completed":
                record_skipped(record, rundir, status)
                ours = False
            elif rundir.locked_elsewhere():
                record_busy(record, status)
                ours = False
            elif (job := scheduled_elsewhere(rundir)) is not None:  # a Slurm sweep has a job for it
                record_busy(record, status, f"Slurm job {job} queued or running")
                ours = False
        else:
            record_busy(record, status)
        yield ours


def busy_elsewhere(rundir: RunDir) -> bool:
    """A local run or sweep has the run (its lock or its claim is held by another process)."""
    return rundir.locked_elsewhere() or held_elsewhere(rundir.sweep_lock)


@contextlib.contextmanager
def claim(rundir: RunDir) -> Iterator[bool]:
    """Hold `<run>/.sweep.lock` while this sweep's worker starts and trains the run (True if ours).

    The worker's own run lock (`<run>/.lock`) is the authority; this claim only lets a second
    sweep see the run busy at once, instead of starting a worker that would find it locked
    after seconds of start-up. The kernel releases it if the sweep dies (the descriptor is not
    inherited by the worker).
    """
    rundir.root.mkdir(parents=True, exist_ok=True)
    with FileLock(rundir.sweep_lock) as lock:
        yield lock.held


def fill_from_folder(record: RunRecord, rundir: RunDir, status: dict[str, Any]) -> None:
    """Final top-1, epoch and step of a run that finished before, from its folder."""
    record.status = status.get("status")
    record.epoch, record.step = status.get("epoch"), status.get("step")
    record.diverged_step = status.get("diverged_step")
    if rundir.metrics.exists():
        from harness.store.metrics_file import read_metrics

        with contextlib.suppress(Exception):
            rows = read_metrics(rundir.metrics)
            if rows:
                record.top1 = rows[-1]["top1"]


def mark_failed(rundir: RunDir, error: str) -> None:
    """Record a worker's death in its run folder (status `failed` with the error), under the lock."""
    if not rundir.status_file.exists():
        return
    try:
        with rundir:
            current = rundir.read_status()
            if current.get("status") == "running":  # still the dead worker's last word
                extra = {k: current[k] for k in ("epoch", "step") if k in current}
                rundir.write_status("failed", error=error, **extra)
    except RunStateError:  # someone else has it now, or the status is unreadable: leave it
        return


def record_status(record: RunRecord, rundir: RunDir) -> None:
    """The run folder's status after the run, when readable."""
    with contextlib.suppress(RunStateError):
        record.status = rundir.read_status().get("status")
