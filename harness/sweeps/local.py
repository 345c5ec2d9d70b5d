"""The local executors: `SerialExecutor` trains the runs one after another (`--jobs 1`),
`SlotsExecutor` N at once on this machine (`--jobs N`), each run in its own worker process.

A slot is one GPU (`CUDA_VISIBLE_DEVICES` of its worker) when the machine has GPUs and the sweep
does not ask for the CPU, otherwise an equal share of the CPU cores (the worker's CPU affinity and
`OMP_NUM_THREADS`). Runs start in sweep order as slots free up; a student whose teacher run is in
the sweep starts once that run has ended (and fails, with the reason, when it did not complete).
Both executors settle each run the same way (`run_one`: the shared triage, then a worker), under
the same locks (so N workers, another sweep and a Slurm sweep on one runs folder never train a
run twice), and forward SIGTERM/SIGINT to every running worker (`SignalForwarder`).

May import the sweep's plan, summary, triage and worker, and `harness.store`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.store.rundir import RunDir
from harness.sweeps import triage
from harness.sweeps.executor import SweepOptions
from harness.sweeps.plan import PlannedRun, teacher_run_id
from harness.sweeps.summary import FAILED_OUTCOMES, RunRecord, SweepSummary
from harness.sweeps.worker import PACKAGE_ROOT, read_result, worker_command, worker_spec

log = logging.getLogger("harness")


# ------------------------------------------------------------------------------ signals
class SignalForwarder:
    """SIGTERM/SIGINT set a flag and are passed on, as SIGTERM, to the running worker."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.children: set[subprocess.Popen] = set()  # one per worker slot (--jobs N)
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> SignalForwarder:
        if threading.current_thread() is threading.main_thread():  # only there can Python catch signals
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum = signum
        for child in list(self.children):
            if child.poll() is None:
                # SIGTERM, not SIGINT: a terminal's Ctrl-C already reached the worker (same process
                # group), and a second SIGINT would make it stop at once, without a checkpoint.
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signal.SIGTERM)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    @property
    def name(self) -> str | None:
        return signal.Signals(self.signum).name if self.signum else None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: ask for SIGTERM when the sweep dies (even by SIGKILL), so the worker checkpoints."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the sweep died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


@contextlib.contextmanager
def _signals_and_scratch() -> Iterator[tuple[SignalForwarder, Path]]:
    """The signals forwarded to the workers, and a scratch folder for their specs and results."""
    with SignalForwarder() as stop, tempfile.TemporaryDirectory(prefix="harness-sweep-") as tmp:
        yield stop, Path(tmp)


def _stopped(summary: SweepSummary, stop: SignalForwarder) -> None:
    """The signal that stopped the sweep, if one did, in the summary and the log."""
    summary.interrupted = stop.name
    if summary.interrupted:
        log.info("sweep: stopped by %s; run it again to resume", summary.interrupted)


# ------------------------------------------------------------------------------ one run
def run_one(
    run: PlannedRun,
    record: RunRecord,
    runs_dir: Path,
    options: SweepOptions,
    stop: SignalForwarder,
    scratch: Path,
    slot_env: dict[str, str] | None = None,
) -> None:
    """Decide what to do with one run (the triage) and do it, filling in `record`."""
    rundir = RunDir(runs_dir, run.run_id)
    status = triage.triage(run, record, rundir)
    if status is None or triage.data_missing(run, record):
        return
    with triage.claim_to_train(rundir, record, status) as ours:
        if not ours or stop.signum is not None:  # asked to stop while we looked: no worker
            return
        record.resumed = rundir.last_checkpoint.exists()
        _spawn(run, record, runs_dir, options, stop, scratch, slot_env)


