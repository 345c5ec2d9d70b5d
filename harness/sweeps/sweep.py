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

Each run trains in its own worker process (`python -m harness.sweeps.sweep worker SPEC RESULT`), for
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
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import Any

from harness.config.globs import expand
from harness.config.recipe import Recipe, load_recipe, read_yaml_file
from harness.errors import (
    DivergedError,
    HarnessError,
    InterruptedRun,
    RecipeError,
    RunBusyError,
    RunStateError,
    describe_os_error,
)
from harness.schema import SEED_MAX, each, field, from_dict, ge
from harness.store.files import FileLock, write_json
from harness.store.rundir import RunDir
from harness.sweeps.resources import SlurmResources

log = logging.getLogger("harness")

#: Outcomes of one run in a sweep.
OUTCOMES = ("ran", "skipped", "failed", "diverged", "busy", "interrupted", "pending", "submitted")
FAILED_OUTCOMES = ("failed", "diverged")
BUSY_EXIT = RunBusyError.exit_code


# ------------------------------------------------------------------------------ sweep file
def _at_least_one(what: str):
    return lambda v: None if v is None or len(v) > 0 else f"must list at least one {what}"


@dataclass(kw_only=True)
class SweepEntry:
    """One `recipes:` item in its long form (a bare string is `{path: <string>}`)."""

    path: str = field(doc="recipe file or glob, relative to the sweep file's folder")
    seeds: list[int] | None = field(
        None,
        check=lambda v: _at_least_one("seed")(v) or each(ge(0))(v),
        int_max=SEED_MAX,
        doc="this entry's seeds",
    )
    overrides: list[str] = field([], doc="--set overrides of this entry, applied after the global ones")


@dataclass(kw_only=True)
class SweepFile:
    """A sweep file: default seeds and overrides, and the recipes to run."""

    seeds: list[int] | None = field(
        None,
        check=lambda v: _at_least_one("seed")(v) or each(ge(0))(v),
        int_max=SEED_MAX,
        doc="default seeds of every entry (default: each recipe's own seed)",
    )
    overrides: list[str] = field([], doc="--set overrides applied to every entry")
    recipes: list[SweepEntry] = field(check=_at_least_one("recipe"), doc="recipe paths/globs or entries")
    slurm: SlurmResources | None = field(None, doc="resources of each run's job under `--executor slurm`")


def load_sweep_file(path: Path) -> SweepFile:
    """Read and strictly validate a sweep file; any problem is one RecipeError line naming it."""
    data = read_yaml_file(path, "sweep")
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a sweep file must be a mapping with a `recipes` list")
    if isinstance(data.get("recipes"), list):
        # the short form `- some/recipe.yaml` is the long form `- path: some/recipe.yaml`
        data = {**data, "recipes": [{"path": r} if isinstance(r, str) else r for r in data["recipes"]]}
    try:
        return from_dict(SweepFile, data)
    except RecipeError as exc:
        raise RecipeError(f"{path}: {exc}") from None


def parse_seeds(text: str) -> list[int]:
    """`0,1,2` -> [0, 1, 2] (the --seeds option)."""
    seeds = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit():
            raise RecipeError(f"--seeds {text}: expected comma-separated non-negative integers, e.g. 0,1,2")
        seeds.append(int(part))
    return seeds


# ------------------------------------------------------------------------------ the plan
@dataclass
class PlannedRun:
    """One run of the sweep: a recipe file, its overrides (the seed last) and what they resolve to."""

    recipe_path: Path
    overrides: tuple[str, ...]
    seed: int | None
    recipe: Recipe | None = None
    error: str | None = None  # the recipe does not load (the run is reported failed)

    @property
    def run_id(self) -> str:
        if self.recipe is not None:
            return self.recipe.run_id
        return f"{self.recipe_path.stem}-s{'?' if self.seed is None else self.seed}-invalid"

    @property
    def group(self) -> str | None:
        return self.recipe.group_key() if self.recipe is not None else None


