"""The Slurm executor: one job per run through submitit, followed until the last one ends.

What it keeps from the local sweep: a completed run is skipped, a diverged one reported, an
unfinished one resumed (the job runs the same worker as a local sweep, `python -m harness.sweeps.sweep
worker`, which calls `lifecycle.train` with resume), a run held by another process is `busy`, a
failure ends that run only, and the leaderboard is regenerated at the end.

* **One job per run**, the runs without a teacher in the sweep in one job array (they share the
  resources), each student on its own with an `afterok` dependency on its teacher's job, so the
  teacher trains once, before its students; a failed teacher leaves its students failed, with
  the reason (Slurm cancels them: `--kill-on-invalid-dep=yes`).
* **Several processes or nodes.** A run of `nproc_per_run` > 1 or `nodes` > 1 has one task per
  node; each starts `torchrun --nnodes N --nproc-per-node G --node-rank $SLURM_NODEID
  --rdzv-backend c10d --rdzv-endpoint <first node>:<port> --rdzv-id <job id> -m harness run
  RECIPE --resume` (harness.sweeps.launch); one node is the case N = 1 of the same command.
  The first node's task writes the Slurm record and handles the pre-emption signal.
* **Recorded before and after submission.** `<run>/slurm.json` is written (atomically) with
  state `submitting` before sbatch and with the job id right after; SIGINT/SIGTERM are held
  back in between, so an interrupted sweep never leaves a run submitted but unrecorded. A
  sweep run again adopts the jobs still queued or running instead of submitting them twice; and
  should a run ever get two jobs (a sweep killed with -9 inside sbatch), the run's lock lets only
  one of them train.
* **Pre-emption and time limits.** Each job asks for SIGUSR2 `signal_before_s` before its time
  limit (sbatch `--signal`). submitit catches it in the job's main process and calls
  `RunJob.checkpoint`, which passes SIGTERM to the worker: the run stops at its next step,
  writes its checkpoint and exits; submitit then requeues the job, whose next start resumes the
  run exactly. A job requeued or pre-empted by Slurm itself (`scontrol requeue`, a pre-empting
  partition) gets SIGTERM, which reaches the worker the same way. A job killed outright
  (`scancel`, a node failure) is reported failed, and the next sweep resumes the run from its
  last checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError, RunStateError
from harness.store.files import FileLock, held_elsewhere, write_json
from harness.store.rundir import RunDir
from harness.sweeps.resources import SlurmResources
from harness.sweeps.sweep import (
    PlannedRun,
    RunRecord,
    SweepOptions,
    SweepSummary,
    _fill_from_folder,
    regenerate_leaderboard,
    start_summary,
)

log = logging.getLogger("harness")

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


# ------------------------------------------------------------------------------ the scheduler
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


# ------------------------------------------------------------------------------ the job
def _ignore_usr2() -> None:  # pragma: no cover - runs in the child between fork and exec
    """The worker ignores SIGUSR2 (the job's main process handles it and sends SIGTERM)."""
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


try:  # submitit is a dependency; the local executor and --plan do not need it loaded
    from submitit.helpers import Checkpointable as _Checkpointable
except ImportError:  # pragma: no cover
    _Checkpointable = object  # type: ignore[assignment,misc]


def _job_env(nproc: int) -> dict[str, str]:
    """The worker's environment: its math libraries use the cores Slurm allocated to the task
    (SLURM_CPUS_PER_TASK), shared among the node's `nproc` ranks, not whatever OMP_NUM_THREADS the
    submitting shell exported."""
    env = dict(os.environ)
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if cpus and cpus.isdigit():
        env["OMP_NUM_THREADS"] = str(max(1, int(cpus) // nproc))
    return env


def _torchrun(spec: dict[str, Any], python: str) -> tuple[list[str], dict[str, Any]]:
    """This node's `torchrun ... -m harness run RECIPE --resume` for a run of several processes or
    nodes (harness.sweeps.launch: first node of the allocation as rendezvous, port from the job
    id), and the rendezvous as the run's Slurm record keeps it."""
    from submitit import JobEnvironment

    from harness.sweeps.launch import rendezvous_from_slurm, torchrun_command

    hosts = JobEnvironment().hostnames
    rdzv = rendezvous_from_slurm(os.environ, hosts, int(spec.get("nodes", 1)), int(spec.get("nproc", 1)))
    args = ["run", spec["recipe"], "--resume", "--runs-dir", spec["runs_dir"], "--no-progress"]
    args += [a for o in spec["overrides"] for a in ("--set", o)]
    args += ["--device", spec["device"]] if spec.get("device") else []
    log.info("node %d of %d: rendezvous %s (id %s)", rdzv.node_rank, rdzv.nodes, rdzv.endpoint, rdzv.run_id)
    record = {
        "endpoint": rdzv.endpoint,
        "id": rdzv.run_id,
        "nodes": hosts,
        "nproc_per_node": rdzv.nproc_per_node,
        "world_size": rdzv.world_size,
    }
    return torchrun_command(rdzv, args, python), record


def _first_node() -> bool:
    """This task runs on the allocation's first node (it alone writes the run's Slurm record)."""
    return int(os.environ.get("SLURM_NODEID", "0") or 0) == 0


class RunJob(_Checkpointable):  # type: ignore[misc,valid-type]
    """The callable a run's Slurm job executes: the sweep's worker, in a child process."""

    def __init__(self, spec: dict[str, Any], python: str) -> None:
        self.spec = spec
        self.python = python
        self._child: subprocess.Popen | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self.spec, "python": self.python}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["spec"], state["python"])

    def __call__(self) -> dict[str, Any]:
        logging.basicConfig(level=logging.INFO, format="harness: %(message)s", stream=sys.stderr)
        from harness.store.provenance import scheduler

        facts = scheduler()
        rundir = RunDir(Path(self.spec["runs_dir"]), self.spec["run_id"])
        nproc = int(self.spec.get("nproc", 1))
        launched = nproc > 1 or int(self.spec.get("nodes", 1)) > 1
        first = _first_node()
        with tempfile.TemporaryDirectory(prefix="harness-job-") as tmp:
            spec_path, result_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
            spec_path.write_text(json.dumps(self.spec))
            rendezvous = None
            if launched:  # torchrun on each node, as by hand
                command, rendezvous = _torchrun(self.spec, self.python)
            else:
                command = [
                    self.python,
                    "-m",
                    "harness.sweeps.sweep",
                    "worker",
                    str(spec_path),
                    str(result_path),
                ]
            if first:
                _update_record(
                    rundir,
                    started=time.time(),
                    node=facts.get("node"),
                    restart_count=facts.get("restart_count"),
                    rendezvous=rendezvous,
                )
            self._child = subprocess.Popen(command, preexec_fn=_ignore_usr2, env=_job_env(nproc))
            # poll rather than wait(): `checkpoint` runs as a signal handler in this thread, and
            # Popen.wait would hold the lock its own poll needs
            while (code := self._child.poll()) is None:
                time.sleep(0.5)
            try:
                result = json.loads(result_path.read_text())
            except (OSError, json.JSONDecodeError):
                result = _outcome_of(code, rundir) if launched else {}
                result = result or {
                    "outcome": "failed",
                    "error": f"worker exited with status {code} without a result",
                }
        if first:
            _update_record(
                rundir, outcome=result.get("outcome"), error=result.get("error"), ended=time.time()
            )
        if result.get("outcome") in (
            "failed",
            "diverged",
        ):  # the job ends FAILED: afterok students never start
            raise RuntimeError(f"{self.spec['run_id']}: {result.get('error')}")  # the job ends FAILED
        return result

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """SIGUSR2 before the time limit: the worker checkpoints and exits; then requeue this job."""
        import submitit

        child = self._child
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)
            deadline = time.time() + max(30, int(self.spec.get("signal_before_s", 120)) - 15)
            while child.poll() is None and time.time() < deadline:
                time.sleep(0.2)
        return submitit.helpers.DelayedSubmission(RunJob(self.spec, self.python))


