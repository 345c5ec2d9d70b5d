"""`harness cache-teacher`: build (or rebuild) the per-view teacher cache a recipe reads."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from harness import distributed
from harness.errors import RecipeError
from harness.recipe import Recipe
from harness.runner import RunOptions, Trainer
from harness.teacher_cache import CachedTeacher


def cache_teacher(recipe: Recipe, runs_dir: Path, options: RunOptions, rebuild: bool = False) -> Path:
    """Make sure the recipe's teacher cache exists (training the teacher run first if missing)."""
    if recipe.teacher is None:
        raise RecipeError("teacher: the recipe names no teacher, so there is nothing to cache")
    source = recipe.source
    recipe = replace(recipe, teacher=replace(recipe.teacher, cache=True))
    recipe.source = source
    trainer = Trainer(recipe, runs_dir, options, distributed.world_from_env())
    trainer.rebuild_cache = rebuild
    trainer.build()
    assert isinstance(trainer.teacher, CachedTeacher) and trainer.teacher.folder is not None
    trainer.data.close()
    return trainer.teacher.folder
