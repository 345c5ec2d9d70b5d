"""Accuracy and confidence metrics, and the per-run Parquet writer.

Public functions (imported by tools outside the project) take torch tensors: probabilities or
logits shaped (N, K) and int64 labels (N,), and return Python floats:

* `topk_accuracy(logits, targets, k)`: percent of samples whose label is among the top k.
  Ties: classes are ranked by logit, equal logits by class index (the lower index first, as
  `argmax` does), so the label's rank is #{j: z_j > z_y} + #{j < y: z_j = z_y}; it is in the top
  k when its rank is below k. The same rule decides top-1, top-5 and the correctness of ECE bins,
  so top-1 never exceeds top-5, and it does not depend on the device's `topk` order among ties.
* `expected_calibration_error(probs, targets, n_bins=15)`: equal-width bins over the max
  probability, ECE = sum_b (n_b / N) |acc_b - conf_b| (a fraction; Guo et al. 2017).
* `mean_entropy(probs)`: mean of H(p) = -sum_k p_k log p_k, in nats (Sultan 2023).
* `mean_max_prob(probs)`: mean of max_k p_k.
* `stability(probs, targets)`: Shen et al. 2021,
  S = 1 - (1/K') sum_c (1/n_c) sum_{i in c} ||p_i - mean_{j in c} p_j||^2, where the sum and K'
  run over the K' classes present in the evaluation set. The paper divides by K, the number of
  classes; the two agree when every class is present (all the full evaluation splits). On a
  subset that misses classes, an absent class has no samples and so no variance: dividing by K
  would count it as variance 0 and raise S with the number of missing classes, not with the model.
* `negative_log_likelihood(probs, targets)`: mean of -log max(p_y, 1e-12) (nats): a confidently
  wrong sample costs at most -log(1e-12) = 27.63.

`MetricAccumulator` computes all of them from running sums over batches (exactly equal to the
functions on the concatenated outputs) so that evaluation streams, and under DDP the sums are
all-reduced: count-weighted, never an average of averages.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from harness.store.files import atomic_write_bytes

if TYPE_CHECKING:
    from harness.config.recipe import Recipe

EPS = 1e-12


# ------------------------------------------------------------------------------ functions
def label_rank(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Rank (0 = first) of each row's label among its K scores, equal scores ordered by class index.

    rank = #{j: s_j > s_y} + #{j < y: s_j = s_y}: the label is in the top k iff rank < k. One
    deterministic rule for top-1, top-k and ECE (torch's `topk` orders ties arbitrarily).
    """
    label_score = scores.gather(1, targets[:, None])
    before = torch.arange(scores.shape[1], device=scores.device)[None, :] < targets[:, None]
    return (scores > label_score).sum(dim=1) + ((scores == label_score) & before).sum(dim=1)


def topk_accuracy(logits: torch.Tensor, targets: torch.Tensor, k: int = 1) -> float:
    """Percent of rows whose label is among the k largest logits (ties: lower class index first)."""
    return float((label_rank(logits, targets) < k).double().mean() * 100.0)