def plan_sweep(
    sources: Sequence[str] = (),
    sweep_file: Path | None = None,
    seeds: list[int] | None = None,
    overrides: Sequence[str] = (),
) -> list[PlannedRun]:
    """Expand a sweep file and/or recipe paths and globs into runs (entries x seeds, duplicates once).

    Seeds: `seeds` (the --seeds option) replaces every seed list; otherwise an entry's own
    `seeds`, else the file's `seeds`, else the recipe's own `seed`. Overrides apply in the order
    file `overrides`, entry `overrides`, `overrides` (--set), then `seed=N`.
    """
    entries: list[tuple[Path, list[int] | None, list[str]]] = []
    if sweep_file is not None:
        spec = load_sweep_file(sweep_file)
        base = sweep_file.parent
        for i, entry in enumerate(spec.recipes):
            entry_seeds = entry.seeds if entry.seeds is not None else spec.seeds
            try:
                paths = expand(entry.path, base)
            except RecipeError as exc:
                raise RecipeError(f"{sweep_file}: recipes[{i}]: {exc}") from None
            for path in paths:
                entries.append((path, entry_seeds, [*spec.overrides, *entry.overrides]))
    for source in sources:
        for path in expand(source, Path.cwd()):
            entries.append((path, None, []))
    if not entries:
        raise RecipeError("nothing to run: give recipe paths or globs, or --file SWEEP.yaml")
    runs: list[PlannedRun] = []
    seen: set[str] = set()
    for path, entry_seeds, entry_overrides in entries:
        for seed in seeds or entry_seeds or [None]:
            ovr = (*entry_overrides, *overrides, *([f"seed={seed}"] if seed is not None else []))
            run = PlannedRun(path, tuple(ovr), seed)
            try:
                run.recipe = load_recipe(path, ovr)
            except HarnessError as exc:
                run.error = str(exc)
            if run.run_id in seen:
                log.debug("sweep: %s (%s) listed twice; running it once", run.run_id, path)
                continue
            seen.add(run.run_id)
            runs.append(run)
    return runs


# ------------------------------------------------------------------------------ the summary
@dataclass
class RunRecord:
    """What happened to one run (one item of the summary's `runs`)."""

    run_id: str
    recipe: str
    seed: int | None
    overrides: list[str]
    group: str | None
    outcome: str = "pending"
    status: str | None = None  # the run folder's status afterwards
    error: str | None = None
    earlier: bool = False  # the outcome dates from an earlier invocation (skipped, diverged before)
    resumed: bool = False  # it continued an unfinished run
    exit_code: int | None = None  # the worker's
    seconds: float | None = None
    top1: float | None = None
    epoch: int | None = None
    step: int | None = None
    diverged_step: int | None = None


@dataclass
class SweepSummary:
    """The sweep's record, written as JSON after every run and printed at the end."""

    sweep_id: str
    runs_dir: str
    command: list[str]
    started: float
    finished: float | None = None
    interrupted: str | None = None  # the signal that stopped the sweep
    runs: list[RunRecord] = dc_field(default_factory=list)
    leaderboard: dict[str, Any] = dc_field(default_factory=dict)
    path: Path | None = None

    def counts(self) -> dict[str, int]:
        counts = {o: sum(r.outcome == o for r in self.runs) for o in OUTCOMES}
        if not counts["submitted"]:  # only Slurm sweeps that do not wait have submitted runs
            del counts["submitted"]
        return counts

    @property
    def exit_code(self) -> int:
        """130 if interrupted, 1 if a run failed or diverged (or the leaderboard failed), else 0."""
        if self.interrupted:
            return InterruptedRun.exit_code
        failed = any(r.outcome in FAILED_OUTCOMES for r in self.runs)
        return 1 if failed or self.leaderboard.get("status") == "failed" else 0

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "path"}
        d["counts"] = self.counts()
        d["exit_code"] = self.exit_code
        return d

    def save(self) -> None:
        if self.path is not None:
            write_json(self.path, self.to_dict())

    def render(self) -> str:
        """A few lines for the terminal: counts, then one line per run."""
        counts = ", ".join(f"{n} {o}" for o, n in self.counts().items() if n)
        lines = [f"sweep {self.sweep_id}: {len(self.runs)} runs: {counts}"]
        if self.interrupted:
            lines[0] += f" (interrupted by {self.interrupted})"
        width = max((len(r.run_id) for r in self.runs), default=0)
        for r in self.runs:
            if r.error:
                detail = r.error
            elif r.top1 is not None:
                detail = f"top1 {r.top1:.2f}"
            else:
                detail = ""
            if r.outcome == "diverged" and r.diverged_step is not None:
                detail = f"non-finite loss at step {r.diverged_step}" + (" (earlier)" if r.earlier else "")
            if r.resumed and r.outcome == "ran":
                detail += " (resumed)"
            if r.seconds is not None and not r.earlier:
                detail += f"  {r.seconds:.1f} s"
            lines.append(f"  {r.outcome:<11} {r.run_id:<{width}}  {detail}".rstrip())
        lb = self.leaderboard
        if lb.get("status") == "written":
            lines.append(f"leaderboard: {lb['out']}")
        elif lb.get("status"):
            lines.append(f"leaderboard {lb['status']}: {lb.get('error') or lb.get('reason', '')}".rstrip())
        if self.path is not None:
            lines.append(f"summary: {self.path}")
        return "\n".join(lines)


