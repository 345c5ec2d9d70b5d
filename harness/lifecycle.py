"""Before and after a run trains: whether it may start, and what a run stopped by an error records.

`prepare` reports a run that had completed (it is never trained twice), refuses one that exists
unfinished without `--resume` or `--restart`, checks the data files before any folder is made,
and sets an existing run aside for `--restart` (renamed, never deleted). `record_failure` marks a
run stopped by an error `interrupted` (a signal, Ctrl-C) or `failed`, its metrics rows with it.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

from harness import distributed
from harness.data.preflight import check_data_files
from harness.distributed import World
from harness.errors import RunStateError
from harness.recipe import Recipe
from harness.rundir import RunDir
from harness.signals import StopSignal

if TYPE_CHECKING:
    from harness.runner import Trainer

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
