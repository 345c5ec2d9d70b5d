"""metrics.parquet on disk: `write_metrics` (atomic, checked against the column registry) and
`read_metrics`.

May import: pyarrow, `harness.store.files` (atomic writes) and `harness.metrics.columns` (the
schema). Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from harness.metrics.columns import SCHEMA, check_row
from harness.store.files import atomic_write_bytes


def write_metrics(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Atomically (re)write `path` with `rows` under SCHEMA.

    Every row holds every column of SCHEMA, None where a value legitimately does not exist (the
    teacher columns of a run without a teacher, `diverged_step` of a run that did not diverge); a
    missing or undeclared key is a ValueError naming it, and nothing is written.
    """
    for i, row in enumerate(rows):
        check_row(row, f"metrics row {i}")
    columns = {name: [row[name] for row in rows] for name in SCHEMA.names}
    for i, row in enumerate(rows):
        parts = row["train_parts"]
        if isinstance(parts, dict):
            columns["train_parts"][i] = list(parts.items())
    table = pa.table(columns, schema=SCHEMA)
    atomic_write_bytes(path, lambda fh: pq.write_table(table, fh))


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Rows of a metrics.parquet file as dicts (`train_parts` back as a dict). A file written
    before a column was declared (e.g. the `holdout_*` ones) reads with that column None, so an
    older run loads, and resumes, under today's SCHEMA."""
    table = pq.read_table(path)
    absent = [name for name in SCHEMA.names if name not in table.column_names]
    rows = table.to_pylist()
    for row in rows:
        row.update(dict.fromkeys(absent))
        if isinstance(row.get("train_parts"), list):
            row["train_parts"] = dict(row["train_parts"])
    return rows
