"""Published reference numbers (data under `leaderboard/reference/`) and their match to our rows.

Three CSV files, described in `leaderboard/reference/README.md`:

* `architectures.csv` maps a paper's model name, per data set, to the harness/timm architecture
  our recipes use (`ResNet18` on CIFAR-100 is `resnet18_cifar`, on ImageNet `resnet18`).
* `results.csv` holds one published figure per line: source and table, data set, model, method,
  optionally the teacher's model and training method and the strategy parameters the figure
  requires, the metric (`top1` in percent, or `one_minus_stability`, Shen et al.'s 1 - S), value,
  std and number of runs, how the paper picked its epoch (`best`, `last`, `unspecified`), and the
  setting it belongs to: the recipe (path under `recipes/`) that reproduces it, the epochs, and
  the kind of teacher (`run`: a teacher trained by the suite; `pretrained`: published weights).
* `pending.csv` holds, with the same columns, the figures no recipe reproduces yet (the recipe
  and epochs left empty where unknown): they are kept, never matched.

A figure is attached to a row of ours only in its own setting: the row's recipe name is the
figure's recipe's, and data set, architecture (through the mapping), epochs, method, every
parameter the figure lists, and the teacher's architecture, method and kind are equal. Two runs
that share a data set, architecture and method but not the schedule (a 16-epoch ffcv run and
a 90-epoch one) never share a figure.

The data set is more than its name: every run of the row must have trained and been evaluated on
the whole data set the figure used (`PUBLISHED_DATA`): its classes (`data.num_classes` unset or
equal), every training sample of an epoch (`train_samples`, short by less than one global batch:
`drop_last` and the DDP shards drop the remainder) and every evaluation sample (`eval_samples`).
A recipe named `imagenet` reading a 3-class ImageFolder, a `train_subset` or a held-out split is
not the figure's setting (`References.data_difference` says why).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from harness.config import load_recipe
from harness.config.recipe import Recipe, recipe_dir
from harness.leaderboard.runs import LeaderboardError, Run

#: `leaderboard/reference/` of the checkout this package lives in.
DEFAULT_REFERENCE_DIR = Path(__file__).resolve().parents[2] / "leaderboard" / "reference"

METRICS = ("top1", "one_minus_stability")
SELECTIONS = ("best", "last", "unspecified")
ARCH_COLUMNS = ("dataset", "paper_model", "arch", "note")
RESULT_COLUMNS = (
    "source",
    "table",
    "dataset",
    "model",
    "method",
    "teacher_model",
    "teacher_method",
    "params",
    "metric",
    "value",
    "std",
    "runs",
    "selection",
    "note",
    "recipe",
    "epochs",
    "teacher_kind",
)
TEACHER_KINDS = ("run", "pretrained")


@dataclass(frozen=True)
class DataSet:
    """A data set whole, as the published figures used it."""

    classes: int
    train: int  # training samples
    eval: int  # samples of the evaluation split (ImageNet's val, CIFAR's test)

    def describe(self) -> str:
        return f"{self.classes} classes, {self.train:,} training and {self.eval:,} evaluation samples"

    def seen(self) -> Seen:
        """What a run on the whole data set records."""
        return Seen(None, self.train, self.eval, None)


#: The data sets of the published figures: CIFAR-100 (Krizhevsky 2009: 50,000 training and 10,000
#: test images of 100 classes) and ImageNet, ILSVRC-2012 (Russakovsky et al. 2015: 1,281,167
#: training and 50,000 validation images of 1000 classes). Every figure's data set must be here.
PUBLISHED_DATA = {
    "cifar100": DataSet(100, 50_000, 10_000),
    "imagenet": DataSet(1000, 1_281_167, 50_000),
}


@dataclass(frozen=True)
class Seen:
    """The data one run trained and was evaluated on, as its metrics.parquet records it."""

    classes: int | None  # data.num_classes where the recipe sets it (None: the data set's own)
    train_samples: int | None  # training samples of an epoch, all ranks (None: unknown)
    eval_samples: int | None  # samples evaluated (None: unknown)
    global_batch: int | None  # batch x ranks: how many training samples an epoch may drop

    def difference(self, whole: DataSet) -> str:
        """'' when this is the whole data set `whole`, else what differs, in a few words."""
        if self.classes is not None and self.classes != whole.classes:
            return f"{self.classes} classes, not {whole.classes}"
        slack = max(self.global_batch or 1, 1)
        if self.train_samples is None or not whole.train - slack < self.train_samples <= whole.train:
            return f"{_count(self.train_samples)} training samples an epoch, not {whole.train:,}"
        if self.eval_samples != whole.eval:
            return f"{_count(self.eval_samples)} evaluation samples, not {whole.eval:,}"
        return ""


def _count(n: int | None) -> str:
    return "unknown" if n is None else f"{n:,}"


@dataclass(frozen=True)
class ReferenceResult:
    """One published figure."""

    source: str
    table: str
    dataset: str
    model: str
    method: str
    teacher_model: str | None
    teacher_method: str | None
    params: dict[str, Any]
    metric: str
    value: float
    std: float | None
    runs: int | None
    selection: str
    note: str
    recipe: str | None  # path under recipes/, e.g. imagenet/resnet50_ce.yaml (None: pending)
    epochs: int | None
    teacher_kind: str | None  # run | pretrained | None (no teacher)

    @cached_property
    def recipe_name(self) -> str | None:
        """The recipe's name (its file name without `.yaml`), as runs record it (computed once)."""
        return None if self.recipe is None else Path(self.recipe).stem


