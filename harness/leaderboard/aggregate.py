"""Matched settings, one row per strategy variant, statistics over seeds and gains over baselines.

**Setting.** Runs compare only within a matched setting: the same `setting_key` (a hash of the
data set, architecture, epochs and data pipeline written by the runner, `data.holdout` included).
The held-out positions themselves must agree too: a run whose `holdout_hash` differs from that of
the setting's first run with one (the same spec drawn from other data) is set apart.

**Row.** Within a setting, runs form one row when they share the row key

    (recipe name, config hash, method, strategy, strategy parameters, teacher, teacher architecture,
     teacher epoch)

and differ only in their seed. The config hash (the recipe's identity without the seed) keeps
apart variants of one recipe name, such as `--set optim.lr=...` overrides. The teacher is named
by the teacher run's recipe name (its `teacher_source` without the `-s<seed>-<hash>` suffix, so a
student's seeds, each with its own teacher seed, share one row) plus `@epochN` for an
early-checkpoint teacher, or by the weights file. KD from a label-smoothing teacher and KD from a
plain teacher are therefore two rows, and so are two temperatures of one method. A second run of
the same seed in a row is set apart.

**Label.** A row's label is its method; where several rows of a setting share a method, the label
adds what tells them apart: `← teacher`, the parameters that differ (`temperature=4`), and
last the recipe name in brackets.

**Order.** A setting's rows are listed baselines first (CE, then label smoothing), then by mean
top-1 at the selected epoch (at the last epoch for rows without a held-out split), best first;
the Markdown, the page (its default order: a click on a header re-sorts it), the CSV and the
Parquet table share it.

**Statistics.** Per run: top-1 at the last epoch and at its *selected* epoch, the epoch of its
best held-out top-1 (the validation split carved from the training split; the earliest such epoch
on ties), with that held-out top-1; for a run without a held-out split the selected figure is
null and, instead, its best top-1 on the evaluation split is kept (`top1_best_on_test`, selected
on the test split as the official Tf-KD code does: optimistic, and labelled so). At the last
epoch: top-5, NLL, ECE, entropy, max-probability (Sultan 2023), stability (Shen et al. 2021),
teacher fidelity (student-teacher top-1 agreement and KL(teacher || student) at T = 1, Stanton et
al. 2021) on the evaluation and the held-out split, the teacher's columns (its top-1 on both
splits) and throughput. Per row: mean and sample std (ddof = 1) over seeds.

**Throughput.** A run's training images per second is `stats.throughput`: the images trained over
all its epochs divided by their training seconds, sum(train_samples) / sum(epoch_time_s), the
first epoch and its warm-up included (the mean of the per-epoch `img_per_s` when a count or time
is missing). The one definition: the nightly snapshots and `harness sweep --plan` use it too.

**Baselines.** A row's gains are over the setting's label-smoothing baseline (method
`label_smoothing`) and its CE baseline (method `ce`), both declared in `baselines.py`. When a
setting has several rows of the baseline method, the baseline is the one with the most seeds,
then the highest mean held-out top-1 at the selected epoch (rows without a held-out split come
after those with one), then the row key: nothing measured on the test split picks it.
Tuned rows (recipe name ending `_tuned`, the final seeds of `harness tune`) are compared with the
setting's tuned baselines, the `_tuned` rows of the baseline methods, and the other rows with the
untuned ones: a tuned method against an untuned baseline would measure the tuning, not the method
(no gain is shown for a tuned row when the setting has no tuned baseline).
How gains are tested is in `compare`.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.leaderboard.baselines import BASELINES, CE, LS
from harness.leaderboard.compare import Comparison, adjust_family, compare
from harness.leaderboard.reference import ReferenceResult
from harness.leaderboard.runs import Run, SetApart
from harness.leaderboard.stats import is_number, mean, sample_std, throughput
from harness.metrics.columns import BOARD_COLUMNS

#: Ties of the row order (baselines first, then by result) break in this method order, then any other
#: method alphabetically.
METHOD_ORDER = (CE.method, LS.method, "kd", "tfkd_self", "tfkd_reg", "reversed_kd", "defective_kd")

#: Per-run values of the selected epoch, next to the last epoch's top-1, and their meaning.
SELECTION_VALUES = {
    "top1_selected": "top-1 (%) on the evaluation split at each run's selected epoch, the epoch of its best "
    "held-out top-1 (earliest on ties; null without a held-out split)",
    "selected_epoch": "the selected epoch (best held-out top-1, earliest on ties)",
    "holdout_top1_selected": "held-out top-1 (%) at the selected epoch (the best held-out top-1)",
    "top1_best_on_test": "top-1 (%) at each run's best epoch selected ON THE TEST (evaluation) split, as the "
    "Tf-KD code (optimistic); only for runs without a held-out split",
    "best_epoch_on_test": "epoch of that test-selected top-1 (runs without a held-out split)",
}

#: Per-run values added after a leaderboard column of metrics.COLUMNS: the held-out twins of the
#: fidelity figures (last epoch) and the teacher's held-out top-1, with their meaning.
EXTRA_VALUES = {
    "fidelity_kl": {
        "holdout_fidelity_agreement": "student-teacher top-1 agreement (%) on the held-out split, last epoch",
        "holdout_fidelity_kl": "mean KL(teacher || student), T = 1 (nats), on the held-out split, last epoch",
    },
    "teacher_top1": {"teacher_holdout_top1": "teacher top-1 (%) on the held-out split"},
}


def _run_value_names() -> tuple[str, ...]:
    """The `value` of every leaderboard column of metrics.COLUMNS, the selected epoch's after top-1
    and the EXTRA_VALUES after theirs."""
    names: list[str] = []
    for column in BOARD_COLUMNS:
        names.append(column.board.value)
        if column.name == "top1":
            names += SELECTION_VALUES
        names += EXTRA_VALUES.get(column.board.value, {})
    return tuple(names)


#: Per-run values summarised over seeds (mean and std), in table order.
RUN_VALUES = _run_value_names()

#: How a leaderboard column (metrics.Board.reduce) gives one value per run.
_REDUCE = {
    "last": lambda run, name: run.last[name],
    "throughput": lambda run, name: throughput(run.rows),
}

_TEACHER_RUN = re.compile(r"^(?P<name>.+)-s(?P<seed>\d+)-(?P<hash>[0-9a-f]{8})(?:@epoch(?P<epoch>\d+))?$")


# ------------------------------------------------------------------------------ per run
def run_values(run: Run) -> dict[str, float | None]:
    """The per-run figures that rows summarise (see RUN_VALUES)."""
    values: dict[str, Any] = {c.board.value: _REDUCE[c.board.reduce](run, c.name) for c in BOARD_COLUMNS}
    values |= dict.fromkeys(SELECTION_VALUES)
    selected = selected_row(run.rows)
    if selected is not None:
        values |= {
            "top1_selected": selected["top1"],
            "selected_epoch": float(selected["epoch"]),
            "holdout_top1_selected": selected["holdout_top1"],
        }
    else:
        best = best_row(run.rows, "top1")
        values |= {"top1_best_on_test": best["top1"], "best_epoch_on_test": float(best["epoch"])}
    for extra in EXTRA_VALUES.values():
        values |= {name: run.last.get(name) for name in extra}
    return {name: (float(values[name]) if is_number(values[name]) else None) for name in RUN_VALUES}


def best_row(rows: Sequence[dict[str, Any]], column: str) -> dict[str, Any]:
    """The row of the highest finite `column`, the earliest epoch on ties (raises if none)."""
    scored = [r for r in rows if is_number(r.get(column))]
    return max(scored, key=lambda r: (r[column], -r["epoch"]))


def selected_row(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The epoch selected on the validation split: best `holdout_top1`, earliest on ties; None
    when the run has no held-out top-1 or no evaluation top-1 at that epoch."""
    if not any(is_number(r.get("holdout_top1")) for r in rows):
        return None
    row = best_row(rows, "holdout_top1")
    return row if is_number(row.get("top1")) else None