def _bin_index(confidence: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Bin b holds confidences in (b/n, (b+1)/n]; a confidence of 0 falls in bin 0."""
    return (torch.ceil(confidence.double() * n_bins).long() - 1).clamp(0, n_bins - 1)


def expected_calibration_error(probs: torch.Tensor, targets: torch.Tensor, n_bins: int = 15) -> float:
    """ECE with `n_bins` equal-width bins over the max probability (a fraction in [0, 1])."""
    conf = probs.double().max(dim=1).values
    correct = (label_rank(probs, targets) == 0).double()
    bins = _bin_index(conf, n_bins)
    n = conf.numel()
    conf_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, bins, conf)
    acc_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, bins, correct)
    return float((acc_sum - conf_sum).abs().sum() / n)


def mean_entropy(probs: torch.Tensor) -> float:
    """Mean predictive entropy -sum_k p_k log p_k (nats); 0 log 0 = 0."""
    p = probs.double()
    return float(-(torch.xlogy(p, p)).sum(dim=1).mean())


def mean_max_prob(probs: torch.Tensor) -> float:
    """Mean of the largest class probability."""
    return float(probs.double().max(dim=1).values.mean())


def negative_log_likelihood(probs: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean -log p_y (nats), probabilities floored at 1e-12."""
    p = probs.double().gather(1, targets[:, None]).clamp_min(EPS)
    return float(-p.log().mean())


def stability(probs: torch.Tensor, targets: torch.Tensor) -> float:
    """Shen et al.'s S = 1 - mean over the classes present of the mean squared distance to the
    class mean (the paper's 1/K over all K classes: equal when every class is present)."""
    p = probs.double()
    variances = []
    for c in targets.unique():
        pc = p[targets == c]
        variances.append(((pc - pc.mean(dim=0)) ** 2).sum(dim=1).mean())
    return float(1.0 - torch.stack(variances).mean())


# ------------------------------------------------------------------------------ accumulator
class MetricAccumulator:
    """Running sums from which every metric above is computed exactly.

    Sums are float64 tensors on `device`; `tensors()`/`load_tensors()` expose them so a caller
    can all-reduce them across ranks (SUM) before `compute()`.
    """

    FIELDS = ("n", "correct1", "correct5", "nll", "entropy", "max_prob")

    def __init__(self, num_classes: int, n_bins: int = 15, device: torch.device | str = "cpu") -> None:
        self.num_classes = num_classes
        self.n_bins = n_bins
        f64 = {"dtype": torch.float64, "device": device}
        self.scalars = torch.zeros(len(self.FIELDS), **f64)
        self.bin_count = torch.zeros(n_bins, **f64)
        self.bin_conf = torch.zeros(n_bins, **f64)
        self.bin_correct = torch.zeros(n_bins, **f64)
        self.class_count = torch.zeros(num_classes, **f64)
        self.class_prob_sum = torch.zeros(num_classes, num_classes, **f64)
        self.class_sq_norm = torch.zeros(num_classes, **f64)

    @torch.no_grad()
    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """Add a batch of logits (N, K) and labels (N,)."""
        logp = torch.log_softmax(logits.double(), dim=1)
        p = logp.exp()
        conf = p.max(dim=1).values
        rank = label_rank(logits, targets)
        correct = (rank == 0).double()
        top5 = (rank < 5).double()
        # -log max(p_y, EPS), as negative_log_likelihood: the floor caps the loss at -log(EPS)
        nll = (-logp.gather(1, targets[:, None]).squeeze(1)).clamp_max(-math.log(EPS))
        entropy = -(p * logp).nan_to_num(0.0).sum(dim=1)
        self.scalars += torch.stack(
            [
                torch.tensor(float(len(targets)), dtype=torch.float64, device=p.device),
                correct.sum(),
                top5.sum(),
                nll.sum(),
                entropy.sum(),
                conf.sum(),
            ]
        )
        bins = _bin_index(conf, self.n_bins)
        self.bin_count.index_add_(0, bins, torch.ones_like(conf))
        self.bin_conf.index_add_(0, bins, conf)
        self.bin_correct.index_add_(0, bins, correct)
        self.class_count.index_add_(0, targets, torch.ones_like(conf))
        self.class_prob_sum.index_add_(0, targets, p)
        self.class_sq_norm.index_add_(0, targets, (p * p).sum(dim=1))

    def tensors(self) -> list[torch.Tensor]:
        """The running sums, in a fixed order (for all-reduce)."""
        return [
            self.scalars,
            self.bin_count,
            self.bin_conf,
            self.bin_correct,
            self.class_count,
            self.class_prob_sum,
            self.class_sq_norm,
        ]

    def compute(self) -> dict[str, float]:
        """top1/top5 (percent), nll, ece, entropy, max_prob, stability, n."""
        s = dict(zip(self.FIELDS, self.scalars.tolist(), strict=True))
        n = s["n"]
        if n == 0:
            return {c.name: math.nan for c in COLUMNS if c.metric and c.kind == FLOAT} | {"n": 0}
        present = self.class_count > 0
        counts = self.class_count[present]
        mean_p = self.class_prob_sum[present] / counts[:, None]
        # mean ||p_i - m_c||^2 = E||p||^2 - ||m_c||^2 within each class
        variance = self.class_sq_norm[present] / counts - (mean_p * mean_p).sum(dim=1)
        return {
            "top1": 100.0 * s["correct1"] / n,
            "top5": 100.0 * s["correct5"] / n,
            "nll": s["nll"] / n,
            "ece": float((self.bin_correct - self.bin_conf).abs().sum() / n),
            "entropy": s["entropy"] / n,
            "max_prob": s["max_prob"] / n,
            "stability": float(1.0 - variance.clamp_min(0).mean()),
            "n": int(n),
            "reliability_count": self.bin_count.tolist(),
            "reliability_confidence": _safe_div(self.bin_conf, self.bin_count),
            "reliability_accuracy": _safe_div(self.bin_correct, self.bin_count),
        }


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> list[float | None]:
    """Per-bin means; None for empty bins."""
    return [None if d == 0 else n / d for n, d in zip(num.tolist(), den.tolist(), strict=True)]


# ------------------------------------------------------------------------------ columns
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


STRING, INT, FLOAT, BOOL = pa.string(), pa.int64(), pa.float64(), pa.bool_()

#: Where the teacher twins of the columns with a `teacher` doc stand in the schema.
TEACHER_TWINS = "teacher twins"

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
        board=Board("top5_last", "top-5 (%) at the last epoch", "top-5", 2, "higher"),
    ),
    Column(
        "nll",
        FLOAT,
        "mean negative log-likelihood, nats",
        metric=True,
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
    """The declared columns with the teacher twins in their place."""
    twins = [c.twin() for c in declared if isinstance(c, Column) and c.teacher]
    out: list[Column] = []
    for item in declared:
        out += twins if item == TEACHER_TWINS else [item]
    return tuple(out)


#: Every metrics.parquet column, in schema order (the teacher twins included).
COLUMNS = _expand(DECLARED)

#: The metrics.parquet schema: one row per evaluated epoch. Documented in docs/metrics.md.
SCHEMA = pa.schema([pa.field(c.name, c.kind, metadata={"doc": c.doc}) for c in COLUMNS])

#: Columns copied from `MetricAccumulator.compute()` into each row.
METRIC_COLUMNS = tuple(c.name for c in COLUMNS if c.metric)

#: `teacher_<name>` column -> the metric it holds for the teacher.
TEACHER_METRICS = {f"teacher_{c.name}": c.name for c in COLUMNS if c.teacher}

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
        **{name: teacher[name] for name in TEACHER_COLUMNS},
        **environment,
    }


