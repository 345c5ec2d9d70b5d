"""The aggregated leaderboard table: one record per row of every setting, numbers kept numeric.

`COLUMNS` is the schema of `leaderboard.parquet` and `leaderboard.csv` (documented in
docs/leaderboard.md by `python -m harness.docs`). Parquet keeps the types (lists too); the CSV
writes floats with `repr` (shortest round-trip form), nulls as empty fields and lists joined by
`;`. Both come out byte-identical from the same runs.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from harness.leaderboard.aggregate import BEST_VALUES, RUN_VALUES, Row, Setting
from harness.leaderboard.baselines import BASELINES
from harness.leaderboard.reference import ReferenceResult
from harness.metrics.columns import BOARD_COLUMNS

STRING, INT, FLOAT = pa.string(), pa.int64(), pa.float64()

_MEAN_DOCS = {c.board.value: c.board.summary for c in BOARD_COLUMNS} | BEST_VALUES

#: Per-run values whose change against the CE baseline is a column (`<value>_delta_ce`), and its note.
_DELTA_CE = {c.board.value: c.board.delta_ce for c in BOARD_COLUMNS if c.board.delta_ce is not None}


def _columns() -> list[tuple[str, pa.DataType, str]]:
    cols = [
        ("setting_key", STRING, "matched setting (hash of data set, architecture, epochs, data pipeline)"),
        ("dataset", STRING, "data set"),
        ("arch", STRING, "student architecture"),
        ("epochs", INT, "planned epochs"),
        ("data_pipeline", STRING, "data pipeline (JSON)"),
        ("eval_split", STRING, "split the metrics are computed on"),
        (
            "row_key",
            STRING,
            "JSON [recipe, config hash, method, strategy, params, teacher, teacher arch, teacher epoch]",
        ),
        ("label", STRING, "row label: method, plus what tells rows of one method apart"),
        ("method", STRING, "method (recipe `method`, default strategy name)"),
        ("strategy", STRING, "registered strategy"),
        ("strategy_params", STRING, "strategy parameters (sorted JSON)"),
        ("recipe_name", STRING, "recipe name"),
        ("teacher", STRING, "teacher run's recipe name, or weights file (null: no teacher)"),
        ("teacher_arch", STRING, "teacher architecture"),
        ("teacher_epoch", INT, "teacher checkpoint epoch (early-checkpoint teachers)"),
        ("teacher_method", STRING, "method of the teacher run, when it is among the runs read"),
        ("n_seeds", INT, "number of seeds (completed runs)"),
        ("seeds", pa.list_(INT), "the seeds"),
        ("run_ids", pa.list_(STRING), "the run ids, in seed order"),
    ]
    for name in RUN_VALUES:
        cols.append((f"{name}_mean", FLOAT, f"{_MEAN_DOCS[name]}: mean over seeds"))
        cols.append((f"{name}_std", FLOAT, f"{_MEAN_DOCS[name]}: sample std (ddof 1) over seeds"))
    for name, note in _DELTA_CE.items():
        doc = f"{name}_mean minus the CE baseline's" + (f" ({note})" if note else "")
        cols.append((f"{name}_delta_ce", FLOAT, doc))
    for baseline in BASELINES:
        kind, name = baseline.kind, baseline.name
        cols += [
            (f"baseline_{kind}", STRING, f"label of the {name} baseline row of the setting (null: none)"),
            (f"gain_{kind}", FLOAT, f"top1_last_mean minus the {name} baseline's"),
            (f"gain_{kind}_lo", FLOAT, "lower end of the 95% Welch interval of that gain"),
            (f"gain_{kind}_hi", FLOAT, "upper end of the 95% Welch interval"),
            (f"gain_{kind}_df", FLOAT, "Welch–Satterthwaite degrees of freedom"),
            (
                f"gain_{kind}_status",
                STRING,
                "significant | not significant | not computable | baseline | no baseline",
            ),
        ]
    cols += [
        ("paper_top1", FLOAT, "published top-1 for this setting and method (first match in results.csv)"),
        ("paper_top1_std", FLOAT, "its published std"),
        ("paper_selection", STRING, "how the paper picked the epoch: best | last | unspecified"),
        ("paper_source", STRING, "source and table of that figure"),
        ("paper_matches", INT, "number of published figures matched (all are listed in leaderboard.md)"),
    ]
    return cols


COLUMNS = _columns()
SCHEMA = pa.schema([pa.field(n, t, metadata={"doc": d}) for n, t, d in COLUMNS])


def gain_status(setting: Setting, row: Row, kind: str) -> str:
    """The verdict on a row's gain over a baseline (see the `gain_*_status` column)."""
    if setting.baselines.get(kind) is None:
        return "no baseline"
    if setting.is_baseline(row, kind):
        return "baseline"
    interval = row.gains[kind]
    assert interval is not None
    return interval.status


