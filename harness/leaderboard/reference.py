"""Published reference numbers (data under `leaderboard/reference/`) and their match to our rows.

Two CSV files, described in `leaderboard/reference/README.md`:

* `architectures.csv` maps a paper's model name, per data set, to the harness/timm architecture
  our recipes use (`ResNet18` on CIFAR-100 is `resnet18_cifar`, on ImageNet `resnet18`).
* `results.csv` holds one published figure per line: source and table, data set, model, method,
  optionally the teacher's model and training method and the strategy parameters the figure
  requires, the metric (`top1` in percent, or `one_minus_stability`, Shen et al.'s 1 - S), value,
  std and number of runs, and how the paper picked its epoch (`best`, `last`, `unspecified`).

A row of ours matches a reference line when data set, architecture (through the mapping), method,
teacher architecture and teacher method (when the line names them) and every parameter the line
lists are equal.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.leaderboard.runs import LeaderboardError

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
)


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


@dataclass(frozen=True)
class References:
    """The architecture mapping and the published figures."""

    archs: dict[tuple[str, str], frozenset[str]]
    results: tuple[ReferenceResult, ...]
    found: bool = True

    def archs_for(self, dataset: str, model: str) -> frozenset[str]:
        return self.archs.get((dataset, model), frozenset())

    def matches(
        self,
        dataset: str,
        arch: str,
        method: str,
        teacher_arch: str | None,
        teacher_method: str | None,
        params: dict[str, Any],
    ) -> list[ReferenceResult]:
        """The published figures for this data set, architecture, method, teacher and parameters."""
        out = []
        for ref in self.results:
            if ref.dataset != dataset or ref.method != method:
                continue
            if arch not in self.archs_for(dataset, ref.model):
                continue
            if ref.teacher_model is not None and teacher_arch not in self.archs_for(
                dataset, ref.teacher_model
            ):
                continue
            if ref.teacher_method is not None and teacher_method != ref.teacher_method:
                continue
            if not all(_same(params.get(k), v) for k, v in ref.params.items()):
                continue
            out.append(ref)
        return out


def load_references(folder: Path | None = None) -> References:
    """Read the reference CSVs; a missing folder gives empty references with `found` False."""
    folder = DEFAULT_REFERENCE_DIR if folder is None else Path(folder)
    arch_file, result_file = folder / "architectures.csv", folder / "results.csv"
    if not arch_file.exists() or not result_file.exists():
        return References({}, (), found=False)
    archs: dict[tuple[str, str], set[str]] = {}
    for line, row in _rows(arch_file, ARCH_COLUMNS):
        key = (_required(row, "dataset", arch_file, line), _required(row, "paper_model", arch_file, line))
        archs.setdefault(key, set())
        if row["arch"].strip():
            archs[key].add(row["arch"].strip())
    results = tuple(_result(row, result_file, line) for line, row in _rows(result_file, RESULT_COLUMNS))
    for ref in results:
        for model in filter(None, (ref.model, ref.teacher_model)):
            if (ref.dataset, model) not in archs:
                raise LeaderboardError(
                    f"{result_file}: model {model!r} on {ref.dataset} is not in {arch_file.name}"
                )
    return References({k: frozenset(v) for k, v in archs.items()}, results)


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


def _result(row: dict[str, str], path: Path, line: int) -> ReferenceResult:
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
    )


def _same(ours: Any, theirs: Any) -> bool:
    """Parameter equality, numbers compared as numbers (1 == 1.0)."""
    if isinstance(theirs, (int, float)) and isinstance(ours, (int, float)):
        return float(ours) == float(theirs)
    return ours == theirs