def teacher_identity(source: str | None) -> tuple[str | None, int | None, str | None]:
    """(teacher name, teacher epoch, teacher run id) from a `teacher_source`.

    `fm_resnet18_ce-s3-0123abcd@epoch1` -> ('fm_resnet18_ce', 1, 'fm_resnet18_ce-s3-0123abcd');
    a weights file keeps its path as the name.
    """
    if source is None:
        return None, None, None
    m = _TEACHER_RUN.match(source)
    if m is None:
        return source, None, None
    epoch = int(m["epoch"]) if m["epoch"] else None
    return m["name"], epoch, source.split("@epoch")[0]


# ------------------------------------------------------------------------------ rows
@dataclass
class Row:
    """One strategy variant of a setting, over its seeds."""

    key: str
    method: str
    strategy: str
    strategy_params: str
    recipe_name: str
    teacher: str | None
    teacher_arch: str | None
    teacher_epoch: int | None
    teacher_method: str | None = None
    teacher_kind: str | None = None  # run (a run of ours) | pretrained (a weights file or tag) | None
    label: str = ""
    runs: list[Run] = field(default_factory=list)
    values: list[dict[str, float | None]] = field(default_factory=list)
    gains: dict[str, Comparison | None] = field(default_factory=dict)
    paper: list[ReferenceResult] = field(default_factory=list)
    paper_withheld: str = ""  # why a figure of its setting in all but the data is not shown

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.runs]

    @property
    def params(self) -> dict[str, Any]:
        try:
            parsed = json.loads(self.strategy_params)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}

    def column(self, name: str) -> list[float | None]:
        """One per-run value for every seed, in seed order."""
        return [v[name] for v in self.values]

    def mean(self, name: str) -> float | None:
        return mean(self.column(name))

    def std(self, name: str) -> float | None:
        return sample_std(self.column(name))

    def curve(self) -> list[tuple[int, float, int]]:
        """(epoch, mean top-1 over the seeds evaluated at that epoch, number of seeds) per epoch."""
        by_epoch: dict[int, list[float]] = defaultdict(list)
        for run in self.runs:
            for r in run.rows:
                if is_number(r["top1"]):
                    by_epoch[int(r["epoch"])].append(float(r["top1"]))
        return [(e, m, len(v)) for e, v in sorted(by_epoch.items()) if (m := mean(v)) is not None]

    def reliability(self) -> tuple[list[float], list[float | None], list[float | None]] | None:
        """Reliability diagram of the last epochs pooled over seeds: (counts, confidence, accuracy).

        Counts are summed per bin; the per-bin mean confidence and accuracy are count-weighted
        means of the runs' bin means (empty bins: None). None when a run lacks the columns or
        the runs disagree on the number of bins.
        """
        per_run = [
            (r.last["reliability_count"], r.last["reliability_confidence"], r.last["reliability_accuracy"])
            for r in self.runs
        ]
        if not per_run or any(c is None or conf is None or acc is None for c, conf, acc in per_run):
            return None
        n_bins = len(per_run[0][0])
        if n_bins == 0 or any(len(x) != n_bins for triple in per_run for x in triple):
            return None
        counts, conf, acc = [], [], []
        for b in range(n_bins):
            cells = [(c[b] or 0.0, cf[b], a[b]) for c, cf, a in per_run]
            total = math.fsum(n for n, _, _ in cells)
            counts.append(total)
            if total > 0:
                conf.append(math.fsum(n * (cf or 0.0) for n, cf, _ in cells if n) / total)
                acc.append(math.fsum(n * (a or 0.0) for n, _, a in cells if n) / total)
            else:
                conf.append(None)
                acc.append(None)
        return counts, conf, acc


