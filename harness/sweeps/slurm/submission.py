"""Submitting a sweep's runs to Slurm and following their jobs: the triage of each run (skip,
adopt a job still queued, submit), one job array for the runs without a teacher in the sweep and
an `afterok` job per student, each run's Slurm record written before and after sbatch with the
signals held back, then the scheduler polled until every job has ended (`finish`: the run folder
says how the run ended).

May import submitit (lazily), the sweep's plan, summary, triage, worker and status table, and the
rest of `harness.sweeps.slurm`.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import RunStateError
from harness.store.files import FileLock, write_json
from harness.store.rundir import RunDir
from harness.sweeps.executor import SweepOptions
from harness.sweeps.plan import PlannedRun, teacher_run_id
from harness.sweeps.resources import SlurmResources
from harness.sweeps.slurm.job import RunJob
from harness.sweeps.slurm.scheduler import (
    RECORD,
    JobState,
    SchedulerError,
    active_job,
    queue,
    read_record,
    scancel,
)
from harness.sweeps.status import render_table
from harness.sweeps.summary import RunRecord, SweepSummary
from harness.sweeps.triage import busy_elsewhere, fill_from_folder, mark_failed, record_busy, triage
from harness.sweeps.worker import PACKAGE_ROOT, worker_spec

log = logging.getLogger("harness")


# ------------------------------------------------------------------------------ submission
@contextlib.contextmanager
def held_signals() -> Iterator[None]:
    """SIGINT/SIGTERM wait until the block ends (submit + record is one step for an interruption)."""
    sigs = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def submit_lock(runs_dir: Path) -> Iterator[None]:
    """One sweep at a time decides and submits on a runs folder (others wait their turn)."""
    with FileLock(runs_dir / ".slurm-submit.lock", wait=True):
        yield


def make_executor(folder: Path, resources: SlurmResources, name: str, **extra: Any) -> Any:
    """A submitit Slurm executor with the sweep's resources."""
    import submitit

    executor = submitit.SlurmExecutor(folder=str(folder), max_num_timeout=resources.max_requeues)
    params: dict[str, Any] = {
        "job_name": name,
        "time": resources.timeout_min,
        "cpus_per_task": resources.cpus_per_run,
        "nodes": resources.nodes,
        "ntasks_per_node": 1,  # one task per node: it starts the node's torchrun
        "signal_delay_s": resources.signal_before_s,
        "setup": [f"export PYTHONPATH={PACKAGE_ROOT}${{PYTHONPATH:+:$PYTHONPATH}}"],
        "array_parallelism": 1024,
    }
    if resources.gpus_per_run:
        params["gpus_per_node"] = resources.gpus_per_run
    for key in ("partition", "account", "qos", "constraint", "mem"):
        value = getattr(resources, key)
        if value is not None:
            params[key] = value
    params["additional_parameters"] = {"requeue": True, **resources.sbatch_extra(), **extra}
    executor.update_parameters(**params)
    return executor


def _spec(
    run: PlannedRun, runs_dir: Path, options: SweepOptions, resources: SlurmResources
) -> dict[str, Any]:
    """The worker's spec of a run's job, with what the job itself needs."""
    return {
        **worker_spec(run, runs_dir, options.device),
        "signal_before_s": resources.signal_before_s,
        "nproc": resources.nproc_per_run,
        "nodes": resources.nodes,
    }


@dataclass
class Tracked:
    """A run this sweep follows: its record and its job."""

    run: PlannedRun
    record: RunRecord
    job_id: str | None = None
    teacher: str | None = None  # teacher run id, if that run is in this sweep
    last_state: str | None = None
    done: bool = False


