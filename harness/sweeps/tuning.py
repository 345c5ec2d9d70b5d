"""The tuning file format (docs/tuning.md): `TuningFile`, its search space and its strict loading.

Equal-budget tuning (Dodge et al. 2019, "Show your work: improved reporting of experimental
results"): every method gets the same number of trials over its own parameters and the learning
rate, each selected on the held-out validation split (`data.holdout`, the `holdout_top1` column),
never on the test split. A file:

    recipes: [../recipes/fashion_mnist/resnet10t_kd.yaml]   # paths, globs or {path, trials}
    trials: 8                                                # each method's budget
    sampler: {name: tpe, seed: 0}
    objective: holdout_top1_last
    space:                                   # optional: field paths (every recipe) or, under a
      optim.lr: {log: [0.01, 0.3]}           # method's name, that method's own space
      kd: {strategy.params.temperature: {log: [1, 8]}}

A method the file gives no space for searches its strategy's `SPACE` (next to its Params in
harness/strategies/<name>.py); the learning rate is always searched.

May import `harness.config` (YAML reading, recipes), `harness.schema`, `harness.strategies` (the
default spaces) and `harness.errors`; nothing that trains or schedules.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from harness.config import load_recipe, read_yaml_file
from harness.config.globs import expand
from harness.errors import HarnessError, RecipeError
from harness.schema import SEED_MAX, fail, field, from_dict, ge, suggest

#: The learning-rate range searched when a method's space does not give one.
DEFAULT_LR: dict[str, list[float]] = {"log": [0.01, 0.3]}
#: The objectives a study may maximise: the held-out split's top-1, never the test split's.
OBJECTIVES = ("holdout_top1_last", "holdout_top1_best")
KINDS = ("log", "float", "int", "choice")


@dataclass
class Dist:
    """One searched field: exactly one of `log: [lo, hi]`, `float: [lo, hi]`, `int: [lo, hi]`,
    `choice: [a, b, ...]` (checked by `parse_dist`)."""

    kind: str
    values: list[Any]

    def plain(self) -> dict[str, list[Any]]:
        return {self.kind: list(self.values)}


def parse_dist(value: Any, path: str) -> Dist:
    """A `{kind: [...]}` mapping as a `Dist`; any problem fails naming `path`."""
    if not isinstance(value, dict) or len(value) != 1:
        fail(path, f"must be one of {', '.join(f'{{{k}: [...]}}' for k in KINDS)}, got {value!r}")
    kind, values = next(iter(value.items()))
    if kind not in KINDS:
        fail(f"{path}.{kind}", "unknown kind" + suggest(str(kind), KINDS) + f" (known: {', '.join(KINDS)})")
    sub = f"{path}.{kind}"
    if not isinstance(values, list):
        fail(sub, f"must be a list, got {values!r}")
    if kind == "choice":
        if len(values) < 2:
            fail(sub, "must list at least two values (one value is not a search)")
        return Dist(kind, values)
    if len(values) != 2:
        fail(sub, f"must be [low, high], got {len(values)} values")
    wanted = int if kind == "int" else (int, float)
    if not all(isinstance(v, wanted) and not isinstance(v, bool) for v in values):
        fail(sub, f"bounds must be {'integers' if kind == 'int' else 'numbers'}, got {values}")
    lo, hi = values
    if not all(math.isfinite(v) for v in values):
        fail(sub, "bounds must be finite")
    if lo >= hi:
        fail(sub, f"empty or inverted range [{lo}, {hi}]")
    if kind == "log" and lo <= 0:
        fail(sub, f"a log range must stay above 0, got [{lo}, {hi}]")
    return Dist(kind, [v if kind == "int" else float(v) for v in values])


@dataclass(kw_only=True)
class TuningEntry:
    """One `recipes:` item in its long form (a bare string is `{path: <string>}`)."""

    path: str = field(doc="base recipe file or glob, relative to the tuning file's folder")
    trials: int | None = field(None, check=ge(1), doc="this recipe's trial budget (over the file's)")


@dataclass(kw_only=True)
class Sampler:
    """Optuna's sampler and its seed."""

    name: Literal["tpe", "random", "grid"] = field("tpe", doc="tpe | random | grid")
    seed: int = field(0, check=ge(0), int_max=SEED_MAX, doc="seed of the sampler")


