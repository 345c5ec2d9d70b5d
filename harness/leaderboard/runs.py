"""Reading run folders for the leaderboard: strictly read-only, and nothing mixed in silently.

Every `<runs-dir>/<folder>/metrics.parquet` is opened read-only (no lock taken, nothing written,
so a sweep can keep training beside us; runs rewrite the file by atomic rename, so we see either
the previous or the next version). A run counts when it is **complete**: every row has status
`completed`, epochs are unique, the last evaluated epoch equals the planned `epochs`, the identity
columns agree on every row, the folder is named after the run id and the final top-1 is finite.
Anything else is **set apart** with its reason: unreadable or corrupt Parquet, missing or
mistyped columns, unfinished (running, interrupted, fewer epochs), failed, diverged, copies
(a folder set aside by `harness run --restart` is named `<run_id>.old-<time>`), and folders that
hold a `status.json` but no metrics yet.

Nothing in a run folder is ever written; the run index (`run_index`) caches these decisions in
`<runs-dir>/.index/`, a hidden folder that is never taken for a run.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from harness.errors import HarnessError
from harness.metrics.columns import (
    HOLDOUT_METRICS,
    IDENTITY_COLUMNS,
    METRIC_COLUMNS,
    SCHEMA,
    TEACHER_COLUMNS,
)

#: Columns a run's metrics must have for the leaderboard (the rest are read when present).
REQUIRED_COLUMNS = (
    "run_id",
    "recipe_name",
    "method",
    "strategy",
    "strategy_params",
    "dataset",
    "arch",
    "seed",
    "setting_key",
    "data_pipeline",
    "epochs",
    "epoch",
    "top1",
    "status",
)

#: Columns read when present (null otherwise): metrics, reliability, held-out split, throughput,
#: teacher. Runs written before the held-out split existed lack its columns: they read as null.
OPTIONAL_COLUMNS = (
    "config_hash",
    "eval_split",
    *(c for c in METRIC_COLUMNS if c not in REQUIRED_COLUMNS),
    "holdout_hash",
    "holdout_samples",
    *HOLDOUT_METRICS,
    "train_samples",
    "eval_samples",
    "global_batch_size",
    "epoch_time_s",
    "img_per_s",
    *TEACHER_COLUMNS,
    "diverged_step",
)


class LeaderboardError(HarnessError):
    """The leaderboard cannot be built at all (no runs folder, an unwritable output, bad reference data)."""


@dataclass(frozen=True)
class Run:
    """A completed run: its folder name and its metric rows, sorted by epoch."""

    folder: str
    rows: tuple[dict[str, Any], ...]

    @property
    def last(self) -> dict[str, Any]:
        """The final epoch's row (identity columns agree on every row)."""
        return self.rows[-1]

    @property
    def run_id(self) -> str:
        return str(self.last["run_id"])

    @property
    def seed(self) -> int:
        return int(self.last["seed"])


@dataclass(frozen=True)
class SetApart:
    """A run folder left out of the tables, and why."""

    folder: str
    run_id: str | None
    status: str
    reason: str


def load_runs(runs_dir: Path) -> tuple[list[Run], list[SetApart]]:
    """Completed runs and set-apart folders under `runs_dir`, both sorted by folder name (every
    run folder read; `run_index.load_indexed_runs` gives the same answer from its cache)."""
    runs_dir = Path(runs_dir)
    return split_outcomes([read_folder(runs_dir / name) for name in list_folders(runs_dir)])


def list_folders(runs_dir: Path) -> list[str]:
    """The run folder names under `runs_dir`, sorted (hidden ones skipped; one directory listing)."""
    if not runs_dir.exists():
        raise LeaderboardError(f"--runs-dir {runs_dir}: no such folder")
    if not runs_dir.is_dir():
        raise LeaderboardError(f"--runs-dir {runs_dir}: not a folder")
    try:
        with os.scandir(runs_dir) as entries:
            return sorted(e.name for e in entries if not e.name.startswith(".") and e.is_dir())
    except OSError as exc:
        raise LeaderboardError(f"--runs-dir {runs_dir}: cannot list ({exc.strerror or exc})") from None


def read_folder(folder: Path) -> Run | SetApart | None:
    """One run folder: a complete `Run`, a `SetApart`, or None (neither metrics nor status.json)."""
    metrics = folder / "metrics.parquet"
    if not metrics.exists():
        status = _status_record(folder)
        if not status:
            return None
        state = status.get("status", "unknown")
        return SetApart(folder.name, status.get("run_id"), state, _no_metrics_reason(status))
    return read_run(metrics)


def split_outcomes(outcomes: Sequence[Run | SetApart | None]) -> tuple[list[Run], list[SetApart]]:
    """The completed runs and the set-apart folders of `outcomes`, each in the given order."""
    runs = [o for o in outcomes if isinstance(o, Run)]
    apart = [o for o in outcomes if isinstance(o, SetApart)]
    return runs, apart


