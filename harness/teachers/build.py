"""`harness cache-teacher`: build (or rebuild) the per-view teacher cache a recipe reads.

Only what the cache needs is built: the recipe's data, its teacher (a missing teacher run is
trained first with the `train_run` the caller hands in: `harness cache-teacher` passes
`lifecycle.teacher_run_trainer`, as `harness run` does) and the cache; no student, optimizer or
scheduler. The
runtime (`harness.runtime.runtime.Runtime`: device, seeds, kernels, memory format, autocast) is
the run's own, so the cache holds the bytes a run of the recipe would build.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

from harness.config.recipe import Recipe
from harness.data import build_data
from harness.runtime.runtime import Runtime
from harness.teachers import cache as teacher_cache
from harness.teachers.teacher import TrainRun, build_teacher, measure_teacher, view_forward

log = logging.getLogger("harness")


def cache_teacher(
    recipe: Recipe,
    runs_dir: Path,
    train_run: TrainRun | None,
    device_name: str | None = None,
    rebuild: bool = False,
) -> Path:
    """Make sure the recipe's teacher cache exists (a missing teacher run trained first with
    `train_run`; None: it must have completed); `device_name` overrides the recipe's device.
    Refused (before anything is built) where the recipe's runs would not read the cache."""
    note = teacher_cache.require_readers(recipe)
    runs_dir = Path(runs_dir)
    runtime = Runtime.start(recipe.runtime, recipe.seed, device_name)
    world = runtime.world

    def say(line: str) -> None:
        if world.is_main:
            log.info(line)

    if note is not None:
        say(note)

    data = build_data(
        recipe.data, device=runtime.device, seed=recipe.seed, rank=world.rank, world_size=world.world_size
    )
    try:
        teacher, weights = build_teacher(recipe, runs_dir, train_run, None, data, runtime)
        metrics, _ = measure_teacher(teacher, data, recipe.eval.ece_bins, runtime, say)
        cached = teacher_cache.open_or_build(
            teacher,
            weights,
            data,
            recipe,
            runs_dir=runs_dir,
            runtime=runtime,
            say=say,
            forward=partial(view_forward, teacher, runtime=runtime),
            teacher_metrics=metrics,
            rebuild=rebuild,
        )
    finally:
        data.close()
    assert cached.folder is not None
    return cached.folder
