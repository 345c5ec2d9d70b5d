"""The sweep file format (docs/sweeps.md): `SweepFile`, its `SweepEntry` items, strict loading,
the `--seeds` option and recipe globs.

May import `harness.config` (YAML reading), `harness.schema`, `harness.errors` and the Slurm
resources of a sweep file (`harness.sweeps.resources`); nothing that trains or schedules.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.config import read_yaml_file
from harness.config.recipe import TrackingConfig
from harness.errors import RecipeError
from harness.schema import SEED_MAX, each, field, from_dict, ge
from harness.sweeps.resources import SlurmResources


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
    tracking: TrackingConfig | None = field(
        None, doc="experiment trackers of every run (over the recipes' own; group: the file's name)"
    )


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