@dataclass(frozen=True)
class References:
    """The architecture mapping and the published figures."""

    archs: dict[tuple[str, str], frozenset[str]]
    results: tuple[ReferenceResult, ...]
    found: bool = True
    pending: tuple[ReferenceResult, ...] = ()  # figures no recipe reproduces yet (never matched)

    def archs_for(self, dataset: str, model: str) -> frozenset[str]:
        return self.archs.get((dataset, model), frozenset())

    @cached_property
    def by_recipe(self) -> dict[str | None, tuple[ReferenceResult, ...]]:
        """The figures of each recipe name, in `results` order: the only ones `same_setting` can
        accept for a row of that recipe (looked up once, not compared figure by figure per row)."""
        out: dict[str | None, list[ReferenceResult]] = {}
        for ref in self.results:
            out.setdefault(ref.recipe_name, []).append(ref)
        return {name: tuple(refs) for name, refs in out.items()}

    def matches(self, ours: Ours) -> list[ReferenceResult]:
        """The published figures of exactly this setting (see the module docstring)."""
        return [ref for ref in self.by_recipe.get(ours.recipe_name, ()) if self.same_setting(ref, ours)]

    def same_setting(self, ref: ReferenceResult, ours: Ours) -> bool:
        """Whether the figure `ref` was obtained in the setting `ours` describes."""
        if ref.recipe_name != ours.recipe_name or ref.epochs != ours.epochs:
            return False
        if ref.dataset != ours.dataset or ref.method != ours.method:
            return False
        if ours.arch not in self.archs_for(ours.dataset, ref.model):
            return False
        if self.data_difference(ref, ours):
            return False
        return self._same_teacher(ref, ours) and all(
            _same(ours.params.get(k), v) for k, v in ref.params.items()
        )

    def data_difference(self, ref: ReferenceResult, ours: Ours) -> str:
        """'' when every run of `ours` saw the whole data set of the figure `ref`, else how the
        first that did not differs (`Seen.difference`); no runs is a difference too."""
        whole = PUBLISHED_DATA.get(ref.dataset)
        if whole is None:
            return f"{ref.dataset} has no size in PUBLISHED_DATA"
        if not ours.seen:
            return "no record of the data"
        return next((d for d in (seen.difference(whole) for seen in ours.seen) if d), "")

    def withheld(self, ours: Ours) -> str:
        """Why no figure is shown beside `ours` when one is of its setting in all but the data
        ('' otherwise): one short note for the board."""
        for ref in self.by_recipe.get(ours.recipe_name, ()):
            difference = self.data_difference(ref, ours)
            whole = PUBLISHED_DATA.get(ref.dataset)
            if (
                difference
                and whole is not None
                and self.same_setting(ref, dataclasses.replace(ours, seen=(whole.seen(),)))
            ):
                return f"{ref.source}'s {ref.dataset} has {whole.describe()}; this row: {difference}"
        return ""

    def _same_teacher(self, ref: ReferenceResult, ours: Ours) -> bool:
        if ref.teacher_kind != ours.teacher_kind:
            return False
        if ref.teacher_model is not None and ours.teacher_arch not in self.archs_for(
            ours.dataset, ref.teacher_model
        ):
            return False
        return ref.teacher_method is None or ours.teacher_method == ref.teacher_method


