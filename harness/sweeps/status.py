"""Tables of run states, read from the run folders: `status_table` (`harness sweep --status`:
every run folder of a runs folder) and `render_table` (the runs a sweep follows). A run's Slurm
job and its scheduler state are one input where it has one.

May import `harness.store`, the summary's records and the Slurm client and records
(`harness.sweeps.slurm.scheduler`).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from harness.errors import RunStateError
from harness.store.rundir import RunDir
from harness.sweeps.slurm.scheduler import RECORD, JobState, SchedulerError, queue, read_record
from harness.sweeps.summary import RunRecord


class FollowedRun(Protocol):
    """A run a sweep follows (`harness.sweeps.slurm.submission.Tracked`): its record and job."""

    record: RunRecord
    job_id: str | None
    done: bool


def render_table(
    tracked: Sequence[FollowedRun], runs_dir: Path, states: dict[str, JobState], width: int
) -> str:
    """One line per run: job, scheduler state or outcome, node, epoch."""
    lines = [f"{'job':<12} {'state':<11} {'run':<{width}}  detail"]
    for t in tracked:
        job = states.get(t.job_id or "")
        state = t.record.outcome if t.done else (job.state.lower() if job else "?")
        detail = ""
        if t.done:
            detail = t.record.error or (f"top1 {t.record.top1:.2f}" if t.record.top1 is not None else "")
        else:
            with contextlib.suppress(RunStateError):
                st = RunDir(runs_dir, t.record.run_id).read_status()
                if st.get("epoch") is not None:
                    detail = f"epoch {st.get('epoch')} step {st.get('step')}"
            if job and job.node and job.state == "RUNNING":
                detail = f"{job.node} {detail}".strip()
            elif job and job.reason not in ("None", ""):
                detail = job.reason
        lines.append(f"{t.job_id or '-':<12} {state:<11} {t.record.run_id:<{width}}  {detail}".rstrip())
    return "\n".join(lines)


def status_table(runs_dir: Path) -> str:
    """Every run folder's state, with its Slurm job's state where it has one (the scheduler is
    asked only when some run of the folder was submitted to it)."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise RunStateError(f"{runs_dir}: no such runs folder")
    rundirs = [
        rundir
        for rundir in (RunDir(runs_dir, p.name) for p in sorted(runs_dir.iterdir()) if p.is_dir())
        if rundir.status_file.exists() or (rundir.root / RECORD).exists()
    ]
    records = {rundir.root.name: read_record(rundir) for rundir in rundirs}
    states, note = _scheduler_states(any(rec.get("job_id") for rec in records.values()))
    rows = []
    for rundir in rundirs:
        try:
            st = rundir.read_status()
        except RunStateError as exc:
            st = {"status": "unreadable", "error": str(exc)}
        job_id = records[rundir.root.name].get("job_id") or ""
        job = states.get(job_id)
        sched = job.state.lower() if job else ("ended" if job_id else "")
        where = job.node if job and job.node else ""
        if rundir.locked_elsewhere():
            sched = sched or "locked (training)"
        rows.append(
            (
                rundir.root.name,
                st.get("status") or "new",
                str(st.get("epoch") or ""),
                job_id,
                sched,
                where,
                st.get("error") or "",
            )
        )
    width = max((len(r[0]) for r in rows), default=3)
    lines = [
        f"{'run':<{width}}  {'status':<11} {'epoch':>5}  {'job':<10} {'scheduler':<11} {'node':<8} error"
    ]
    for r in rows:
        lines.append(
            f"{r[0]:<{width}}  {r[1]:<11} {r[2]:>5}  {r[3]:<10} {r[4]:<11} {r[5]:<8} {r[6]}".rstrip()
        )
    if note:
        lines.append(note)
    return "\n".join(lines)


def _scheduler_states(submitted: bool) -> tuple[dict[str, JobState], str]:
    """The queue's jobs and a note when the scheduler could not be asked; nothing is asked (and
    nothing said) when no run of the folder was submitted to Slurm or there is no `squeue`."""
    if not submitted or shutil.which("squeue") is None:
        return {}, ""
    try:
        return queue(), ""
    except SchedulerError as exc:
        return {}, f"(scheduler not asked: {exc})"
