"""The worker: one planned run trained in a process of its own, started as
`python -m harness.sweeps.worker SPEC.json RESULT.json` by the local executors and by each Slurm
job. It calls the same `lifecycle.train` as `harness run --resume` and writes the run's outcome
to RESULT.json. Also the two ends of that exchange: the spec a worker reads, the command that
starts it and the result it leaves.

May import `harness.training` (lazily, in the worker process only), `harness.config`,
`harness.store` and the sweep's plan and outcomes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from harness.config import load_recipe
from harness.errors import (
    DivergedError,
    HarnessError,
    InterruptedRun,
    RunBusyError,
    RunStateError,
    describe_os_error,
)
from harness.store.files import write_json
from harness.store.rundir import RunDir
from harness.sweeps.plan import PlannedRun
from harness.sweeps.summary import OUTCOMES

log = logging.getLogger("harness")

#: The folder holding this `harness` package: a worker started elsewhere imports this harness.
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def worker_spec(run: PlannedRun, runs_dir: Path, device: str | None) -> dict[str, Any]:
    """What a worker needs to train `run` (its SPEC.json)."""
    return {
        "recipe": str(run.recipe_path),
        "overrides": list(run.overrides),
        "run_id": run.run_id,
        "runs_dir": str(runs_dir),
        "device": device,
    }


def worker_command(python: str, spec_path: Path, result_path: Path) -> list[str]:
    """The command line that starts a worker."""
    return [python, "-m", "harness.sweeps.worker", str(spec_path), str(result_path)]


def read_result(path: Path) -> dict[str, Any] | None:
    """The outcome a worker wrote (None: it wrote none, or not one of the sweep's outcomes)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("outcome") in OUTCOMES else None


def worker_main(spec_path: str, result_path: str) -> int:
    """Train one planned run (resuming it) and write its outcome as JSON; returns the exit status."""
    cpus = os.environ.get("HARNESS_WORKER_CPUS")  # --jobs N on CPU: this worker's share of the cores
    if cpus and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError, ValueError):
            os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})
    from harness.training.lifecycle import train
    from harness.training.loop import RunOptions

    logging.basicConfig(level=logging.INFO, format="harness: %(message)s", stream=sys.stderr)
    spec = json.loads(Path(spec_path).read_text())
    result: dict[str, Any] = {"outcome": "failed", "run_id": spec["run_id"]}
    code = 1
    try:
        recipe = load_recipe(spec["recipe"], spec["overrides"])
        if recipe.run_id != spec["run_id"]:
            raise RunStateError(
                f"{spec['recipe']}: the recipe changed since the sweep started "
                f"(run id now {recipe.run_id}, planned {spec['run_id']})"
            )
        options = RunOptions(device=spec.get("device"), resume=True, progress=False)
        done = train(recipe, Path(spec["runs_dir"]), options)
        result["outcome"] = "skipped" if done.skipped else "ran"
        if done.rows:
            last = done.rows[-1]
            result.update(top1=last["top1"], epoch=last["epoch"], step=last["step"])
        code = 0
    except RunBusyError as exc:
        result.update(outcome="busy", error=str(exc))
        code = exc.exit_code
    except DivergedError as exc:
        status = RunDir(Path(spec["runs_dir"]), spec["run_id"]).read_status()
        result.update(outcome="diverged", error=str(exc), diverged_step=status.get("diverged_step"))
        code = exc.exit_code
    except InterruptedRun as exc:
        result.update(outcome="interrupted", error=None)
        code = exc.exit_code
    except HarnessError as exc:
        result.update(error=str(exc))
        code = exc.exit_code
        log.error("error: %s", exc)
    except KeyboardInterrupt:
        result.update(outcome="interrupted")
        code = InterruptedRun.exit_code
    except OSError as exc:  # the environment (a full disk, a read-only folder): one line
        result.update(error=describe_os_error(exc))
        log.error("error: %s", result["error"])
    except Exception as exc:  # a bug or the environment (CUDA, disk): keep the traceback in the log
        traceback.print_exc()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        result.update(error=f"{type(exc).__name__}: {first}".rstrip(": "))
    finally:
        write_json(Path(result_path), result)
    return code


def _main(argv: list[str]) -> int:
    if len(argv) == 2:
        return worker_main(argv[0], argv[1])
    print("usage: python -m harness.sweeps.worker SPEC.json RESULT.json (internal; use `harness sweep`)")
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
