"""Accuracy and confidence metrics, and the metrics.parquet column registry.

* `harness.metrics.functions`: the public metric functions on torch tensors (`topk_accuracy`,
  `expected_calibration_error`, `mean_entropy`, `mean_max_prob`, `negative_log_likelihood`,
  `stability`, `label_rank`), defined in its docstring (docs/metrics.md).
* `harness.metrics.accumulator`: `MetricAccumulator`, the same metrics from running sums, so
  evaluation streams and all-reduces exactly under DDP.
* `harness.metrics.columns`: every metrics.parquet column declared once (`COLUMNS`, `SCHEMA`, the
  derived lists, `Board`) and the rows (`run_columns`, `epoch_row`, `check_row`); torch-free.

The file itself is written and read by `harness.store.metrics_file` (metrics never import
`harness.store`). The public names stay importable from here (`from harness.metrics import
topk_accuracy, MetricAccumulator, COLUMNS`): they are loaded on first use (PEP 562), so importing
`harness.metrics.columns` alone never imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the module of `harness.metrics` that defines it.
_EXPORTS = {
    **dict.fromkeys(
        (
            "EPS",
            "label_rank",
            "topk_accuracy",
            "expected_calibration_error",
            "mean_entropy",
            "mean_max_prob",
            "negative_log_likelihood",
            "stability",
        ),
        "functions",
    ),
    "MetricAccumulator": "accumulator",
    **dict.fromkeys(
        (
            "Board",
            "Column",
            "STRING",
            "INT",
            "FLOAT",
            "BOOL",
            "TEACHER_TWINS",
            "DECLARED",
            "COLUMNS",
            "SCHEMA",
            "METRIC_COLUMNS",
            "TEACHER_METRICS",
            "HOLDOUT_METRICS",
            "TEACHER_COLUMNS",
            "IDENTITY_COLUMNS",
            "BOARD_COLUMNS",
            "run_columns",
            "epoch_row",
            "check_row",
        ),
        "columns",
    ),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Load a public name from its module on first use (PEP 562) and keep it here."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
