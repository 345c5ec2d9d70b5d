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

from harness.leaderboard.aggregate import EXTRA_VALUES, RUN_VALUES, SELECTION_VALUES, Row, Setting
from harness.leaderboard.baselines import BASELINES
from harness.leaderboard.compare import MARGIN, POWER, Comparison
from harness.leaderboard.reference import ReferenceResult
from harness.leaderboard.stats import SEEDS_CAP
from harness.metrics.columns import BOARD_COLUMNS

STRING, INT, FLOAT = pa.string(), pa.int64(), pa.float64()

_MEAN_DOCS = (
    {c.board.value: c.board.summary for c in BOARD_COLUMNS}
    | SELECTION_VALUES
    | {name: doc for extra in EXTRA_VALUES.values() for name, doc in extra.items()}
)

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
        cols += _gain_columns(baseline.kind, baseline.name)
    cols += [
        ("paper_top1", FLOAT, "published top-1 for this setting and method (first match in results.csv)"),
        ("paper_top1_std", FLOAT, "its published std"),
        ("paper_selection", STRING, "how the paper picked the epoch: best | last | unspecified"),
        ("paper_source", STRING, "source and table of that figure"),
        ("paper_matches", INT, "number of published figures matched (all are listed in leaderboard.md)"),
    ]
    return cols


def _gain_columns(kind: str, name: str) -> list[tuple[str, pa.DataType, str]]:
    """The columns of a row's comparison with the `name` baseline (see `compare`)."""
    seeds_doc = (
        f"seeds at which a two-sided 5% t test of the kind in gain_{kind}_test detects WHAT with "
        f"{POWER:.0%} power at the observed spread (null: see the _why column)"
    )
    why_doc = (
        f"why gain_{kind}_seedsWHAT is null: more than {SEEDS_CAP} | no difference | no spread "
        "| fewer than 2 seeds"
    )
    return [
        (f"baseline_{kind}", STRING, f"label of the {name} baseline row of the setting (null: none)"),
        (
            f"gain_{kind}_on",
            STRING,
            "top-1 the gain compares: selected (at the validation-selected epoch: both rows have a "
            "held-out split) | last (last epoch)",
        ),
        (f"gain_{kind}", FLOAT, f"the row's mean top-1 (gain_{kind}_on) minus the {name} baseline's"),
        (f"gain_{kind}_lo", FLOAT, "lower end of the 95% Welch interval of that gain (all seeds, unpaired)"),
        (f"gain_{kind}_hi", FLOAT, "upper end of the 95% Welch interval"),
        (f"gain_{kind}_df", FLOAT, "Welch–Satterthwaite degrees of freedom"),
        (f"gain_{kind}_welch_p", FLOAT, "two-sided p-value of Welch's t test"),
        (f"gain_{kind}_pairs", INT, "seeds both rows ran (the pairs of the paired test)"),
        (f"gain_{kind}_paired", FLOAT, "mean of the per-seed differences over those shared seeds"),
        (f"gain_{kind}_paired_lo", FLOAT, "lower end of the 95% paired t interval"),
        (f"gain_{kind}_paired_hi", FLOAT, "upper end of the 95% paired t interval"),
        (f"gain_{kind}_paired_p", FLOAT, "two-sided p-value of the paired t test (df = pairs - 1)"),
        (f"gain_{kind}_test", STRING, "test behind the mark: paired (>= 2 pairs) | welch"),
        (f"gain_{kind}_p", FLOAT, "unadjusted two-sided p-value of that test"),
        (
            f"gain_{kind}_p_holm",
            FLOAT,
            f"that p-value Holm-adjusted within the setting's family of comparisons with the {name} baseline",
        ),
        (f"gain_{kind}_family", INT, "members of that family (the m of Holm's correction)"),
        (
            f"gain_{kind}_status",
            STRING,
            "significant (Holm-adjusted p < 0.05) | not significant | not computable | baseline "
            "| no baseline",
        ),
        (f"gain_{kind}_seeds", INT, seeds_doc.replace("WHAT", "a difference of the observed size")),
        (f"gain_{kind}_seeds_why", STRING, why_doc.replace("WHAT", "")),
        (f"gain_{kind}_seeds_margin", INT, seeds_doc.replace("WHAT", f"a difference of {MARGIN} points")),
        (f"gain_{kind}_seeds_margin_why", STRING, why_doc.replace("WHAT", "_margin")),
        (
            f"gain_{kind}_seeds_family",
            INT,
            f"as gain_{kind}_seeds at level 0.05 / gain_{kind}_family (Holm's strictest step)",
        ),
        (f"gain_{kind}_seeds_family_why", STRING, why_doc.replace("WHAT", "_family")),
    ]


def gain_record(kind: str, c: Comparison | None) -> dict[str, Any]:
    """The `_gain_columns` of one comparison (all null for the baseline itself or no baseline)."""
    if c is None:
        return {name: None for name, _, _ in _gain_columns(kind, "") if not name.startswith("baseline_")}
    w, pr = c.welch, c.paired
    return {
        f"gain_{kind}_on": c.basis,
        f"gain_{kind}": c.diff,
        f"gain_{kind}_lo": w.lo,
        f"gain_{kind}_hi": w.hi,
        f"gain_{kind}_df": w.df,
        f"gain_{kind}_welch_p": w.p,
        f"gain_{kind}_pairs": pr.n_a,
        f"gain_{kind}_paired": pr.diff,
        f"gain_{kind}_paired_lo": pr.lo,
        f"gain_{kind}_paired_hi": pr.hi,
        f"gain_{kind}_paired_p": pr.p,
        f"gain_{kind}_test": c.test,
        f"gain_{kind}_p": c.p,
        f"gain_{kind}_p_holm": c.p_holm,
        f"gain_{kind}_family": c.family,
        f"gain_{kind}_status": c.status,
        f"gain_{kind}_seeds": c.seeds.n,
        f"gain_{kind}_seeds_why": c.seeds.why or None,
        f"gain_{kind}_seeds_margin": c.seeds_margin.n,
        f"gain_{kind}_seeds_margin_why": c.seeds_margin.why or None,
        f"gain_{kind}_seeds_family": c.seeds_family.n,
        f"gain_{kind}_seeds_family_why": c.seeds_family.why or None,
    }


COLUMNS = _columns()
SCHEMA = pa.schema([pa.field(n, t, metadata={"doc": d}) for n, t, d in COLUMNS])


def gain_status(setting: Setting, row: Row, kind: str) -> str:
    """The verdict on a row's gain over a baseline (see the `gain_*_status` column)."""
    if setting.baseline_for(row, kind) is None:
        return "no baseline"
    if setting.is_baseline(row, kind):
        return "baseline"
    comparison = row.gains[kind]
    assert comparison is not None
    return comparison.status


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
                base = s.baseline_for(row, kind)
                rec[f"baseline_{kind}"] = base.label if base is not None else None
                rec |= gain_record(kind, row.gains.get(kind))
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
