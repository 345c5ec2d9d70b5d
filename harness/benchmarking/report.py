"""Benchmark results: a Parquet file per suite plus a Markdown table, with the machine named."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from harness.store import provenance
from harness.store.files import atomic_write_bytes


def context(device: str) -> dict[str, Any]:
    """Where the numbers were taken (added to every row)."""
    dev = torch.device(device)
    return {
        "device": provenance.device_name(dev),
        "threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "git_commit": provenance.git_commit(),
    }


def write(rows: Sequence[dict[str, Any]], out_dir: Path, suite: str) -> Path:
    """Atomically write `<out_dir>/<suite>.parquet` and return its path."""
    table = pa.Table.from_pylist(list(rows))
    path = Path(out_dir) / f"{suite}.parquet"
    atomic_write_bytes(path, lambda fh: pq.write_table(table, fh))
    return path


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def markdown(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A Markdown table of `columns`."""
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)