def new_sweep_id() -> str:
    """Unique per invocation, also across machines sharing a runs folder: time, host, pid."""
    host = "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname())[:40]
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{host}-{os.getpid()}"


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


# ------------------------------------------------------------------------------ running
@dataclass
class SweepOptions:
    """How to run a sweep (none of it changes a run's identity)."""

    device: str | None = None
    keep_going: bool = True
    leaderboard: bool = True
    leaderboard_out: Path | None = None  # default: <runs-dir>/leaderboard
    python: str = sys.executable
    jobs: int = 1  # runs at once (harness/sweeps/local.py)
    # another executor: called as executor(runs, runs_dir, options) instead (harness/sweeps/slurm.py)
    executor: Any = None


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
        RunRecord(r.run_id, str(r.recipe_path), r.seed, list(r.overrides), r.group, error=r.error)
        for r in runs
    ]
    summary.save()
    return summary


def run_sweep(
    runs: list[PlannedRun], runs_dir: Path | str, options: SweepOptions | None = None
) -> SweepSummary:
    """Run (or skip, or resume) every planned run, then regenerate the leaderboard."""
    options = options or SweepOptions()
    if options.executor is not None:
        return options.executor(runs, runs_dir, options)
    runs_dir = Path(runs_dir).resolve()
    summary = start_summary(runs, runs_dir, options)
    stop_early = False
    with SignalForwarder() as stop, tempfile.TemporaryDirectory(prefix="harness-sweep-") as tmp:
        if options.jobs > 1:
            from harness.sweeps.local import run_in_slots

            run_in_slots(runs, summary, runs_dir, options, stop, Path(tmp))
        one_by_one = enumerate(zip(runs, summary.runs, strict=True)) if options.jobs == 1 else iter(())
        for i, (run, record) in one_by_one:
            if stop.signum is not None or stop_early:
                break
            log.info("sweep [%d/%d] %s (%s)", i + 1, len(runs), record.run_id, run.recipe_path)
            _run_one(run, record, runs_dir, options, stop, Path(tmp) / f"run{i}")
            if record.outcome == "interrupted" and stop.signum is None:
                stop.signum = signal.SIGTERM  # the worker was stopped from outside: stop too
            if record.outcome in FAILED_OUTCOMES and not options.keep_going:
                stop_early = True
            summary.save()
        summary.interrupted = stop.name
    if summary.interrupted:
        log.info("sweep: stopped by %s; run it again to resume", summary.interrupted)
    if options.leaderboard and not summary.interrupted:
        out = Path(options.leaderboard_out) if options.leaderboard_out else runs_dir / "leaderboard"
        summary.leaderboard = regenerate_leaderboard(runs_dir, out)
    summary.finished = time.time()
    summary.save()
    return summary


