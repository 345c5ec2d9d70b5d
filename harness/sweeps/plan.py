"""The plan of a sweep: the sweep file and recipe paths expanded into `PlannedRun`s (entries x
seeds, duplicates once), the teacher runs its students need added (`with_teacher_runs`), and which
of them is a teacher run of another (`teacher_run_id`).

May import `harness.config` (recipes), `harness.teachers` (a student's teacher run), the run
folders' status (`harness.store`), the sweep file format (`harness.sweeps.spec`) and the trackers'
overrides (`harness.training.trackers`); nothing that trains or schedules.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.config import Recipe, load_recipe
from harness.config.globs import expand
from harness.errors import HarnessError, RecipeError
from harness.schema import to_dict
from harness.store.rundir import RunDir
from harness.sweeps.spec import load_sweep_file
from harness.training.trackers import with_trackers

log = logging.getLogger("harness")


@dataclass
class PlannedRun:
    """One run of the sweep: a recipe file, its overrides (the seed last) and what they resolve to."""

    recipe_path: Path
    overrides: tuple[str, ...]
    seed: int | None
    recipe: Recipe | None = None
    error: str | None = None  # the recipe does not load (the run is reported failed)
    origin: str | None = None  # the sweep file entry it comes from: `sweep.yaml: recipes[1]`
    teacher_of: str | None = None  # a teacher run the sweep trains: the run id of its first student

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
    track: Sequence[str] = (),
) -> list[PlannedRun]:
    """Expand a sweep file and/or recipe paths and globs into runs (entries x seeds, duplicates once).

    Seeds: `seeds` (the --seeds option) replaces every seed list; otherwise an entry's own
    `seeds`, else the file's `seeds`, else the recipe's own `seed`. Overrides apply in the order
    file `tracking` (the whole section), file `overrides`, entry `overrides`, `overrides` (--set),
    then `seed=N`; last the trackers `track` (--track) adds and the sweep's group (`tracking_group`).
    A recipe that does not load is a run with an `error` naming the entry it comes from
    (`sweep.yaml: recipes[1]: ...`).
    """
    entries: list[tuple[Path, list[int] | None, list[str], str | None]] = []
    group = tracking_group(sources, sweep_file)
    if sweep_file is not None:
        spec = load_sweep_file(sweep_file)
        file_tracking = []
        if spec.tracking is not None:
            file_tracking = [f"tracking={json.dumps(to_dict(spec.tracking))}"]
        base = sweep_file.parent
        for i, entry in enumerate(spec.recipes):
            entry_seeds = entry.seeds if entry.seeds is not None else spec.seeds
            origin = f"{sweep_file}: recipes[{i}]"
            try:
                paths = expand(entry.path, base)
            except RecipeError as exc:
                raise RecipeError(f"{origin}: {exc}") from None
            for path in paths:
                entry_overrides = [*file_tracking, *spec.overrides, *entry.overrides]
                entries.append((path, entry_seeds, entry_overrides, origin))
    for source in sources:
        for path in expand(source, Path.cwd()):
            entries.append((path, None, [], None))
    if not entries:
        raise RecipeError("nothing to run: give recipe paths or globs, or --file SWEEP.yaml")
    runs: list[PlannedRun] = []
    seen: set[str] = set()
    for path, entry_seeds, entry_overrides, origin in entries:
        for seed in seeds or entry_seeds or [None]:
            ovr = (*entry_overrides, *overrides, *([f"seed={seed}"] if seed is not None else []))
            run = PlannedRun(path, tuple(ovr), seed, origin=origin)
            try:
                run.recipe = load_recipe(path, ovr)
                tracking = with_trackers(run.recipe.tracking, track, group)
                if tracking:  # not part of the identity: the run id stays the same
                    run.overrides = (*ovr, *tracking)
                    run.recipe = load_recipe(path, run.overrides)
            except HarnessError as exc:
                run.error = f"{origin}: {exc}" if origin else str(exc)
            if run.run_id in seen:
                log.debug("sweep: %s (%s) listed twice; running it once", run.run_id, path)
                continue
            seen.add(run.run_id)
            runs.append(run)
    return runs


def tracking_group(sources: Sequence[str], sweep_file: Path | None) -> str | None:
    """The group of a sweep's runs in the trackers (W&B group, MLflow tag): the sweep file's
    name, else the first recipe path's (a `tracking.group` of the file or a recipe wins)."""
    if sweep_file is not None:
        return sweep_file.stem
    if not sources:
        return None
    return Path(sources[0]).stem.replace("*", "") or None


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


def with_teacher_runs(runs: list[PlannedRun], runs_dir: Path) -> list[PlannedRun]:
    """`runs` with the teacher runs they will train: each student's `teacher.run` whose run is
    neither in the sweep nor complete in `runs_dir` becomes a run of its own, once however many
    students share it, just before its first student (so every executor trains it first, and
    the plan and the summary count and time it)."""
    planned = {run.run_id for run in runs}
    out: list[PlannedRun] = []

    def add_teacher_of(run: PlannedRun) -> None:
        teacher = _teacher_run(run)
        if (
            teacher is None
            or teacher.run_id in planned
            or RunDir(runs_dir, teacher.run_id).status == "completed"
        ):
            return
        planned.add(teacher.run_id)
        add_teacher_of(teacher)  # a teacher run with a teacher run of its own trains after it
        out.append(teacher)

    for run in runs:
        add_teacher_of(run)
        out.append(run)
    return out


def _teacher_run(student: PlannedRun) -> PlannedRun | None:
    """The student's teacher run as a run of the sweep: the teacher's recipe file with the
    overrides that make it the run `teacher_recipe` names (seed, held-out split, saved epochs),
    which a worker loads like any other (None: no teacher run, or it cannot be written so)."""
    recipe = student.recipe
    if recipe is None or recipe.teacher is None or recipe.teacher.run is None:
        return None
    from harness.teachers.teacher import teacher_recipe

    try:
        want = teacher_recipe(recipe)
        assert want.source is not None
        plain = load_recipe(Path(want.source))
        overrides = [f"seed={want.seed}"]
        if want.data.holdout != plain.data.holdout:
            holdout = asdict(want.data.holdout) if want.data.holdout is not None else None
            overrides.append(f"data.holdout={json.dumps(holdout)}")
        if want.checkpoint.save_epochs != plain.checkpoint.save_epochs:
            overrides.append(f"checkpoint.save_epochs={json.dumps(want.checkpoint.save_epochs)}")
        teacher = load_recipe(Path(want.source), overrides)
    except HarnessError:  # the student's own run reports it
        return None
    if teacher.run_id != want.run_id:
        log.debug("sweep: teacher run %s of %s left to its student", want.run_id, student.run_id)
        return None
    return PlannedRun(
        Path(want.source),
        tuple(overrides),
        want.seed,
        teacher,
        origin=student.origin,
        teacher_of=student.run_id,
    )