def read_run(path: Path) -> Run | SetApart:
    """One run from its metrics.parquet: a complete `Run`, or a `SetApart` with the reason."""
    folder = path.parent.name
    try:
        rows = _read_rows(path)
    except _Unusable as exc:
        return SetApart(folder, None, "unreadable", str(exc))
    if not rows:
        return SetApart(folder, None, "empty", "metrics.parquet has no rows")
    rows.sort(key=lambda r: (r["epoch"] is None, r["epoch"] or 0))
    last = rows[-1]
    run_id = last.get("run_id")
    problem = _identity_problem(rows, folder)
    if problem:
        return SetApart(folder, run_id, "inconsistent", problem)
    status = _run_status(rows)
    if status != "completed":
        return SetApart(folder, run_id, status, _status_reason(status, rows, path.parent))
    epochs = [r["epoch"] for r in rows]
    if len(set(epochs)) != len(epochs):
        return SetApart(folder, run_id, "inconsistent", "an epoch appears twice in metrics.parquet")
    if last["epoch"] != last["epochs"]:
        reason = f"unfinished: last evaluated epoch {last['epoch']} of {last['epochs']} although completed"
        return SetApart(folder, run_id, "unfinished", reason)
    if last["top1"] is None or not math.isfinite(last["top1"]):
        return SetApart(folder, run_id, "inconsistent", "final top-1 is not a finite number")
    return Run(folder, tuple(rows))


# ------------------------------------------------------------------------------ helpers
class _Unusable(Exception):
    """A metrics file that cannot be used at all (message: one line)."""


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """The wanted columns of `path` as dicts; missing optional columns are None."""
    try:
        with open(path, "rb") as fh:  # read-only: never modify, never lock
            parquet = pq.ParquetFile(fh)
            schema = parquet.schema_arrow
            names = set(schema.names)
            missing = [c for c in REQUIRED_COLUMNS if c not in names]
            if missing:
                raise _Unusable(f"missing columns: {', '.join(missing)}")
            mistyped = _mistyped(schema)
            if mistyped:
                raise _Unusable(f"wrong column types: {', '.join(mistyped)}")
            present = [c for c in WANTED if c in names]
            table = parquet.read(columns=present, use_threads=False)  # small files: threads only cost
    except _Unusable:
        raise
    except (OSError, pa.ArrowException, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _Unusable(f"unreadable metrics.parquet ({first})") from None
    return table_rows(table)


def table_rows(table: pa.Table) -> list[dict[str, Any]]:
    """The rows of `table` as dicts holding every read column (WANTED order; absent ones None),
    built column by column (faster than `Table.to_pylist` for many rows)."""
    names = set(table.column_names)
    columns = [table.column(c).to_pylist() if c in names else [None] * table.num_rows for c in WANTED]
    return [dict(zip(WANTED, values, strict=True)) for values in zip(*columns, strict=True)]


#: The columns read, in order, and the type the metrics SCHEMA gives each (looked up once).
WANTED = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
WANTED_TYPES = {name: SCHEMA.field(name).type for name in WANTED}


def _mistyped(schema: pa.Schema) -> list[str]:
    """'column (got type, want type)' for read columns whose type differs from the metrics SCHEMA."""
    got_types = {f.name: f.type for f in schema}
    out = []
    for name in WANTED:
        got = got_types.get(name)
        if got is None:
            continue
        want = WANTED_TYPES[name]
        if got != want and not pa.types.is_null(got):
            out.append(f"{name} ({got}, want {want})")
    return out


def _identity_problem(rows: Sequence[dict[str, Any]], folder: str) -> str:
    """Why the rows do not describe one run in this folder ('' when they do)."""
    for column in IDENTITY_COLUMNS:
        if len({json.dumps(r.get(column)) for r in rows}) > 1:
            return f"column {column} differs between epochs"
    last = rows[-1]
    for column in REQUIRED_COLUMNS:
        if column != "top1" and any(r.get(column) is None for r in rows):
            return f"column {column} is empty"
    if last["run_id"] != folder:
        return (
            f"folder name is not its run id {last['run_id']} "
            "(a copy, or a run set aside by `harness run --restart`)"
        )
    return ""


def _run_status(rows: Sequence[dict[str, Any]]) -> str:
    """'completed' when every row says so, else the first other status met from the last row back."""
    for row in reversed(rows):
        if row["status"] != "completed":
            return str(row["status"])
    return "completed"


def _status_reason(status: str, rows: Sequence[dict[str, Any]], folder: Path) -> str:
    last = rows[-1]
    where = f"after epoch {last['epoch']} of {last['epochs']}"
    if status == "diverged":
        step = last.get("diverged_step")
        return f"diverged (non-finite loss at step {step})" if step is not None else "diverged"
    if status == "failed":
        error = _status_record(folder).get("error")
        return f"failed {where}" + (f": {_one_line(str(error))}" if error else "")
    if status in ("running", "interrupted"):
        return f"unfinished: {status} {where}"
    return f"unknown status {status!r} {where}"


def _status_record(folder: Path) -> dict[str, Any]:
    """status.json as a dict ({} when absent or unreadable); read-only."""
    path = folder / "status.json"
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"status": "unreadable"}
    return data if isinstance(data, dict) else {"status": "unreadable"}


def _no_metrics_reason(status: dict[str, Any]) -> str:
    state = status.get("status", "unknown")
    error = status.get("error")
    reason = f"no metrics.parquet yet (status {state}"
    return reason + (f": {_one_line(str(error))})" if error else ")")


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]
