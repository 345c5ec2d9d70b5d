"""The metrics.parquet column registry: every column declared once (`DECLARED`), with how the
leaderboard shows it (`Board`), the lists derived from it (`COLUMNS`, `SCHEMA`, `METRIC_COLUMNS`,
`TEACHER_COLUMNS`, `TEACHER_METRICS`, `HOLDOUT_METRICS`, `IDENTITY_COLUMNS`, `BOARD_COLUMNS`) and the rows
(`run_columns`, `epoch_row`, `check_row`). Documented in docs/metrics.md.

Torch-free: the leaderboard imports it. May import: pyarrow, and `harness.config.recipe` for
type hints only. The Parquet file itself is written and read by `harness.store.metrics_file`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import pyarrow as pa

if TYPE_CHECKING:
    from harness.config.recipe import Recipe


@dataclass(frozen=True)
class Board:
    """How the leaderboard summarises a column over seeds and shows it (Markdown and HTML pages)."""

    value: str  # name of the per-run value: `<value>_mean` and `<value>_std` in leaderboard.parquet
    summary: str  # meaning of that per-run value (the leaderboard.parquet docs)
    label: str  # column header on the pages
    decimals: int  # decimals shown on the pages
    better: str  # "higher", "lower", or "" for a measure that is not a score
    reduce: str = "last"  # per run: "last" (the last epoch's value) or "throughput" (stats.throughput)
    spread: bool = True  # pages show mean ± std (False: the mean alone)
    confidence: int = 0  # position in the pages' confidence tables (0: not there); the teacher
    # table shows every teacher twin on the leaderboard in this order, those without one first
    delta_ce: str | None = None  # a `<value>_delta_ce` column (change against CE), with this note
    delta_on_html: bool = False  # that change shown on the HTML page too (its table stays narrow)
    teacher_summary: str = ""  # meaning of the teacher twin's per-run value
    teacher_label: str = ""  # header of the twin in the teacher table (default: `label`)


@dataclass(frozen=True)
class Column:
    """One metrics.parquet column: every list of column names is derived from `COLUMNS`."""

    name: str
    kind: pa.DataType
    doc: str  # meaning, one line (docs/metrics.md and the Parquet field metadata)
    metric: bool = False  # a value of `MetricAccumulator.compute()`, copied by the runner
    identity: bool = False  # describes the run, not the epoch: equal on every row of a run
    teacher: str = ""  # doc of its `teacher_<name>` twin: the teacher's value on the eval split
    holdout: str = ""  # doc of its `holdout_<name>` twin: the value on the held-out split
    board: Board | None = None  # summarised on the leaderboard

    def twin(self) -> Column:
        """The `teacher_<name>` column (same type; on the leaderboard when this column is)."""
        board = None
        if self.board is not None:
            b = self.board
            board = replace(
                b,
                value=f"teacher_{self.name}",
                summary=b.teacher_summary,
                label=b.teacher_label or b.label,
                spread=False,
                delta_ce=None,
                delta_on_html=False,
                teacher_summary="",
                teacher_label="",
            )
        return Column(f"teacher_{self.name}", self.kind, self.teacher, board=board)

    def holdout_twin(self) -> Column:
        """The `holdout_<name>` column: the same measure on the held-out split (null without one)."""
        return Column(f"holdout_{self.name}", self.kind, self.holdout)


STRING, INT, FLOAT, BOOL = pa.string(), pa.int64(), pa.float64(), pa.bool_()

#: Where the teacher twins of the columns with a `teacher` doc stand in the schema.
TEACHER_TWINS = "teacher twins"
#: Where the held-out twins of the columns with a `holdout` doc stand in the schema.
HOLDOUT_TWINS = "holdout twins"

#: The declaration of every metrics.parquet column, in schema order.
DECLARED: tuple[Column | str, ...] = (
    Column("run_id", STRING, "<recipe name>-s<seed>-<recipe hash[:8]>", identity=True),
    Column("recipe_name", STRING, "recipe name", identity=True),
    Column("recipe_hash", STRING, "sha256 of the resolved recipe's identity"),
    Column("config_hash", STRING, "sha256 of the identity without the seed (groups seeds)"),
    Column("method", STRING, "leaderboard label (recipe `method`, default strategy name)", identity=True),
    Column("strategy", STRING, "registered strategy name", identity=True),
    Column("strategy_params", STRING, "resolved strategy parameters (JSON)", identity=True),
    Column("dataset", STRING, "data set name", identity=True),
    Column("arch", STRING, "student timm architecture", identity=True),
    Column("seed", INT, "training seed", identity=True),
    Column("setting_key", STRING, "hash of dataset, arch, epochs and data pipeline", identity=True),
    Column("data_pipeline", STRING, "resolved data section, identity part (JSON)", identity=True),
    Column("epochs", INT, "planned training epochs", identity=True),
    Column("batch_size", INT, "per-rank training batch size"),
    Column("global_batch_size", INT, "batch_size x world_size"),
    Column("lr_scaled", FLOAT, "learning rate after batch scaling"),
    Column("train_samples", INT, "training samples per epoch (all ranks)"),
    Column("eval_split", STRING, "split the metrics are computed on", identity=True),
    Column("eval_samples", INT, "samples evaluated"),
    Column("epoch", INT, "epoch just finished (1-based)"),
    Column("step", INT, "optimizer steps so far"),
    Column(
        "top1",
        FLOAT,
        "top-1 accuracy, percent",
        metric=True,
        holdout="top-1 accuracy on the held-out split, percent (selection reads it)",
        teacher="teacher top-1 on the eval split, percent",
        board=Board(
            "top1_last",
            "top-1 (%) at the last epoch",
            "top-1",
            2,
            "higher",
            teacher_summary="teacher top-1 (%) on the evaluation split",
        ),
    ),
    Column(
        "top5",
        FLOAT,
        "top-5 accuracy, percent",
        metric=True,
        holdout="top-5 on the held-out split, percent",
        board=Board("top5_last", "top-5 (%) at the last epoch", "top-5", 2, "higher"),
    ),
    Column(
        "nll",
        FLOAT,
        "mean negative log-likelihood, nats",
        metric=True,
        holdout="NLL on the held-out split",
        teacher="teacher NLL",
        board=Board(
            "nll",
            "NLL (nats) at the last epoch",
            "NLL",
            3,
            "lower",
            confidence=4,
            teacher_summary="teacher NLL",
        ),
    ),
    Column(
        "ece",
        FLOAT,
        "expected calibration error (fraction), eval.ece_bins bins",
        metric=True,
        holdout="ECE on the held-out split",
        teacher="teacher ECE",
        board=Board(
            "ece",
            "ECE (fraction) at the last epoch",
            "ECE",
            4,
            "lower",
            confidence=3,
            teacher_summary="teacher ECE",
        ),
    ),
    Column(
        "entropy",
        FLOAT,
        "mean predictive entropy, nats",
        metric=True,
        holdout="mean predictive entropy on the held-out split",
        teacher="teacher mean entropy",
        board=Board(
            "entropy",
            "mean predictive entropy (nats) at the last epoch (Sultan 2023)",
            "entropy",
            3,
            "",
            confidence=1,
            delta_ce="Sultan: LS raises it, KD lowers it",
            delta_on_html=True,
            teacher_summary="teacher mean entropy",
        ),
    ),
    Column(
        "max_prob",
        FLOAT,
        "mean max probability",
        metric=True,
        holdout="mean max probability on the held-out split",
        teacher="teacher mean max probability",
        board=Board(
            "max_prob",
            "mean max-probability at the last epoch (Sultan 2023)",
            "max-prob",
            3,
            "",
            confidence=2,
            delta_ce="",
            teacher_summary="teacher mean max-probability",
        ),
    ),
    Column(
        "stability",
        FLOAT,
        "Shen et al. S (1 - mean intra-class variance over the classes present)",
        metric=True,
        holdout="stability S on the held-out split",
        teacher="teacher stability S",
        board=Board(
            "stability",
            "stability S at the last epoch (Shen et al. 2021)",
            "stability S",
            4,
            "higher",
            confidence=5,
            teacher_summary="teacher stability S",
            teacher_label="S",
        ),
    ),
    Column("reliability_count", pa.list_(FLOAT), "samples per ECE bin (reliability diagram)", metric=True),
    Column(
        "reliability_confidence",
        pa.list_(FLOAT),
        "mean max-probability per ECE bin (null: empty)",
        metric=True,
    ),
    Column(
        "reliability_accuracy",
        pa.list_(FLOAT),
        "accuracy (fraction) per ECE bin (null: empty)",
        metric=True,
    ),
    Column(
        "fidelity_agreement",
        FLOAT,
        "student-teacher top-1 agreement, percent (Stanton et al. 2021; null without teacher)",
        metric=True,
        holdout="student-teacher top-1 agreement on the held-out split, percent",
        board=Board(
            "fidelity_agreement",
            "student-teacher top-1 agreement (%) on the evaluation split at the last epoch "
            "(Stanton et al. 2021)",
            "agreement",
            2,
            "",
        ),
    ),
    Column(
        "fidelity_kl",
        FLOAT,
        "mean KL(teacher || student) at T = 1, nats (Stanton et al. 2021; null without teacher)",
        metric=True,
        holdout="mean KL(teacher || student) at T = 1 on the held-out split, nats",
        board=Board(
            "fidelity_kl",
            "mean KL(teacher || student) at T = 1 (nats) on the evaluation split at the last epoch "
            "(Stanton et al. 2021)",
            "KL(t‖s)",
            3,
            "",
        ),
    ),
    Column(
        "holdout_hash",
        STRING,
        "sha256[:16] of the held-out positions (null without data.holdout)",
        identity=True,
    ),
    Column("holdout_samples", INT, "held-out samples evaluated (null without data.holdout)"),
    HOLDOUT_TWINS,
    Column("train_loss", FLOAT, "mean training loss over the epoch"),
    Column("train_parts", pa.map_(STRING, FLOAT), "mean of each named loss part"),
    Column("lr", FLOAT, "learning rate at the end of the epoch"),
    Column("epoch_time_s", FLOAT, "wall time of the epoch's training, seconds"),
    Column("eval_time_s", FLOAT, "wall time of the evaluation, seconds"),
    Column(
        "img_per_s",
        FLOAT,
        "training throughput, images per second (all ranks)",
        board=Board(
            "img_per_s",
            "training throughput, images/s (all ranks)",
            "img/s",
            0,
            "higher",
            reduce="throughput",
            spread=False,
            confidence=6,
        ),
    ),
    Column("teacher_arch", STRING, "teacher architecture (null without teacher)", identity=True),
    Column("teacher_source", STRING, "teacher run id (and epoch) or weights file", identity=True),
    TEACHER_TWINS,
    Column("teacher_holdout_top1", FLOAT, "teacher top-1 on the held-out split, percent"),
    Column("status", STRING, "run status when written: running|completed|interrupted|failed|diverged"),
    Column("diverged_step", INT, "step of the first non-finite loss (diverged runs)"),
    Column("device", STRING, "device type the run trained on"),
    Column("world_size", INT, "number of DDP ranks"),
    Column("amp", STRING, "autocast dtype or off"),
    Column("harness_version", STRING, "harness version"),
    Column("torch_version", STRING, "torch version"),
    Column("timm_version", STRING, "timm version"),
    Column("git_commit", STRING, "commit of the harness checkout (null outside git)"),
)


def _expand(declared: Sequence[Column | str]) -> tuple[Column, ...]:
    """The declared columns with the teacher and held-out twins in their places."""
    columns = [c for c in declared if isinstance(c, Column)]
    twins = {
        TEACHER_TWINS: [c.twin() for c in columns if c.teacher],
        HOLDOUT_TWINS: [c.holdout_twin() for c in columns if c.holdout],
    }
    out: list[Column] = []
    for item in declared:
        out += twins[item] if isinstance(item, str) else [item]
    return tuple(out)


#: Every metrics.parquet column, in schema order (the teacher twins included).
COLUMNS = _expand(DECLARED)

#: The metrics.parquet schema: one row per evaluated epoch. Documented in docs/metrics.md.
SCHEMA = pa.schema([pa.field(c.name, c.kind, metadata={"doc": c.doc}) for c in COLUMNS])

#: Columns copied from `MetricAccumulator.compute()` into each row.
METRIC_COLUMNS = tuple(c.name for c in COLUMNS if c.metric)

#: `teacher_<name>` column -> the metric it holds for the teacher.
TEACHER_METRICS = {f"teacher_{c.name}": c.name for c in COLUMNS if c.teacher}

#: `holdout_<name>` column -> the metric it holds on the held-out split.
HOLDOUT_METRICS = {f"holdout_{c.name}": c.name for c in COLUMNS if c.holdout}

#: The metrics that compare the student with its teacher on the same images (null without one).
FIDELITY_METRICS = ("fidelity_agreement", "fidelity_kl")

#: The columns that describe the teacher (null for a run without one): its identity and metrics.
TEACHER_COLUMNS = tuple(c.name for c in COLUMNS if c.name.startswith("teacher_"))

#: The columns that describe the run, not the epoch (the leaderboard checks they agree on every row).
IDENTITY_COLUMNS = tuple(c.name for c in COLUMNS if c.identity)

#: The columns the leaderboard summarises over seeds, in schema order.
BOARD_COLUMNS = tuple(c for c in COLUMNS if c.board is not None)


def run_columns(
    recipe: Recipe,
    *,
    strategy_params: dict[str, Any],
    global_batch: int,
    lr_scaled: float,
    eval_split: str,
    teacher: dict[str, Any],
    holdout_hash: str | None,
    environment: dict[str, Any],
) -> dict[str, Any]:
    """The columns every row of a run repeats: its identity, setting (`recipe.setting()`) and
    budget, the teacher's columns (`TEACHER_COLUMNS`, None without a teacher) and
    `environment`, where it ran (device, world_size, amp, the package versions and git_commit).
    `epoch_row` adds an epoch's own columns to them."""
    key, pipeline = recipe.setting()
    return {
        "run_id": recipe.run_id,
        "recipe_name": recipe.name,
        "recipe_hash": recipe.hash(),
        "config_hash": recipe.config_hash(),
        "method": recipe.label,
        "strategy": recipe.strategy.name,
        "strategy_params": json.dumps(strategy_params, sort_keys=True),
        "dataset": recipe.data.dataset,
        "arch": recipe.model.arch,
        "seed": recipe.seed,
        "setting_key": key,
        "data_pipeline": pipeline,
        "epochs": recipe.schedule.epochs,
        "batch_size": recipe.data.batch_size,
        "global_batch_size": global_batch,
        "lr_scaled": lr_scaled,
        "eval_split": eval_split,
        "holdout_hash": holdout_hash,
        **{name: teacher[name] for name in TEACHER_COLUMNS},
        **environment,
    }