@dataclass(frozen=True)
class Ours:
    """The setting of one of our rows, as a figure must match it."""

    recipe_name: str
    dataset: str
    arch: str
    epochs: int
    method: str
    params: dict[str, Any]
    teacher_arch: str | None = None
    teacher_method: str | None = None
    teacher_kind: str | None = None  # run | pretrained | None
    seen: tuple[Seen, ...] = ()  # the data of each run (none: no figure is of its setting)


def ours_from_recipe(recipe: Recipe) -> Ours:
    """The setting a run of `recipe` records, as a figure is matched against it: the teacher's
    architecture and method from its teacher recipe (`run`), or its weights' architecture
    (`pretrained`: a timm tag or a weights file)."""
    teacher_arch = teacher_method = teacher_kind = None
    if recipe.teacher is not None and recipe.teacher.run is not None:
        teacher = load_recipe(recipe_dir(recipe) / recipe.teacher.run)  # relative to the student's file
        teacher_arch, teacher_method, teacher_kind = teacher.model.arch, teacher.label, "run"
    elif recipe.teacher is not None:
        teacher_arch, teacher_kind = recipe.teacher.arch, "pretrained"
    return Ours(
        recipe_name=str(recipe.name),
        dataset=recipe.data.dataset,
        arch=recipe.model.arch,
        epochs=recipe.schedule.epochs,
        method=recipe.label,
        params=dict(recipe.strategy.params),
        teacher_arch=teacher_arch,
        teacher_method=teacher_method,
        teacher_kind=teacher_kind,
        seen=seen_of_recipe(recipe),
    )


def seen_of_recipe(recipe: Recipe) -> tuple[Seen, ...]:
    """What a run of `recipe` on its whole data set (`PUBLISHED_DATA`) records: the subsets in
    place of the splits, an unknown training count where it holds samples out; () for another."""
    d = recipe.data
    whole = PUBLISHED_DATA.get(d.dataset)
    if whole is None:
        return ()
    train = None if d.holdout is not None else min(d.train_subset or whole.train, whole.train)
    return (Seen(d.num_classes, train, min(d.val_subset or whole.eval, whole.eval), d.batch_size),)


def seen_of_run(run: Run) -> Seen:
    """The data a run trained and was evaluated on, from its last metrics row: the classes its
    `data_pipeline` sets, `train_samples`, `eval_samples` and `global_batch_size`."""
    last = run.last
    try:
        pipeline = json.loads(last["data_pipeline"])
    except ValueError:
        pipeline = {}
    classes = pipeline.get("num_classes") if isinstance(pipeline, dict) else None
    return Seen(
        classes=classes if isinstance(classes, int) else None,
        train_samples=last.get("train_samples"),
        eval_samples=last.get("eval_samples"),
        global_batch=last.get("global_batch_size"),
    )


def load_references(folder: Path | None = None) -> References:
    """Read the reference CSVs; a missing folder gives empty references with `found` False."""
    folder = DEFAULT_REFERENCE_DIR if folder is None else Path(folder)
    arch_file, result_file = folder / "architectures.csv", folder / "results.csv"
    pending_file = folder / "pending.csv"
    if not arch_file.exists() or not result_file.exists():
        return References({}, (), found=False)
    archs: dict[tuple[str, str], set[str]] = {}
    for line, row in _rows(arch_file, ARCH_COLUMNS):
        key = (_required(row, "dataset", arch_file, line), _required(row, "paper_model", arch_file, line))
        archs.setdefault(key, set())
        if row["arch"].strip():
            archs[key].add(row["arch"].strip())
    results = tuple(_result(row, result_file, line) for line, row in _rows(result_file, RESULT_COLUMNS))
    pending: tuple[ReferenceResult, ...] = ()
    if pending_file.exists():
        rows = _rows(pending_file, RESULT_COLUMNS)
        pending = tuple(_result(row, pending_file, line, attached=False) for line, row in rows)
    for path, refs in ((result_file, results), (pending_file, pending)):
        for ref in refs:
            if ref.dataset not in PUBLISHED_DATA:
                raise LeaderboardError(
                    f"{path}: data set {ref.dataset!r} has no size in reference.PUBLISHED_DATA "
                    f"(one of {', '.join(PUBLISHED_DATA)})"
                )
            for model in filter(None, (ref.model, ref.teacher_model)):
                if (ref.dataset, model) not in archs:
                    raise LeaderboardError(
                        f"{path}: model {model!r} on {ref.dataset} is not in {arch_file.name}"
                    )
    return References({k: frozenset(v) for k, v in archs.items()}, results, pending=pending)