def _run_one(
    run: PlannedRun,
    record: RunRecord,
    runs_dir: Path,
    options: SweepOptions,
    stop: SignalForwarder,
    scratch: Path,
    slot_env: dict[str, str] | None = None,
) -> None:
    """Decide what to do with one run and do it, filling in `record`."""
    if run.recipe is None:
        record.outcome, record.error = "failed", run.error
        return
    rundir = RunDir(runs_dir, run.run_id)
    try:
        before = rundir.read_status()
    except RunStateError as exc:
        record.outcome, record.error = "failed", str(exc)
        return
    status = before.get("status")
    if status == "completed":
        _fill_from_folder(record, rundir, before)
        record.outcome, record.earlier = "skipped", True
        return
    if status == "diverged":
        _fill_from_folder(record, rundir, before)
        record.outcome, record.earlier = "diverged", True
        record.error = "diverged in an earlier sweep (retry it with `harness run RECIPE --restart`)"
        return
    from harness.data.preflight import check_data_files

    try:  # a run that cannot start gets no folder (`harness run` checks the same)
        check_data_files(run.recipe.data)
    except HarnessError as exc:
        record.outcome, record.error, record.exit_code = "failed", str(exc), exc.exit_code
        return
    with claim(rundir) as ours:
        if ours:
            # the other sweep that held the claim may have just finished the run: look again
            status = rundir.read_status().get("status")
            if status == "completed":
                _fill_from_folder(record, rundir, rundir.read_status())
                record.outcome, record.earlier = "skipped", True
                return
        if not ours or rundir.locked_elsewhere():
            record.outcome, record.status = "busy", status
            return
        from harness.sweeps.slurm import scheduled_elsewhere

        job = scheduled_elsewhere(rundir)
        if job is not None:  # a Slurm sweep has a job queued or running for it
            record.outcome, record.status = "busy", status
            record.error = f"Slurm job {job} queued or running"
            return
        if stop.signum is not None:  # asked to stop while we looked: do not start the worker
            return
        record.resumed = rundir.last_checkpoint.exists()
        _spawn(run, record, runs_dir, options, stop, scratch, slot_env)


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
    spec.write_text(
        json.dumps(
            {
                "recipe": str(run.recipe_path),
                "overrides": list(run.overrides),
                "run_id": run.run_id,
                "runs_dir": str(runs_dir),
                "device": options.device,
            }
        )
    )
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parent.parent)  # the worker imports this harness
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.update(slot_env or {})
    started = time.perf_counter()
    child = subprocess.Popen(
        [options.python, "-m", "harness.sweeps.sweep", "worker", str(spec), str(result_path)],
        env=env,
        preexec_fn=_die_with_parent,
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
    result = _read_result(result_path)
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
        _mark_failed(rundir, record.error or "worker died")
    with contextlib.suppress(RunStateError):
        record.status = rundir.read_status().get("status")


def _read_result(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("outcome") in OUTCOMES else None


def _fill_from_folder(record: RunRecord, rundir: RunDir, status: dict[str, Any]) -> None:
    """Final top-1, epoch and step of a run that finished before, from its folder."""
    record.status = status.get("status")
    record.epoch, record.step = status.get("epoch"), status.get("step")
    record.diverged_step = status.get("diverged_step")
    if rundir.metrics.exists():
        from harness.metrics import read_metrics

        with contextlib.suppress(Exception):
            rows = read_metrics(rundir.metrics)
            if rows:
                record.top1 = rows[-1]["top1"]


def _mark_failed(rundir: RunDir, error: str) -> None:
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


def regenerate_leaderboard(runs_dir: Path, out_dir: Path) -> dict[str, Any]:
    """`harness.leaderboard.generate(runs_dir, out_dir)`, reported rather than raised."""
    if importlib.util.find_spec("harness.leaderboard") is None:
        return {"status": "skipped", "reason": "harness.leaderboard is not part of this installation"}
    try:
        from harness.leaderboard import generate

        generate(runs_dir, out_dir)
    except Exception as exc:  # the runs are done and recorded; report the leaderboard's failure
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return {"status": "failed", "out": str(out_dir), "error": f"{type(exc).__name__}: {first}"}
    return {"status": "written", "out": str(out_dir)}


# ------------------------------------------------------------------------------ the worker
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
    if len(argv) == 3 and argv[0] == "worker":
        return worker_main(argv[1], argv[2])
    print(
        "usage: python -m harness.sweeps.sweep worker SPEC.json RESULT.json (internal; use `harness sweep`)"
    )
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