def _submit(
    group: list[Tracked],
    runs_dir: Path,
    options: SweepOptions,
    resources: SlurmResources,
    sweep_id: str,
    folder: Path,
    dependency: str | None = None,
) -> None:
    """Submit the runs of `group` (an array when several), recording each before and after."""
    extra = {"dependency": dependency, "kill_on_invalid_dep": "yes"} if dependency else {}
    executor = make_executor(folder, resources, "harness-sweep", **extra)
    with held_signals():
        for t in group:
            write_json(
                RunDir(runs_dir, t.run.run_id).root / RECORD, {"state": "submitting", "sweep_id": sweep_id}
            )
        functions = [RunJob(_spec(t.run, runs_dir, options, resources), options.python) for t in group]
        try:
            if len(functions) == 1:
                jobs = [executor.submit(functions[0])]
            else:
                with executor.batch():
                    jobs = [executor.submit(f) for f in functions]
        except Exception as exc:  # sbatch refused (an account, a QOS, a limit): nothing was submitted
            lines = [ln.strip() for ln in str(exc).splitlines() if "error" in ln.lower()] or [str(exc)]
            raise SchedulerError(f"sbatch refused the jobs: {lines[-1][:300]}") from None
        for t, job in zip(group, jobs, strict=True):
            t.job_id = str(job.job_id)
            array_job, _, index = t.job_id.partition("_")
            write_json(
                RunDir(runs_dir, t.run.run_id).root / RECORD,
                {
                    "state": "submitted",
                    "sweep_id": sweep_id,
                    "job_id": t.job_id,
                    "array_job_id": array_job if index else None,
                    "array_index": int(index) if index else None,
                    "submitted": time.time(),
                    "dependency": dependency,
                    "submitit_folder": str(folder),
                },
            )
            t.record.outcome = "submitted"
            t.record.status = "queued"
    log.info("sweep: submitted %s", ", ".join(f"{t.job_id} {t.run.run_id}" for t in group))


def submit_runs(
    runs: list[PlannedRun],
    runs_dir: Path,
    options: SweepOptions,
    resources: SlurmResources,
    summary: SweepSummary,
    stop: StopFollowing,
) -> list[Tracked]:
    """Decide what each run needs (skip, adopt a queued job, submit) and submit in dependency order."""
    folder = runs_dir / "slurm" / summary.sweep_id
    folder.mkdir(parents=True, exist_ok=True)
    tracked: dict[str, Tracked] = {}
    with submit_lock(runs_dir):
        states = queue()
        for run, record in zip(runs, summary.runs, strict=True):
            rundir = RunDir(runs_dir, run.run_id)
            status = triage(run, record, rundir)
            if status is None:
                continue
            job_id = active_job(rundir, states)
            if job_id is not None:  # queued or running from an earlier sweep: follow it
                tracked[run.run_id] = Tracked(run, record, job_id=job_id)
                record.outcome, record.status = "submitted", states[job_id].state.lower()
                log.info("sweep: %s already has job %s (%s)", run.run_id, job_id, states[job_id].state)
                continue
            if busy_elsewhere(rundir):  # a local run or sweep has it
                record_busy(record, status)
                continue
            record.resumed = rundir.last_checkpoint.exists()
            tracked[run.run_id] = Tracked(run, record)
        teachers = {t.run.run_id: teacher_run_id(t.run) for t in tracked.values()}
        for t in tracked.values():
            if teachers[t.run.run_id] in tracked:
                t.teacher = teachers[t.run.run_id]
        failed_ids = {r.run_id for r in summary.runs if r.outcome in ("failed", "diverged")}
        # waves: runs whose teacher is not waiting for a job, as one array; then their students
        while not stop.signum:
            todo = [t for t in tracked.values() if t.job_id is None and not t.done]
            if not todo:
                break
            for t in todo:
                teacher = teachers[t.run.run_id]
                if teacher in failed_ids:
                    t.done, t.record.outcome = True, "failed"
                    t.record.error = f"teacher run {teacher} failed"
                    failed_ids.add(t.run.run_id)
            ready = [t for t in todo if not t.done and (t.teacher is None or tracked[t.teacher].job_id)]
            if not ready:
                break
            free = [t for t in ready if t.teacher is None]
            if free:
                _submit(free, runs_dir, options, resources, summary.sweep_id, folder)
            for t in ready:
                if t.teacher is not None and not stop.signum:
                    dep = f"afterok:{tracked[t.teacher].job_id}"
                    _submit([t], runs_dir, options, resources, summary.sweep_id, folder, dependency=dep)
            summary.save()
    return [t for t in tracked.values() if not t.done]


