"""Slurm as the sweep sees it: the client commands (`sinfo`, `squeue`, `scancel`), a job's
`JobState`, the preflight before anything is submitted, and each run's Slurm record
(`<run>/slurm.json`: its job id, written before and after submission).

May import `harness.store` and the sweep's `SlurmResources`; nothing of submitit.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from harness.errors import HarnessError
from harness.store.files import write_json
from harness.store.rundir import RunDir
from harness.sweeps.resources import SlurmResources

#: Scheduler states in which a job may still train its run.
ACTIVE = {
    "PENDING",
    "CONFIGURING",
    "RUNNING",
    "COMPLETING",
    "REQUEUED",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
    "RESIZING",
    "SIGNALING",
    "STAGE_OUT",
    "SUSPENDED",
    "STOPPED",
    "PREEMPTED",
}
RECORD = "slurm.json"


class SchedulerError(HarnessError):
    """Slurm is missing, does not answer, or refuses the resources (exit status 2)."""


@dataclass
class JobState:
    job_id: str
    state: str
    node: str
    reason: str

    @property
    def active(self) -> bool:
        return self.state in ACTIVE


def _slurm(*args: str, timeout: float = 30) -> str:
    """Run a Slurm client command; a missing client or a controller that does not answer is one line."""
    if shutil.which(args[0]) is None:
        raise SchedulerError(f"{args[0]} not found on PATH: install Slurm's client or use --executor local")
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SchedulerError(
            f"{args[0]}: the Slurm controller did not answer within {timeout:.0f} s"
        ) from None
    if proc.returncode != 0:
        first = (proc.stderr.strip() or proc.stdout.strip() or f"exit status {proc.returncode}").splitlines()[
            0
        ]
        raise SchedulerError(f"{args[0]}: the Slurm controller does not answer: {first}")
    return proc.stdout


def preflight(resources: SlurmResources) -> None:
    """Before anything is submitted: sbatch exists, the controller answers, the partition exists
    and has as many nodes as a run asks for (a job of more would wait forever)."""
    if shutil.which("sbatch") is None:
        raise SchedulerError("sbatch not found on PATH: install Slurm's client or use --executor local")
    nodes: dict[str, int] = {}
    default = None
    for line in _slurm("sinfo", "-h", "-o", "%P|%D").split():
        name, _, count = line.partition("|")
        if name.endswith("*"):
            name = default = name.rstrip("*")
        nodes[name] = nodes.get(name, 0) + (int(count) if count.isdigit() else 0)
    if resources.partition is not None and resources.partition not in nodes:
        have = ", ".join(sorted(nodes)) or "none"
        raise SchedulerError(
            f"slurm.partition: unknown partition {resources.partition!r} (this cluster has: {have})"
        )
    partition = resources.partition or default
    if partition in nodes and resources.nodes > nodes[partition]:
        raise SchedulerError(
            f"slurm.nodes: {resources.nodes} nodes asked for each run, "
            f"but partition {partition!r} has {nodes[partition]}"
        )


def queue() -> dict[str, JobState]:
    """Every job the controller still knows (array tasks one by one), by job id (`123` or `123_4`)."""
    out = _slurm("squeue", "-h", "-r", "--states=all", "-o", "%i|%T|%N|%r")
    states = {}
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 4:
            states[parts[0]] = JobState(*parts)
    return states


def scancel(job_id: str) -> None:
    """Cancel a job (a student whose teacher failed)."""
    _slurm("scancel", job_id)


def update_record(rundir: RunDir, **fields: Any) -> None:
    """Add facts to `<run>/slurm.json` (best effort: the record is informative once submitted)."""
    path = rundir.root / RECORD
    with contextlib.suppress(OSError, json.JSONDecodeError):
        data = json.loads(path.read_text()) if path.exists() else {}
        data.update({k: v for k, v in fields.items() if v is not None})
        write_json(path, data)


def read_record(rundir: RunDir) -> dict[str, Any]:
    try:
        data = json.loads((rundir.root / RECORD).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def active_job(rundir: RunDir, states: dict[str, JobState]) -> str | None:
    """The job id of this run's recorded Slurm job if the scheduler still runs or queues it."""
    job_id = read_record(rundir).get("job_id")
    if job_id and job_id in states and states[job_id].active:
        return str(job_id)
    return None


def scheduled_elsewhere(rundir: RunDir) -> str | None:
    """For the local executor: the id of a queued or running Slurm job of this run, if any."""
    if not (rundir.root / RECORD).exists() or shutil.which("squeue") is None:
        return None
    try:
        return active_job(rundir, queue())
    except SchedulerError:
        return None