def epoch_row(
    run: dict[str, Any],
    *,
    epoch: int,
    step: int,
    metrics: dict[str, Any],
    holdout: dict[str, Any] | None,
    losses: dict[str, float],
    lr: float,
    epoch_time: float,
    eval_time: float,
    samples: int,
) -> dict[str, Any]:
    """One metrics row: the run's columns (`run_columns`), the evaluation's `metrics`
    (`MetricAccumulator.compute()`) and the held-out split's (`holdout`, None without one: its
    columns null), the epoch's loss means (`loss` and its parts), its lr and
    timing. `status` starts `running`; the runner sets it (and `diverged_step`) on every write."""
    return {
        **run,
        "train_samples": samples,
        "eval_samples": metrics["n"],
        "epoch": epoch,
        "step": step,
        **{name: metrics[name] for name in METRIC_COLUMNS},
        "holdout_samples": None if holdout is None else holdout["n"],
        **{name: None if holdout is None else holdout[key] for name, key in HOLDOUT_METRICS.items()},
        "train_loss": losses.get("loss", math.nan),
        "train_parts": {k: v for k, v in losses.items() if k != "loss"},
        "lr": lr,
        "epoch_time_s": epoch_time,
        "eval_time_s": eval_time,
        "img_per_s": samples / epoch_time if epoch_time > 0 else math.nan,
        "status": "running",
        "diverged_step": None,
    }


def check_row(row: dict[str, Any], where: str) -> None:
    """Raise ValueError (one line, naming the column) unless `row` has exactly SCHEMA's keys."""
    missing = [name for name in SCHEMA.names if name not in row]
    if missing:
        raise ValueError(f"{where}: missing column {missing[0]!r} (declared in harness.metrics.COLUMNS)")
    unknown = sorted(set(row) - set(SCHEMA.names))
    if unknown:
        raise ValueError(f"{where}: undeclared column {unknown[0]!r} (not in harness.metrics.COLUMNS)")