# ------------------------------------------------------------------------------ following
class StopFollowing:
    """SIGINT/SIGTERM to a following sweep: stop following (the jobs go on)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopFollowing:
        if threading.current_thread() is threading.main_thread():  # only there can Python catch signals
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def finish(t: Tracked, runs_dir: Path, job: JobState | None, tracked: dict[str, Tracked]) -> None:
    """The job has ended (or vanished): the run folder says how the run ended."""
    rundir = RunDir(runs_dir, t.run.run_id)
    t.done = True
    try:
        status = rundir.read_status()
    except RunStateError as exc:
        t.record.outcome, t.record.error = "failed", str(exc)
        return
    rec = read_record(rundir)
    state = status.get("status")
    if state == "completed":
        fill_from_folder(t.record, rundir, status)
        t.record.outcome = "ran" if rec.get("outcome") != "skipped" else "skipped"
        t.record.error = None
        return
    if state == "diverged":
        fill_from_folder(t.record, rundir, status)
        t.record.outcome, t.record.error = "diverged", status.get("error") or "non-finite loss"
        return
    t.record.outcome = "failed"
    teacher = tracked.get(t.teacher) if t.teacher else None
    if teacher is not None and teacher.record.outcome in ("failed", "diverged"):
        t.record.error = f"teacher run {teacher.run.run_id} {teacher.record.outcome}"
        return
    how = (
        f"{job.state.lower()}" + (f" ({job.reason})" if job and job.reason not in ("None", "") else "")
        if job
        else "gone"
    )
    t.record.error = (
        f"job {t.job_id} ended {how} before the run completed (status {state or 'none'}); "
        "the next sweep resumes it"
    )
    if state == "running":  # the job was killed outright: say so in the run folder too
        mark_failed(rundir, t.record.error)
        t.record.status = "failed"
    else:
        t.record.status = state


def follow(
    tracked: list[Tracked], runs_dir: Path, summary: SweepSummary, stop: StopFollowing, poll_s: float
) -> None:
    """Poll the scheduler and the run folders until every job has ended; print state changes."""
    by_id = {t.run.run_id: t for t in tracked}
    width = max((len(t.run.run_id) for t in tracked), default=0)
    while not stop.signum:
        states = queue()
        changed = False
        for t in tracked:
            if t.done:
                continue
            job = states.get(t.job_id or "")
            if (
                t.teacher
                and by_id[t.teacher].done
                and by_id[t.teacher].record.outcome in ("failed", "diverged")
            ):
                if job is not None and job.active:  # Slurm cancels it too (kill_on_invalid_dep)
                    with contextlib.suppress(SchedulerError):
                        scancel(str(t.job_id))
                finish(t, runs_dir, job, by_id)
                changed = True
                continue
            if job is None or not job.active:
                teacher = by_id.get(t.teacher) if t.teacher else None
                if teacher is not None and not teacher.done:
                    # both ended in one poll: the teacher's outcome first, so a student that
                    # Slurm cancelled for its dependency is reported for its teacher's reason
                    t_job = states.get(teacher.job_id or "")
                    if t_job is None or not t_job.active:
                        finish(teacher, runs_dir, t_job, by_id)
                finish(t, runs_dir, job, by_id)
                changed = True
            else:
                st = job.state
                if st != t.last_state:
                    t.last_state = st
                    t.record.status = st.lower()
                    changed = True
        if changed:
            summary.save()
            print(render_table(tracked, runs_dir, states, width), file=sys.stderr, flush=True)
        if all(t.done for t in tracked):
            return
        time.sleep(poll_s)
