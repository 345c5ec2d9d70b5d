"""The job of one run under Slurm: `RunJob`, the callable submitit pickles and each job runs.

It starts the sweep's worker (`python -m harness.sweeps.worker`) in a child process, or, for a
run of several processes or nodes, this node's `torchrun ... -m harness run RECIPE --resume`
(`harness.sweeps.launch`); the first node's task keeps the run's Slurm record. SIGUSR2 before the
time limit reaches `RunJob.checkpoint`, which passes SIGTERM to the worker and requeues the job.

Runs inside the Slurm job. May import submitit, the worker's protocol, the launch and the Slurm
record (`harness.sweeps.slurm.scheduler`).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.store.rundir import RunDir
from harness.sweeps.slurm.scheduler import update_record
from harness.sweeps.worker import read_result, worker_command

log = logging.getLogger("harness")


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
                command = worker_command(self.python, spec_path, result_path)
            if first:
                update_record(
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
            result = read_result(result_path)
            if result is None:
                result = _outcome_of(code, rundir) if launched else {}
                result = result or {
                    "outcome": "failed",
                    "error": f"worker exited with status {code} without a result",
                }
        if first:
            update_record(rundir, outcome=result.get("outcome"), error=result.get("error"), ended=time.time())
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
