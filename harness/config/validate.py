"""`harness validate`: load recipe files strictly without running them, one outcome per file.

Owns `validate_recipes`: the recipe files that paths and (quoted) globs name, as `harness sweep`
expands them, each loaded with the `--set` overrides; a problem is one line, the message of the
`HarnessError` it raised, and a recipe gives each of its independent problems (`problems_of`). A
recipe whose teacher is another run (`teacher.run`) is valid only if that run's recipe loads too:
the caller hands in the resolver (`harness.teachers.teacher.teacher_recipe`), which this package
may not import.
May import: `harness.errors`, `harness.schema`, `harness.config.recipe`, `harness.config.globs`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.config import Recipe, load_recipe
from harness.config.globs import expand
from harness.errors import HarnessError, RecipeError
from harness.schema import problems_of

#: resolves the recipe of a recipe's teacher run (`teacher.run`), raising HarnessError if it does not load
TeacherRecipe = Callable[[Recipe], object]


@dataclass(frozen=True)
class Checked:
    """One outcome: the recipe `path` loaded as `recipe`, or its `problems` (one line each: every
    independent one) with no recipe.

    `path` is None for a glob that matched nothing (or another problem with the pattern itself).
    """

    path: Path | None
    recipe: Recipe | None = None
    problems: tuple[str, ...] = ()

    @property
    def problem(self) -> str | None:
        """The first problem, or None where the recipe loaded."""
        return self.problems[0] if self.problems else None


def validate_recipes(
    patterns: Sequence[str], overrides: Sequence[str] = (), teacher_recipe: TeacherRecipe | None = None
) -> list[Checked]:
    """The outcome of every recipe file that `patterns` name, in order, after the problems of the
    patterns themselves (a glob that matches nothing). A pattern naming an existing file is that
    file, even where its name holds glob characters; a glob is expanded relative to the current
    folder (`**` also matches the files directly in the folder it starts from)."""
    paths, problems = recipe_paths(patterns)
    return problems + [_check(path, overrides, teacher_recipe) for path in paths]


def recipe_paths(patterns: Sequence[str], base: Path = Path()) -> tuple[list[Path], list[Checked]]:
    """The recipe files of `patterns` in order, and a problem for each pattern that names none."""
    paths: list[Path] = []
    problems: list[Checked] = []
    for pattern in patterns:
        try:
            paths += [Path(pattern)] if Path(pattern).exists() else expand(pattern, base)
        except HarnessError as exc:
            problems.append(Checked(None, problems=(str(exc),)))
    return paths, problems


def _check(path: Path, overrides: Sequence[str], teacher_recipe: TeacherRecipe | None) -> Checked:
    try:
        recipe = load_recipe(path, overrides)
        if teacher_recipe is not None and recipe.teacher is not None and recipe.teacher.run is not None:
            teacher_recipe(recipe)  # the teacher run's recipe must load too
    except HarnessError as exc:
        found = problems_of(exc) if isinstance(exc, RecipeError) else [exc]
        return Checked(path, problems=tuple(str(problem) for problem in found))
    return Checked(path, recipe)