@dataclass
class Setting:
    """Runs that compare: same data set, architecture, epochs and data pipeline."""

    key: str
    dataset: str
    arch: str
    epochs: int
    data_pipeline: str
    eval_split: str | None
    holdout_hash: str | None = None  # the held-out positions every run of the setting holds out
    rows: list[Row] = field(default_factory=list)
    baselines: dict[str, Row | None] = field(default_factory=dict)
    tuned_baselines: dict[str, Row | None] = field(default_factory=dict)  # of the `_tuned` rows

    @property
    def n_runs(self) -> int:
        return sum(r.n for r in self.rows)

    def bases(self) -> list[str]:
        """The top-1 figures its gains compare (compare.BASIS_VALUES keys), sorted."""
        return sorted({c.basis for row in self.rows for c in row.gains.values() if c is not None})

    def is_baseline(self, row: Row, kind: str) -> bool:
        return self.baseline_for(row, kind) is row

    def baseline_for(self, row: Row, kind: str) -> Row | None:
        """The baseline `row` is compared with: the tuned one for a tuned row, else the untuned one."""
        return (self.tuned_baselines if is_tuned(row) else self.baselines).get(kind)

    def delta_vs_ce(self, row: Row, name: str) -> float | None:
        """Row mean minus its CE baseline's mean of `name` (None for the baseline itself)."""
        base = self.baseline_for(row, CE.kind)
        if base is None or base is row:
            return None
        a, b = row.mean(name), base.mean(name)
        return None if a is None or b is None else a - b


