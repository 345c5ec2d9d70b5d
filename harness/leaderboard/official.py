"""The paper recipes' training settings beside the values of the code or paper each one cites.

`leaderboard/reference/official_settings.csv` holds the official values, one per line, with the
recipes they apply to (globs under `recipes/`, `;`-separated), the setting, the value, where it is
written (repository@commit:file:line, or the paper and its section) and, where our recipes differ,
why (`note`). `compare` reads every recipe a line names and renders our value in the same words
(`recipe_settings`), so a recipe that drifts from its source shows up as a deviation; a deviation
without a note is an error (`Comparison.unexplained`). `render_table` is the table of
docs/paper_suite.md ("Settings beside their sources"), rewritten by `python -m harness.docs`.

The settings, as our recipes give them (the official value is written in the same form):

* `epochs`; `batch` (the global batch: `data.batch_size` at one process); `lr` (the rate at that
  batch: `optim.lr` x batch / `optim.lr_base_batch`); `lr_decay` (`x0.1 at 30, 60` for a
  multistep schedule, else the schedule's name); `warmup` (linear warm-up epochs); `momentum`;
  `weight_decay`; `norm_decay` (whether biases and norm layers decay); `augmentation` (the
  training pipeline in the words of `harness.data.pipeline.Plan.describe`); `data` (the stored
  images: `raw 32 px` for CIFAR, `500 px side, 50% JPEG q90` for an ffcv ImageNet file so named).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from harness.config import load_recipe
from harness.config.recipe import Recipe
from harness.leaderboard.runs import LeaderboardError

REPO = Path(__file__).resolve().parents[2]
OFFICIAL_FILE = REPO / "leaderboard" / "reference" / "official_settings.csv"
RECIPES_DIR = REPO / "recipes"
COLUMNS = ("recipes", "setting", "official", "source", "note")
SETTINGS = (
    "epochs",
    "batch",
    "lr",
    "lr_decay",
    "warmup",
    "momentum",
    "weight_decay",
    "norm_decay",
    "augmentation",
    "data",
)
_FFCV_NAME = re.compile(r"train_(?P<side>\d+)_(?P<share>[0-9.]+)_(?P<quality>\d+)\.beton$")


@dataclass(frozen=True)
class Official:
    """One line of official_settings.csv."""

    recipes: tuple[str, ...]  # globs under recipes/
    setting: str
    official: str
    source: str
    note: str
    line: int


@dataclass(frozen=True)
class Comparison:
    """An official value beside the value of every recipe it applies to."""

    official: Official
    ours: dict[str, str]  # recipe path under recipes/ -> our value

    @property
    def deviating(self) -> dict[str, str]:
        return {path: value for path, value in self.ours.items() if value != self.official.official}

    @property
    def unexplained(self) -> bool:
        """A deviation the line does not explain."""
        return bool(self.deviating) and not self.official.note


def recipe_settings(recipe: Recipe) -> dict[str, str]:
    """Our value of every setting in `SETTINGS`, in the words official_settings.csv uses."""
    o, s, d = recipe.optim, recipe.schedule, recipe.data
    lr = o.lr * d.batch_size / o.lr_base_batch if o.lr_base_batch else o.lr
    return {
        "epochs": str(s.epochs),
        "batch": str(d.batch_size),
        "lr": f"{lr:g}",
        "lr_decay": _decay(recipe),
        "warmup": f"{s.warmup_epochs} epoch{'s' if s.warmup_epochs != 1 else ''}"
        if s.warmup_epochs
        else "none",
        "momentum": f"{o.momentum:g}",
        "weight_decay": f"{o.weight_decay:g}",
        "norm_decay": "every parameter" if o.decay_bias_and_norm else "none on biases and norms",
        "augmentation": _augmentation(recipe),
        "data": _stored(recipe),
    }


def _decay(recipe: Recipe) -> str:
    s = recipe.schedule
    if s.name == "multistep":
        return f"x{s.decay_rate:g} at {', '.join(str(m) for m in s.milestones)}"
    if s.name == "cosine":
        return "cosine to 0" if s.min_lr == 0 else f"cosine to {s.min_lr:g}"
    return s.name


def _augmentation(recipe: Recipe) -> str:
    """The training views in the words of `harness.data.pipeline.Plan.describe` (not imported: the
    leaderboard loads no torch)."""
    d, a = recipe.data, recipe.data.augment
    parts = []
    if a.random_resized_crop:
        parts.append(f"random-resized crop (scale {a.scale_min:g}-1)")
    elif d.dataset == "imagenet":
        parts.append(f"centre crop {d.val_crop_ratio:.3f}")
    if a.crop_padding:
        parts.append(f"pad-{a.crop_padding} crop")
    if a.hflip:
        parts.append("flip")
    if a.rotation_degrees:
        parts.append(f"rotate {a.rotation_degrees:g} deg ({a.rotation_interpolation or 'bilinear'})")
    if d.progressive is not None:
        p = d.progressive
        parts.append(f"progressive {p.min_res}->{p.max_res} (epochs {p.start_epoch}-{p.end_epoch})")
    return ", ".join(parts) or "no augmentation"


def _stored(recipe: Recipe) -> str:
    d = recipe.data
    if d.dataset in ("cifar10", "cifar100"):
        return "raw 32 px"
    m = _FFCV_NAME.search(d.train_path or "")
    if m is None:
        return d.train_path or d.root or d.dataset
    return f"{m['side']} px side, {float(m['share']):.0%} JPEG q{m['quality']}"


def load_official(path: Path = OFFICIAL_FILE) -> list[Official]:
    """The lines of official_settings.csv (a malformed line is a one-line error)."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise LeaderboardError(f"{path}: columns must be {', '.join(COLUMNS)}")
        out = []
        for row in reader:
            if row["setting"] not in SETTINGS:
                raise LeaderboardError(
                    f"{path}:{reader.line_num}: setting {row['setting']!r} is not one of {SETTINGS}"
                )
            if not row["official"].strip() or not row["source"].strip():
                raise LeaderboardError(f"{path}:{reader.line_num}: official and source must be given")
            globs = tuple(g.strip() for g in row["recipes"].split(";") if g.strip())
            out.append(
                Official(globs, row["setting"], row["official"], row["source"], row["note"], reader.line_num)
            )
        return out