def first_top1(row: Row) -> ReferenceResult | None:
    """The first published top-1 matched to the row (results.csv order)."""
    return next((ref for ref in row.paper if ref.metric == "top1"), None)


def records(settings: Sequence[Setting]) -> list[dict[str, Any]]:
    """One dict per row, keys in COLUMNS order."""
    out = []
    for s in settings:
        for row in s.rows:
            rec: dict[str, Any] = {
                "setting_key": s.key,
                "dataset": s.dataset,
                "arch": s.arch,
                "epochs": s.epochs,
                "data_pipeline": s.data_pipeline,
                "eval_split": s.eval_split,
                "row_key": row.key,
                "label": row.label,
                "method": row.method,
                "strategy": row.strategy,
                "strategy_params": row.strategy_params,
                "recipe_name": row.recipe_name,
                "teacher": row.teacher,
                "teacher_arch": row.teacher_arch,
                "teacher_epoch": row.teacher_epoch,
                "teacher_method": row.teacher_method,
                "n_seeds": row.n,
                "seeds": row.seeds,
                "run_ids": [r.run_id for r in row.runs],
            }
            for name in RUN_VALUES:
                rec[f"{name}_mean"] = row.mean(name)
                rec[f"{name}_std"] = row.std(name)
            for name in _DELTA_CE:
                rec[f"{name}_delta_ce"] = s.delta_vs_ce(row, name)
            for kind in (b.kind for b in BASELINES):
                base = s.baselines.get(kind)
                interval = row.gains.get(kind)
                rec[f"baseline_{kind}"] = base.label if base is not None else None
                rec[f"gain_{kind}"] = interval.diff if interval else None
                rec[f"gain_{kind}_lo"] = interval.lo if interval else None
                rec[f"gain_{kind}_hi"] = interval.hi if interval else None
                rec[f"gain_{kind}_df"] = interval.df if interval else None
                rec[f"gain_{kind}_status"] = gain_status(s, row, kind)
            ref = first_top1(row)
            rec["paper_top1"] = ref.value if ref else None
            rec["paper_top1_std"] = ref.std if ref else None
            rec["paper_selection"] = ref.selection if ref else None
            rec["paper_source"] = f"{ref.source}: {ref.table}" if ref else None
            rec["paper_matches"] = len(row.paper)
            out.append(rec)
    return out


def to_parquet(recs: Sequence[dict[str, Any]]) -> bytes:
    """The records as Parquet bytes under SCHEMA (deterministic for the same records)."""
    table = pa.table({name: [r[name] for r in recs] for name in SCHEMA.names}, schema=SCHEMA)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def to_csv(recs: Sequence[dict[str, Any]]) -> bytes:
    """The records as CSV: floats by repr, nulls empty, lists joined by ';'."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(SCHEMA.names)
    for r in recs:
        writer.writerow([_csv_cell(r[name]) for name in SCHEMA.names])
    return buf.getvalue().encode("utf-8")


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        return ";".join(_csv_cell(v) for v in value)
    return str(value)