# ------------------------------------------------------------------------------ parsing
def _rows(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != columns:
            raise LeaderboardError(f"{path}: columns must be {', '.join(columns)}")
        for row in reader:
            if None in row or any(v is None for v in row.values()):
                raise LeaderboardError(f"{path}:{reader.line_num}: wrong number of fields")
            yield reader.line_num, row


def _required(row: dict[str, str], name: str, path: Path, line: int) -> str:
    value = row[name].strip()
    if not value:
        raise LeaderboardError(f"{path}:{line}: {name} is empty")
    return value


def _number(row: dict[str, str], name: str, path: Path, line: int, kind: type = float) -> Any:
    text = row[name].strip()
    if not text:
        return None
    try:
        value = kind(text)
    except ValueError:
        raise LeaderboardError(f"{path}:{line}: {name} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise LeaderboardError(f"{path}:{line}: {name} must be finite")
    return value


def _result(row: dict[str, str], path: Path, line: int, attached: bool = True) -> ReferenceResult:
    """One figure; an attached one (results.csv) must name its recipe and epochs."""
    metric = _required(row, "metric", path, line)
    if metric not in METRICS:
        raise LeaderboardError(f"{path}:{line}: metric {metric!r} is not one of {', '.join(METRICS)}")
    selection = _required(row, "selection", path, line)
    if selection not in SELECTIONS:
        raise LeaderboardError(
            f"{path}:{line}: selection {selection!r} is not one of {', '.join(SELECTIONS)}"
        )
    value = _number(row, "value", path, line)
    if value is None:
        raise LeaderboardError(f"{path}:{line}: value is empty")
    params_text = row["params"].strip()
    try:
        params = json.loads(params_text) if params_text else {}
    except ValueError:
        raise LeaderboardError(f"{path}:{line}: params is not JSON") from None
    if not isinstance(params, dict):
        raise LeaderboardError(f"{path}:{line}: params must be a JSON object")
    recipe = _required(row, "recipe", path, line) if attached else (row["recipe"].strip() or None)
    epochs = _number(row, "epochs", path, line, int)
    if attached and epochs is None:
        raise LeaderboardError(f"{path}:{line}: epochs is empty")
    teacher_kind = row["teacher_kind"].strip() or None
    if teacher_kind not in (None, *TEACHER_KINDS):
        raise LeaderboardError(
            f"{path}:{line}: teacher_kind {teacher_kind!r} is not one of {', '.join(TEACHER_KINDS)}"
        )
    if row["teacher_model"].strip() and teacher_kind is None:
        raise LeaderboardError(f"{path}:{line}: a figure with a teacher_model needs a teacher_kind")
    return ReferenceResult(
        source=_required(row, "source", path, line),
        table=_required(row, "table", path, line),
        dataset=_required(row, "dataset", path, line),
        model=_required(row, "model", path, line),
        method=_required(row, "method", path, line),
        teacher_model=row["teacher_model"].strip() or None,
        teacher_method=row["teacher_method"].strip() or None,
        params=params,
        metric=metric,
        value=value,
        std=_number(row, "std", path, line),
        runs=_number(row, "runs", path, line, int),
        selection=selection,
        note=row["note"].strip(),
        recipe=recipe,
        epochs=epochs,
        teacher_kind=teacher_kind,
    )


def _same(ours: Any, theirs: Any) -> bool:
    """Parameter equality, numbers compared as numbers (1 == 1.0)."""
    if isinstance(theirs, (int, float)) and isinstance(ours, (int, float)):
        return float(ours) == float(theirs)
    return ours == theirs