def recipes_of(official: Official, recipes_dir: Path = RECIPES_DIR) -> list[str]:
    """The recipe files (paths under `recipes_dir`) a line's globs name, symlinks left out."""
    found = {
        str(p.relative_to(recipes_dir))
        for pattern in official.recipes
        for p in recipes_dir.glob(pattern)
        if p.suffix == ".yaml" and not p.is_symlink()
    }
    return sorted(found)


def compare(officials: list[Official] | None = None, recipes_dir: Path = RECIPES_DIR) -> list[Comparison]:
    """Every official value beside our recipes' values."""
    officials = load_official() if officials is None else officials
    cache: dict[str, dict[str, str]] = {}
    out = []
    for official in officials:
        ours = {}
        for path in recipes_of(official, recipes_dir):
            if path not in cache:
                cache[path] = recipe_settings(load_recipe(recipes_dir / path))
            ours[path] = cache[path][official.setting]
        out.append(Comparison(official, ours))
    return out


def render_table(comparisons: list[Comparison]) -> str:
    """The markdown table of docs/paper_suite.md: one line per official value."""
    lines = [
        "| recipes | setting | official | ours | source |",
        "| --- | --- | --- | --- | --- |",
    ]
    for c in comparisons:
        o = c.official
        names = ", ".join(f"`{g}`" for g in o.recipes)
        if not c.deviating:
            ours = "same"
        else:
            values = sorted(set(c.deviating.values()))
            ours = f"**deviation**: {_cell('; '.join(values))} ({_cell(o.note)})"
        lines.append(f"| {names} | {o.setting} | {_cell(o.official)} | {ours} | {_cell(o.source)} |")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