def _outcome_of(code: int, rundir: RunDir) -> dict[str, Any]:
    """The outcome of a torchrun job step, from the run folder's status and the exit status
    (torchrun exits 1 whenever a rank failed, whatever the rank's own status was)."""
    from harness.errors import DivergedError, InterruptedRun, RunBusyError

    status = rundir.read_status() if rundir.status_file.exists() else {}
    if code == 0:
        return {"outcome": "ran"}
    outcome = {
        DivergedError.exit_code: "diverged",
        InterruptedRun.exit_code: "interrupted",
        RunBusyError.exit_code: "busy",
    }.get(code) or {"diverged": "diverged", "interrupted": "interrupted"}.get(status.get("status"), "failed")
    return {"outcome": outcome, "error": status.get("error") or f"harness run exited with status {code}"}


def _update_record(rundir: RunDir, **fields: Any) -> None:
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
    package_root = str(Path(__file__).resolve().parent.parent.parent)
    params: dict[str, Any] = {
        "job_name": name,
        "time": resources.timeout_min,
        "cpus_per_task": resources.cpus_per_run,
        "nodes": resources.nodes,
        "ntasks_per_node": 1,  # one task per node: it starts the node's torchrun
        "signal_delay_s": resources.signal_before_s,
        "setup": [f"export PYTHONPATH={package_root}${{PYTHONPATH:+:$PYTHONPATH}}"],
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
    return {
        "recipe": str(run.recipe_path),
        "overrides": list(run.overrides),
        "run_id": run.run_id,
        "runs_dir": str(runs_dir),
        "device": options.device,
        "signal_before_s": resources.signal_before_s,
        "nproc": resources.nproc_per_run,
        "nodes": resources.nodes,
    }


def teacher_run_id(run: PlannedRun) -> str | None:
    """The run id of the teacher run a student trains from (None: no teacher run)."""
    recipe = run.recipe
    if recipe is None or recipe.teacher is None or recipe.teacher.run is None:
        return None
    from harness.teachers.teacher import teacher_recipe

    try:
        return teacher_recipe(recipe).run_id
    except HarnessError:
        return None


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
    stop: _Stop,
) -> list[Tracked]:
    """Decide what each run needs (skip, adopt a queued job, submit) and submit in dependency order."""
    folder = runs_dir / "slurm" / summary.sweep_id
    folder.mkdir(parents=True, exist_ok=True)
    tracked: dict[str, Tracked] = {}
    with submit_lock(runs_dir):
        states = queue()
        for run, record in zip(runs, summary.runs, strict=True):
            if run.recipe is None:
                record.outcome, record.error = "failed", run.error
                continue
            rundir = RunDir(runs_dir, run.run_id)
            try:
                status = rundir.read_status()
            except RunStateError as exc:
                record.outcome, record.error = "failed", str(exc)
                continue
            if status.get("status") == "completed":
                _fill_from_folder(record, rundir, status)
                record.outcome, record.earlier = "skipped", True
                continue
            if status.get("status") == "diverged":
                _fill_from_folder(record, rundir, status)
                record.outcome, record.earlier = "diverged", True
                record.error = "diverged in an earlier sweep (retry it with `harness run RECIPE --restart`)"
                continue
            job_id = active_job(rundir, states)
            if job_id is not None:  # queued or running from an earlier sweep: follow it
                tracked[run.run_id] = Tracked(run, record, job_id=job_id)
                record.outcome, record.status = "submitted", states[job_id].state.lower()
                log.info("sweep: %s already has job %s (%s)", run.run_id, job_id, states[job_id].state)
                continue
            if rundir.locked_elsewhere() or held_elsewhere(rundir.sweep_lock):  # a local run or sweep has it
                record.outcome, record.status = "busy", status.get("status")
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
class _Stop:
    """SIGINT/SIGTERM to a following sweep: stop following (the jobs go on)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Stop:
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
        _fill_from_folder(t.record, rundir, status)
        t.record.outcome = "ran" if rec.get("outcome") != "skipped" else "skipped"
        t.record.error = None
        return
    if state == "diverged":
        _fill_from_folder(t.record, rundir, status)
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
        from harness.sweeps.sweep import _mark_failed

        _mark_failed(rundir, t.record.error)
        t.record.status = "failed"
    else:
        t.record.status = state


def follow(tracked: list[Tracked], runs_dir: Path, summary: SweepSummary, stop: _Stop, poll_s: float) -> None:
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
                        _slurm("scancel", str(t.job_id))
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


def render_table(tracked: list[Tracked], runs_dir: Path, states: dict[str, JobState], width: int) -> str:
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
                st = RunDir(runs_dir, t.run.run_id).read_status()
                if st.get("epoch") is not None:
                    detail = f"epoch {st.get('epoch')} step {st.get('step')}"
            if job and job.node and job.state == "RUNNING":
                detail = f"{job.node} {detail}".strip()
            elif job and job.reason not in ("None", ""):
                detail = job.reason
        lines.append(f"{t.job_id or '-':<12} {state:<11} {t.run.run_id:<{width}}  {detail}".rstrip())
    return "\n".join(lines)


# ------------------------------------------------------------------------------ the sweep
@dataclass
class SlurmOptions:
    """How the Slurm executor submits and follows."""

    resources: SlurmResources
    wait: bool = True
    poll_s: float = 10.0


def run_slurm_sweep(
    runs: list[PlannedRun], runs_dir: Path | str, options: SweepOptions, slurm: SlurmOptions
) -> SweepSummary:
    """Submit every run that needs training as a Slurm job; follow them (or not); the leaderboard."""
    runs_dir = Path(runs_dir).resolve()
    preflight(slurm.resources)
    summary = start_summary(runs, runs_dir, options)
    out = Path(options.leaderboard_out) if options.leaderboard_out else runs_dir / "leaderboard"
    with _Stop() as stop:
        tracked = submit_runs(runs, runs_dir, options, slurm.resources, summary, stop)
        summary.save()
        if stop.signum:
            summary.interrupted = signal.Signals(stop.signum).name
        elif not slurm.wait:
            if options.leaderboard and tracked:
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
    if options.leaderboard and not summary.interrupted and (slurm.wait or not tracked):
        summary.leaderboard = regenerate_leaderboard(runs_dir, out)
    summary.finished = time.time()
    summary.save()
    return summary


def _submit_leaderboard(
    tracked: list[Tracked], runs_dir: Path, out: Path, resources: SlurmResources, sweep_id: str
) -> dict[str, Any]:
    """--no-wait: a small job that regenerates the leaderboard once every run's job has ended."""
    from dataclasses import replace

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


# ------------------------------------------------------------------------------ status
def status_table(runs_dir: Path) -> str:
    """Every run folder's state, with its Slurm job's state where it has one."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise RunStateError(f"{runs_dir}: no such runs folder")
    states: dict[str, JobState] = {}
    note = ""
    if shutil.which("squeue") is not None:
        try:
            states = queue()
        except SchedulerError as exc:
            note = f"(scheduler not asked: {exc})"
    rows = []
    for folder in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
        rundir = RunDir(runs_dir, folder.name)
        if not rundir.status_file.exists() and not (folder / RECORD).exists():
            continue
        try:
            st = rundir.read_status()
        except RunStateError as exc:
            st = {"status": "unreadable", "error": str(exc)}
        rec = read_record(rundir)
        job_id = rec.get("job_id") or ""
        job = states.get(job_id)
        sched = job.state.lower() if job else ("ended" if job_id else "")
        where = job.node if job and job.node else ""
        if rundir.locked_elsewhere():
            sched = sched or "locked (training)"
        rows.append(
            (
                folder.name,
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