def _spawn(
    run: PlannedRun,
    record: RunRecord,
    runs_dir: Path,
    options: SweepOptions,
    stop: SignalForwarder,
    scratch: Path,
    slot_env: dict[str, str] | None = None,
) -> None:
    """Train the run in a worker process and record how it ended."""
    scratch.mkdir(parents=True, exist_ok=True)
    spec, result_path = scratch / "spec.json", scratch / "result.json"
    spec.write_text(json.dumps(worker_spec(run, runs_dir, options.device)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH")) if p)
    env.update(slot_env or {})
    started = time.perf_counter()
    child = subprocess.Popen(
        worker_command(options.python, spec, result_path), env=env, preexec_fn=_die_with_parent
    )
    stop.children.add(child)
    try:
        if stop.signum is not None:  # a signal came while the worker was starting
            child.send_signal(signal.SIGTERM)
        code = child.wait()
    finally:
        stop.children.discard(child)
    record.seconds = time.perf_counter() - started
    record.exit_code = code
    result = read_result(result_path)
    if result:
        for key in ("outcome", "error", "top1", "epoch", "step", "diverged_step"):
            if result.get(key) is not None:
                setattr(record, key, result[key])
    elif code < 0:  # killed by a signal before it could write a result
        name = signal.Signals(-code).name
        if stop.signum is not None:
            record.outcome = "interrupted"
        else:
            record.outcome = "failed"
            hint = " (out of memory?)" if code == -signal.SIGKILL else ""
            record.error = f"worker killed by {name}{hint}"
    else:
        record.outcome = "failed"
        record.error = f"worker exited with status {code} without a result (see the log above)"
    rundir = RunDir(runs_dir, run.run_id)
    if record.outcome == "failed" and not result:
        triage.mark_failed(rundir, record.error or "worker died")
    triage.record_status(record, rundir)


# ------------------------------------------------------------------------------ --jobs 1
@dataclass
class SerialExecutor:
    """`--jobs 1`: one run after another; a run stopped from outside stops the sweep too, and
    `--fail-fast` stops it at the first failure."""

    options: SweepOptions

    def run(self, runs: list[PlannedRun], summary: SweepSummary) -> None:
        runs_dir = Path(summary.runs_dir)
        with _signals_and_scratch() as (stop, scratch):
            for i, (run, record) in enumerate(zip(runs, summary.runs, strict=True)):
                if stop.signum is not None:
                    break
                log.info("sweep [%d/%d] %s (%s)", i + 1, len(runs), record.run_id, run.recipe_path)
                run_one(run, record, runs_dir, self.options, stop, scratch / f"run{i}")
                if record.outcome == "interrupted" and stop.signum is None:
                    stop.signum = signal.SIGTERM  # the worker was stopped from outside: stop too
                summary.save()
                if record.outcome in FAILED_OUTCOMES and not self.options.keep_going:
                    break
            _stopped(summary, stop)


# ------------------------------------------------------------------------------ --jobs N
def visible_gpus() -> list[str]:
    """The GPUs this process may use (CUDA_VISIBLE_DEVICES, else every device torch sees)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g for g in env.split(",") if g.strip() and g.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # no usable CUDA: CPU slots
        return []


def slot_envs(jobs: int, device: str | None) -> list[dict[str, str]]:
    """The environment of each of `jobs` worker slots: a GPU each, or a share of the cores."""
    gpus = [] if device == "cpu" else visible_gpus()
    if gpus:
        if jobs > len(gpus):
            log.warning("sweep: --jobs %d on %d GPUs: some GPUs train two runs at once", jobs, len(gpus))
        return [
            {"CUDA_VISIBLE_DEVICES": gpus[k % len(gpus)], "HARNESS_WORKER_SLOT": str(k)} for k in range(jobs)
        ]
    cores = (
        sorted(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else list(range(os.cpu_count() or 1))
    )
    envs = []
    for k in range(jobs):
        share = cores[k * len(cores) // jobs : (k + 1) * len(cores) // jobs] or [cores[k % len(cores)]]
        envs.append(
            {
                "HARNESS_WORKER_CPUS": ",".join(map(str, share)),
                "OMP_NUM_THREADS": str(len(share)),
                "HARNESS_WORKER_SLOT": str(k),
            }
        )
    return envs


def slot_label(env: dict[str, str], jobs: int) -> str:
    """A slot for the progress lines, from its environment (`slot_envs`): `slot 1/2, gpu 0`,
    `slot 2/2, cpu 1` or `slot 1/2, cpus 0,1`."""
    label = f"slot {int(env.get('HARNESS_WORKER_SLOT', '0')) + 1}/{jobs}"
    if "CUDA_VISIBLE_DEVICES" in env:
        return f"{label}, gpu {env['CUDA_VISIBLE_DEVICES']}"
    cpus = env.get("HARNESS_WORKER_CPUS", "")
    return f"{label}, {'cpus' if ',' in cpus else 'cpu'} {cpus}" if cpus else label


@dataclass
class SlotsExecutor:
    """`--jobs N`: N runs at once, teachers before their students."""

    options: SweepOptions

    def run(self, runs: list[PlannedRun], summary: SweepSummary) -> None:
        with _signals_and_scratch() as (stop, scratch):
            run_in_slots(runs, summary, Path(summary.runs_dir), self.options, stop, scratch)
            _stopped(summary, stop)


def run_in_slots(
    runs: list[PlannedRun],
    summary: SweepSummary,
    runs_dir: Path,
    options: SweepOptions,
    stop: SignalForwarder,
    scratch: Path,
) -> None:
    """Run the sweep's runs `options.jobs` at a time, teachers before their students."""
    records = dict(zip((r.run_id for r in runs), summary.runs, strict=True))
    teachers = {r.run_id: teacher_run_id(r) for r in runs}
    waiting = list(range(len(runs)))
    finished: set[str] = set()
    cond = threading.Condition()
    free = slot_envs(options.jobs, options.device)
    threads: list[threading.Thread] = []
    failed = False

    def work(i: int, env: dict[str, str]) -> None:
        nonlocal failed
        run, record = runs[i], summary.runs[i]
        try:
            log.info("sweep [%d/%d] %s (%s)", i + 1, len(runs), run.run_id, slot_label(env, options.jobs))
            run_one(run, record, runs_dir, options, stop, scratch / f"run{i}", env)
        except Exception as exc:  # a bug in one slot must not hang the others
            record.outcome, record.error = "failed", f"{type(exc).__name__}: {exc}"
        with cond:
            if record.outcome in FAILED_OUTCOMES:
                failed = True
            finished.add(run.run_id)
            free.append(env)
            summary.save()
            cond.notify_all()

    def ready(i: int) -> bool:
        teacher = teachers[runs[i].run_id]
        return teacher is None or teacher not in records or teacher in finished

    with cond:
        while waiting and stop.signum is None and not (failed and not options.keep_going):
            pick = next((i for i in waiting if ready(i)), None)
            if pick is None or not free:
                cond.wait(timeout=1.0)
                continue
            waiting.remove(pick)
            run = runs[pick]
            teacher = teachers[run.run_id]
            if teacher in records and records[teacher].outcome not in ("ran", "skipped"):
                rec = summary.runs[pick]
                rec.outcome = "failed"
                rec.error = f"teacher run {teacher} {records[teacher].outcome}"
                finished.add(run.run_id)
                continue
            t = threading.Thread(target=work, args=(pick, free.pop(0)), daemon=True)
            threads.append(t)
            t.start()
    for t in threads:
        t.join()