def build_settings(runs: Sequence[Run]) -> tuple[list[Setting], list[SetApart]]:
    """Group completed runs into settings and rows; runs that repeat a row's seed are set apart."""
    teacher_methods = {r.run_id: str(r.last["method"]) for r in runs}
    settings: dict[str, Setting] = {}
    rows: dict[tuple[str, str], Row] = {}
    apart: list[SetApart] = []
    for run in sorted(runs, key=lambda r: (r.last["setting_key"], r.seed, r.folder)):
        last = run.last
        setting = settings.get(last["setting_key"])
        if setting is None:
            setting = settings[last["setting_key"]] = Setting(
                key=last["setting_key"],
                dataset=last["dataset"],
                arch=last["arch"],
                epochs=int(last["epochs"]),
                data_pipeline=last["data_pipeline"],
                eval_split=last["eval_split"],
            )
        held = last.get("holdout_hash")
        if setting.holdout_hash is None:
            setting.holdout_hash = held
        elif held is not None and held != setting.holdout_hash:
            reason = (
                f"held-out split differs: holdout_hash {held}, the setting's runs "
                f"hold out {setting.holdout_hash} (the same data.holdout on other data): not comparable"
            )
            apart.append(SetApart(run.folder, run.run_id, "holdout", reason))
            continue
        candidate = _row_for(run, teacher_methods)
        row = rows.get((setting.key, candidate.key))
        if row is None:
            row = rows[(setting.key, candidate.key)] = candidate
            setting.rows.append(row)
        if run.seed in row.seeds:
            kept = row.runs[row.seeds.index(run.seed)].run_id
            reason = f"duplicate: seed {run.seed} of recipe {row.recipe_name} is already counted from {kept}"
            apart.append(SetApart(run.folder, run.run_id, "duplicate", reason))
            continue
        row.runs.append(run)
        row.values.append(run_values(run))
    ordered = sorted(settings.values(), key=lambda s: (s.dataset, s.arch, s.epochs, s.key))
    for setting in ordered:
        setting.rows.sort(key=_row_order)
        _label_rows(setting.rows)
        _compare_with_baselines(setting)
        setting.rows.sort(key=lambda row: _result_order(setting, row))
    return ordered, apart


def _row_for(run: Run, teacher_methods: dict[str, str]) -> Row:
    last = run.last
    teacher, epoch, teacher_run = teacher_identity(last["teacher_source"])
    params = _canonical_json(last["strategy_params"])
    key = json.dumps(
        [
            last["recipe_name"],
            last.get("config_hash"),  # separates e.g. `--set optim.lr=...` variants of one recipe
            last["method"],
            last["strategy"],
            params,
            teacher,
            last["teacher_arch"],
            epoch,
        ],
        separators=(",", ":"),
    )
    return Row(
        key=key,
        method=last["method"],
        strategy=last["strategy"],
        strategy_params=params,
        recipe_name=last["recipe_name"],
        teacher=teacher,
        teacher_arch=last["teacher_arch"],
        teacher_epoch=epoch,
        teacher_method=teacher_methods.get(teacher_run) if teacher_run else None,
        teacher_kind=None if teacher is None else ("run" if teacher_run else "pretrained"),
    )


