"""A run's life-cycle around the training loop: `train(recipe, runs_dir)` is the entry point.

`train` takes the run's lock, installs the stop signals, starts the run's runtime
(`harness.runtime.runtime.Runtime`) and hands the recipe and the runtime to the loop
(`harness.training.loop.Trainer`), which trains a missing teacher run first through
`teacher_run_trainer`. `prepare` reports a run that had completed (it is never trained twice),
refuses one that exists unfinished without `--resume` or `--restart`, checks the data files
before any folder is made, and sets an existing run aside for `--restart` (renamed, never
deleted). `record_failure` marks a run stopped by an error `interrupted` (a signal, Ctrl-C) or
`failed`, its metrics rows with it.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config.recipe import Recipe
from harness.data.preflight import check_data_files
from harness.errors import DivergedError, InterruptedRun, RunStateError
from harness.models.build import count_parameters
from harness.runtime import distributed
from harness.runtime.distributed import World
from harness.runtime.runtime import Runtime
from harness.runtime.signals import StopSignal
from harness.store.metrics_file import read_metrics
from harness.store.rundir import RunDir
from harness.teachers.teacher import TrainRun
from harness.training.loop import RunOptions, Trainer
from harness.training.trackers import Trackers, check_installed

log = logging.getLogger("harness")


def prepare(run: RunDir, recipe: Recipe, resume: bool, restart: bool, world: World) -> bool:
    """True when the run had completed (nothing to train); otherwise make it ready to train, or
    raise `RunStateError` naming what to pass."""
    status = run.read_status().get("status")
    if status == "completed" and not restart:
        return True
    fresh = not run.last_checkpoint.exists() and not run.metrics.exists()
    if status is not None and not (resume or restart or fresh):
        raise RunStateError(
            f"{run.root}: run exists with status {status}; pass --resume to continue it "
            "or --restart to set it aside and start over"
        )
    check_data_files(recipe.data)  # a run that cannot start leaves no folder behind
    if restart and run.root.exists() and world.is_main:
        if run.locked_elsewhere():
            raise RunStateError(f"{run.root}: run is locked by another process")
        log.info("previous run set aside as %s", set_aside(run))
    distributed.barrier()
    return False


def set_aside(run: RunDir) -> Path:
    """Rename a run folder out of the way (nothing is deleted)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = run.root.with_name(f"{run.root.name}.old-{stamp}")
    shutil.move(str(run.root), str(target))
    return target


def record_failure(run: RunDir, trainer: Trainer, stop: StopSignal, exc: BaseException) -> bool:
    """Mark a run stopped by `exc` `interrupted` (a signal, Ctrl-C) or `failed` (the error's first
    line), its rows with it; returns whether a stop signal was behind the error."""
    # A stop signal that surfaced as another error (a teacher run trained inside this one was
    # interrupted and reported as a TeacherError) still means `interrupted`.
    signalled = stop.signum is not None and not isinstance(exc, KeyboardInterrupt)
    # (a full disk may refuse these writes too: the error that stopped the run is the one to report)
    if trainer.world.is_main and run.root.exists():
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        with contextlib.suppress(OSError):
            if signalled or isinstance(exc, KeyboardInterrupt):
                name = signal.Signals(stop.signum).name if signalled else "SIGINT"
                run.write_status("interrupted", epoch=trainer.epoch, step=trainer.step, signal=name)
            else:
                error = f"{type(exc).__name__}: {message}"
                run.write_status("failed", epoch=trainer.epoch, step=trainer.step, error=error)
        with contextlib.suppress(Exception):
            stopped = signalled or isinstance(exc, KeyboardInterrupt)
            trainer.write_rows("interrupted" if stopped else "failed")
    return signalled


@dataclass
class RunResult:
    """What a finished (or already finished) run produced."""

    run_id: str
    run_dir: Path
    status: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: bool = False  # it had completed before


def teacher_run_trainer(runs_dir: Path, options: RunOptions) -> TrainRun:
    """How a missing teacher run is trained first: resumed where it stopped, with this run's
    device, progress bar and recipe transform, in the same runs folder."""

    def train_teacher(teacher_recipe: Recipe) -> RunDir:
        teacher_options = RunOptions(
            device=options.device,
            resume=True,
            progress=options.progress,
            transform=options.transform,
        )
        result = train(teacher_recipe, runs_dir, teacher_options)
        return RunDir(runs_dir, result.run_id)

    return train_teacher


def _completed(recipe: Recipe, run: RunDir) -> RunResult:
    """The result of a run that had completed before (its metrics read back)."""
    log.info("run %s already completed: %s", recipe.run_id, run.root)
    rows = read_metrics(run.metrics) if run.metrics.exists() else []
    return RunResult(recipe.run_id, run.root, "completed", rows, skipped=True)


def train(recipe: Recipe, runs_dir: Path | str, options: RunOptions | None = None) -> RunResult:
    """Train `recipe` into `<runs_dir>/<run_id>/` (or report it done), with resume and signals."""
    options = options or RunOptions()
    runs_dir = Path(runs_dir)
    world = distributed.world_from_env()
    run = RunDir(runs_dir, recipe.run_id)
    check_installed(recipe.tracking)  # a tracker asked for and not installed: before any folder
    if prepare(run, recipe, options.resume, options.restart, world):
        return _completed(recipe, run)
    lock = run if world.is_main else contextlib.nullcontext()
    with lock, StopSignal() as stop:
        # Another process (a second sweep) may have finished the run between the check above
        # and taking the lock: look again now that the run is ours, so it never trains twice.
        if run.read_status().get("status") == "completed" and not options.restart:
            return _completed(recipe, run)
        runtime = Runtime.start(recipe.runtime, recipe.seed, options.device)
        trainer = Trainer(recipe, runs_dir, options, runtime, teacher_run_trainer(runs_dir, options))
        log.info("run %s -> %s", recipe.run_id, run.root)
        try:
            trainer.start_files()
            trainer.build()
            trainer.say(
                f"{recipe.model.arch} ({count_parameters(trainer.model) / 1e6:.2f}M params) "
                f"with {trainer.strategy!r} on {trainer.data.describe}, device {trainer.device}"
            )
            if world.is_main and not (options.resume and run.last_checkpoint.exists()):
                run.write_status("running", epoch=0, step=0)
            trainer.trackers = Trackers.open(recipe, run, runs_dir, world.is_main)
            trainer.fit(stop)
            trainer.trackers.finish(trainer.rows, trainer.columns, run.metrics)
        except (DivergedError, InterruptedRun):
            raise
        except BaseException as exc:
            signalled = record_failure(run, trainer, stop, exc)
            if signalled and isinstance(exc, Exception):
                raise InterruptedRun(f"run {recipe.run_id} interrupted; resume with --resume") from exc
            raise
        finally:
            trainer.trackers.close()
            trainer.close()
    return RunResult(recipe.run_id, run.root, "completed", trainer.rows)