@dataclass(kw_only=True)
class TuningFile:
    """A tuning file: base recipes, their search space, the budget and the selection."""

    recipes: list[TuningEntry] = field(
        check=lambda v: None if v else "must list at least one recipe", doc="base recipes (paths, globs)"
    )
    trials: int = field(check=ge(1), doc="trials of every method (equal budget)")
    space: dict[str, Any] = field({}, doc="field -> distribution, or method -> {field -> distribution}")
    sampler: Sampler = field(Sampler, doc="Optuna sampler")
    objective: str = field("holdout_top1_last", doc="holdout_top1_last | holdout_top1_best")
    pruner: Literal["median", "successive_halving"] | None = field(None, doc="prune at epoch ends")
    final_seeds: int = field(0, check=ge(0), doc="seeds the best configuration is retrained on")
    overrides: list[str] = field([], doc="--set overrides of every trial (not searched)")

    def validate(self, path: str) -> None:
        if self.objective not in OBJECTIVES:
            hint = " (tuning never reads the test split)" if "holdout" not in self.objective else ""
            fail(
                f"{path}.objective" if path else "objective",
                f"must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}{hint}",
            )


@dataclass
class TunedRecipe:
    """One base recipe of a tuning file with its resolved space and budget."""

    path: Path
    name: str
    method: str
    seed: int
    space: dict[str, Dist]
    trials: int
    overrides: tuple[str, ...]

    def space_hash(self) -> str:
        """sha256 of the searched space (fields and distributions), stored with the study."""
        blob = json.dumps({k: d.plain() for k, d in self.space.items()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()


def load_tuning_file(path: Path) -> TuningFile:
    """Read and strictly validate a tuning file; any problem is one RecipeError line naming it."""
    data = read_yaml_file(path, "tuning")
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a tuning file must be a mapping with `recipes` and `trials`")
    if isinstance(data.get("recipes"), list):
        data = {**data, "recipes": [{"path": r} if isinstance(r, str) else r for r in data["recipes"]]}
    try:
        return from_dict(TuningFile, data)
    except RecipeError as exc:
        raise RecipeError(f"{path}: {exc}") from None


def default_space(strategy: str) -> dict[str, Any]:
    """A strategy's default space: its module's `SPACE` (fields of `strategy.params`)."""
    import importlib

    from harness import strategies

    module = importlib.import_module(strategies.get(strategy).__module__)
    return {f"strategy.params.{k}": v for k, v in getattr(module, "SPACE", {}).items()}


def _parse_space(raw: dict[str, Any], where: str) -> dict[str, Dist]:
    space = {}
    for key, value in raw.items():
        space[key] = parse_dist(value, f"{where}.{key}")
    return space


def resolve(spec: TuningFile, path: Path) -> list[TunedRecipe]:
    """Each base recipe with its space (the file's common fields over the method's own, else its
    strategy's SPACE; the learning rate always), checked against the recipe: every bound and
    choice is loaded through the `--set` machinery, so an unknown field or a wrong type fails here."""
    common = {k: v for k, v in spec.space.items() if "." in k}
    methods = {k: v for k, v in spec.space.items() if "." not in k}
    for name, value in methods.items():
        if not isinstance(value, dict):
            raise RecipeError(f"{path}: space.{name}: must be a mapping of field -> distribution")
    tuned: list[TunedRecipe] = []
    for i, entry in enumerate(spec.recipes):
        try:
            paths = expand(entry.path, path.parent)
        except RecipeError as exc:
            raise RecipeError(f"{path}: recipes[{i}]: {exc}") from None
        for recipe_path in paths:
            tuned.append(_resolve_one(spec, path, recipe_path, entry, common, methods))
    return tuned


def _resolve_one(
    spec: TuningFile,
    path: Path,
    recipe_path: Path,
    entry: TuningEntry,
    common: dict[str, Any],
    methods: dict[str, Any],
) -> TunedRecipe:
    base = load_recipe(recipe_path, spec.overrides)
    method = base.label
    own = methods.get(method, methods.get(base.strategy.name))
    where = f"space.{method}" if own is not None else "space"
    raw = dict(own) if own is not None else default_space(base.strategy.name)
    raw.setdefault("optim.lr", DEFAULT_LR)
    raw.update(common)
    try:
        space = _parse_space(raw, where)
    except RecipeError as exc:
        raise RecipeError(f"{path}: {exc}") from None
    for key, dist in space.items():
        values = dist.values if dist.kind == "choice" else dist.values[:2]
        for value in values:
            try:
                load_recipe(recipe_path, [*spec.overrides, f"{key}={json.dumps(value)}"])
            except HarnessError as exc:
                problem = f"{value!r} does not fit {recipe_path.name}: {exc}"
                raise RecipeError(f"{path}: {where}.{key}: {problem}") from None
    trials = entry.trials if entry.trials is not None else spec.trials
    return TunedRecipe(
        recipe_path, base.name or recipe_path.stem, method, base.seed, space, trials, tuple(spec.overrides)
    )