def _row_order(row: Row) -> tuple[int, str, str]:
    rank = METHOD_ORDER.index(row.method) if row.method in METHOD_ORDER else len(METHOD_ORDER)
    return rank, row.method, row.key


def ranking_top1(row: Row) -> float | None:
    """The figure rows are ranked by: mean top-1 at the selected epoch, else (rows without a
    held-out split) at the last epoch."""
    selected = row.mean("top1_selected")
    return selected if selected is not None else row.mean("top1_last")


def _result_order(setting: Setting, row: Row) -> tuple[int, float, tuple[int, str, str]]:
    """The board's row order: the baselines first (in METHOD_ORDER), then by `ranking_top1`, best
    first (rows without one last), ties in method order."""
    if any(setting.is_baseline(row, b.kind) for b in BASELINES):
        return 0, 0.0, _row_order(row)
    score = ranking_top1(row)
    return 1, -score if score is not None else math.inf, _row_order(row)


def _label_rows(rows: list[Row]) -> None:
    """Label = method, plus what tells rows of the same method apart (teacher, parameters, recipe)."""
    by_method: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_method[row.method].append(row)
    for group in by_method.values():
        for row in group:
            row.label = row.method
        if len(group) == 1:
            continue
        teachers = {_teacher_text(r) for r in group}
        param_sets = [r.params for r in group]
        varying = sorted(
            {
                k
                for p in param_sets
                for k in p
                if len({json.dumps(q.get(k), sort_keys=True) for q in param_sets}) > 1
            }
        )
        for row in group:
            parts = [row.method]
            if len(teachers) > 1:
                parts.append(f"← {_teacher_text(row)}")
            parts += [f"{k}={json.dumps(row.params[k], sort_keys=True)}" for k in varying if k in row.params]
            row.label = " ".join(parts)
        counts = defaultdict(int)
        for row in group:
            counts[row.label] += 1
        for row in group:
            if counts[row.label] > 1:
                row.label = f"{row.label} [{row.recipe_name}]"


def _teacher_text(row: Row) -> str:
    if row.teacher is None:
        return "none"
    return row.teacher + (f"@epoch{row.teacher_epoch}" if row.teacher_epoch is not None else "")


def _compare_with_baselines(setting: Setting) -> None:
    """Pick each baseline row, compare every other row with it and Holm-adjust the family."""
    for baseline in BASELINES:
        kind = baseline.kind
        for tuned, chosen in ((False, setting.baselines), (True, setting.tuned_baselines)):
            candidates = [r for r in setting.rows if r.method == baseline.method and is_tuned(r) == tuned]
            chosen[kind] = min(candidates, key=_baseline_preference, default=None)
        bases = [setting.baseline_for(row, kind) for row in setting.rows]
        family = [
            None if base is None or base is row else compare(row, base)
            for row, base in zip(setting.rows, bases, strict=True)
        ]
        for row, comparison in zip(setting.rows, adjust_family(family), strict=True):
            row.gains[kind] = comparison


#: The recipe-name suffix of the final-seed runs of `harness tune` (`harness.sweeps.tune`).
TUNED_SUFFIX = "_tuned"


def is_tuned(row: Row) -> bool:
    """A row of tuned hyper-parameters: its recipe name ends `_tuned`."""
    return row.recipe_name.endswith(TUNED_SUFFIX)


def _baseline_preference(row: Row) -> tuple[int, float, str]:
    """Sort key choosing a baseline: most seeds, then highest mean held-out top-1 at the selected
    epoch (rows without one after), then row key; never a figure of the test split."""
    held_out = row.column("holdout_top1_selected")
    score = mean(held_out) if held_out and all(v is not None for v in held_out) else None
    return -row.n, -score if score is not None else math.inf, row.key


# ------------------------------------------------------------------------------ helpers
def _canonical_json(text: str) -> str:
    """The strategy parameters as sorted compact JSON (the text itself if it is not JSON)."""
    try:
        return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    except ValueError:
        return text
