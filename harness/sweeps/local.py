"""`harness sweep --jobs N`: N runs at once on one machine, each in its own worker slot.

A slot is one GPU (`CUDA_VISIBLE_DEVICES` of its worker) when the machine has GPUs and the sweep
does not ask for the CPU, otherwise an equal share of the CPU cores (the worker's CPU affinity and
`OMP_NUM_THREADS`). Runs start in sweep order as slots free up; a student whose teacher run is in
the sweep starts once that run has ended (and fails, with the reason, when it did not complete).
Everything else is the sequential sweep's: the same `_run_one` per run, the same locks (so N
workers, another sweep and a Slurm sweep on one runs folder never train a run twice), the same
signals (SIGTERM/SIGINT reach every running worker).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from harness.sweeps.sweep import (
    FAILED_OUTCOMES,
    PlannedRun,
    SignalForwarder,
    SweepOptions,
    SweepSummary,
    _run_one,
)

log = logging.getLogger("harness")


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


def run_in_slots(
    runs: list[PlannedRun],
    summary: SweepSummary,
    runs_dir: Path,
    options: SweepOptions,
    stop: SignalForwarder,
    scratch: Path,
) -> None:
    """Run the sweep's runs `options.jobs` at a time, teachers before their students."""
    from harness.sweeps.slurm import teacher_run_id

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
            log.info("sweep [%d/%d] %s (slot %s)", i + 1, len(runs), run.run_id, env)
            _run_one(run, record, runs_dir, options, stop, scratch / f"run{i}", env)
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