def epoch_row(
    run: dict[str, Any],
    *,
    epoch: int,
    step: int,
    metrics: dict[str, float],
    losses: dict[str, float],
    lr: float,
    epoch_time: float,
    eval_time: float,
    samples: int,
) -> dict[str, Any]:
    """One metrics row: the run's columns (`run_columns`), the evaluation's `metrics`
    (`MetricAccumulator.compute()`), the epoch's loss means (`loss` and its parts), its lr and
    timing. `status` starts `running`; the runner sets it (and `diverged_step`) on every write."""
    return {
        **run,
        "train_samples": samples,
        "eval_samples": metrics["n"],
        "epoch": epoch,
        "step": step,
        **{name: metrics[name] for name in METRIC_COLUMNS},
        "train_loss": losses.get("loss", math.nan),
        "train_parts": {k: v for k, v in losses.items() if k != "loss"},
        "lr": lr,
        "epoch_time_s": epoch_time,
        "eval_time_s": eval_time,
        "img_per_s": samples / epoch_time if epoch_time > 0 else math.nan,
        "status": "running",
        "diverged_step": None,
    }


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


def check_row(row: dict[str, Any], where: str) -> None:
    """Raise ValueError (one line, naming the column) unless `row` has exactly SCHEMA's keys."""
    missing = [name for name in SCHEMA.names if name not in row]
    if missing:
        raise ValueError(f"{where}: missing column {missing[0]!r} (declared in harness.metrics.COLUMNS)")
    unknown = sorted(set(row) - set(SCHEMA.names))
    if unknown:
        raise ValueError(f"{where}: undeclared column {unknown[0]!r} (not in harness.metrics.COLUMNS)")


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Rows of a metrics.parquet file as dicts (`train_parts` back as a dict)."""
    rows = pq.read_table(path).to_pylist()
    for row in rows:
        if isinstance(row.get("train_parts"), list):
            row["train_parts"] = dict(row["train_parts"])
    return rows
