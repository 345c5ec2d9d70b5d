"""The tuning summary: what each method's hyper-parameter search cost and found, from the files
`harness tune` writes.

Every `<runs-dir>/tuning/<study>/trials.parquet` (one row per trial: study, recipe, method, trial,
state complete | pruned | failed | running, params as sorted JSON, objective, epochs_trained,
device_seconds, run_id, budget, sampler, objective_name) is read read-only. Per study and method
the leaderboard counts the trials by state, sums the epochs trained and the device-seconds spent,
takes the best objective of the completed trials (the earliest trial on ties) and its params,
and computes Dodge et al. 2019's **expected best of n trials**, E[max_n] ± std for n = 1..N over
the N completed trials' objectives (`expected_max`): the best value a search of n trials would
find on average, so methods searched with unequal budgets compare at equal n.

**Budget table.** Per method: its budget, its trials (completed / pruned / failed), epochs
trained, device-hours (device_seconds / 3600) and the best objective with its params, and E[best of
k] at k, the fewest completed trials of any method of the study (the fair comparison when budgets
differ; the table says when they do). **A teacher's training is counted once per study**, never
per method or trial: the teachers are read from the `teacher_source` of the trials' own runs under
the runs folder, and a teacher that is itself a run there adds the sum of its epochs'
`epoch_time_s` to the study, once, in the table's note. A teacher that cannot be determined so
(a weights file, or no trial run found) is said to be "not counted".

A `trials.parquet` that cannot be read or lacks a column is set apart with one line naming the
file; the board goes on. A method with no completed trial shows its counts and no curve.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from harness.leaderboard.expected_max import expected_max
from harness.leaderboard.runs import Run

TRIALS_FILE = "trials.parquet"
TUNING_FILE = "tuning.parquet"
STATES = ("complete", "pruned", "failed", "running")
#: The trials file `harness tune` writes (`harness.sweeps.tune`) and the summary reads: one row per
#: trial; `objective` is null unless the trial completed.
TRIALS_SCHEMA = pa.schema(
    [
        ("study", pa.string()),
        ("recipe", pa.string()),
        ("method", pa.string()),
        ("trial", pa.int64()),
        ("state", pa.string()),
        ("params", pa.string()),
        ("objective", pa.float64()),
        ("epochs_trained", pa.int64()),
        ("device_seconds", pa.float64()),
        ("run_id", pa.string()),
        ("budget", pa.int64()),
        ("sampler", pa.string()),
        ("objective_name", pa.string()),
    ]
)
_PYTHON_TYPES: dict[pa.DataType, tuple[type, ...]] = {
    pa.string(): (str,),
    pa.int64(): (int,),
    pa.float64(): (float, int),
}
#: Each column of TRIALS_SCHEMA with the Python types the summary accepts in it.
TRIAL_COLUMNS: dict[str, tuple[type, ...]] = {
    f.name: _PYTHON_TYPES[f.type] + ((type(None),) if f.name == "objective" else ()) for f in TRIALS_SCHEMA
}


@dataclass(frozen=True)
class Teacher:
    """A teacher named by a study's trial runs: its source and its training seconds (None: not a
    run under the runs folder, so not counted)."""

    source: str
    seconds: float | None


@dataclass(frozen=True)
class MethodSummary:
    """One method of one study: counts, cost, best trial and the expected-max curve."""

    study: str
    method: str
    recipe: str
    sampler: str
    objective_name: str
    budget: int
    trials: int
    counts: dict[str, int]
    epochs_trained: int
    device_seconds: float
    best_objective: float | None
    best_params: str | None
    best_trial: int | None
    best_run_id: str | None
    curve: tuple[tuple[float, float], ...]

    @property
    def completed(self) -> int:
        return self.counts["complete"]


@dataclass(frozen=True)
class StudySummary:
    """A study: its methods (sorted by name) and the teachers its trial runs used."""

    name: str
    path: str
    methods: tuple[MethodSummary, ...]
    teachers: tuple[Teacher, ...]
    runs_found: int  # trials whose run is among the completed runs read (their teachers are known)

    @property
    def unequal_budgets(self) -> bool:
        return len({m.budget for m in self.methods}) > 1

    @property
    def common_n(self) -> int:
        """The fewest completed trials of any method: where every curve has a value."""
        return min((m.completed for m in self.methods), default=0)

    @property
    def teacher_seconds(self) -> float | None:
        """The teachers' training seconds, each counted once (None: none could be counted)."""
        known = [t.seconds for t in self.teachers if t.seconds is not None]
        return math.fsum(known) if known else None


@dataclass(frozen=True)
class TuningBoard:
    """The studies found under `<runs-dir>/tuning/` and the trials files set apart (one line each)."""

    studies: tuple[StudySummary, ...]
    set_apart: tuple[str, ...]

    @property
    def found(self) -> bool:
        return bool(self.studies or self.set_apart)


class _BadTrials(Exception):
    """A trials file that cannot be used; the message names what is wrong."""


def load_tuning(runs_dir: Path, runs: Sequence[Run]) -> TuningBoard:
    """Every `<runs_dir>/tuning/*/trials.parquet`, summarised; `runs` are the completed runs read
    from `runs_dir` (to find the trials' teachers)."""
    root = Path(runs_dir) / "tuning"
    try:
        files = sorted(root.glob(f"*/{TRIALS_FILE}")) if root.is_dir() else []
    except OSError:
        files = []
    by_id = {r.run_id: r for r in runs}
    studies, apart = [], []
    for path in files:
        shown = f"tuning/{path.parent.name}/{TRIALS_FILE}"
        try:
            trials = read_trials(path)
        except _BadTrials as exc:
            apart.append(f"{shown}: {exc}")
            continue
        studies.append(summarise_study(path.parent.name, shown, trials, by_id))
    return TuningBoard(tuple(studies), tuple(apart))


def read_trials(path: Path) -> list[dict[str, Any]]:
    """The rows of a trials file; `_BadTrials` if it is unreadable, lacks a column or holds a
    value of the wrong type."""
    try:
        table = pq.read_table(path, use_threads=False)
    except (OSError, pa.ArrowException, ValueError) as exc:
        # the message without the folder it was read from: the board's bytes depend on the files alone
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise _BadTrials(f"unreadable ({first.replace(str(path), TRIALS_FILE)})") from None
    missing = [c for c in TRIAL_COLUMNS if c not in table.column_names]
    if missing:
        raise _BadTrials(f"lacks column(s) {', '.join(missing)}")
    rows = table.select(list(TRIAL_COLUMNS)).to_pylist()
    for row in rows:
        for name, types in TRIAL_COLUMNS.items():
            value = row[name]
            if not isinstance(value, types) or isinstance(value, bool):
                raise _BadTrials(f"column {name}: {value!r} is not {_kind(types)}")
        if row["state"] not in STATES:
            raise _BadTrials(f"column state: {row['state']!r} is not one of {', '.join(STATES)}")
    return rows


def _kind(types: tuple[type, ...]) -> str:
    """What a column holds, in words: 'text', 'an integer', 'a number', 'a number or null'."""
    kind = "text" if str in types else "a number" if float in types else "an integer"
    return f"{kind} or null" if type(None) in types else kind


def summarise_study(
    name: str, shown: str, trials: Sequence[dict[str, Any]], runs: dict[str, Run]
) -> StudySummary:
    """A study's methods (sorted by name) and the teachers of its trials' runs."""
    methods = sorted({t["method"] for t in trials})
    summaries = tuple(summarise_method(name, [t for t in trials if t["method"] == m]) for m in methods)
    found = sum(t["run_id"] in runs for t in trials)
    return StudySummary(name, shown, summaries, study_teachers(trials, runs), found)


def summarise_method(study: str, trials: Sequence[dict[str, Any]]) -> MethodSummary:
    """Counts, cost, the best completed trial and the expected-max curve of one method's trials."""
    trials = sorted(trials, key=lambda t: t["trial"])
    done = [t for t in trials if t["state"] == "complete" and _finite(t["objective"])]
    best = max(done, key=lambda t: (t["objective"], -t["trial"]), default=None)
    first = trials[0]
    return MethodSummary(
        study=study,
        method=first["method"],
        recipe=", ".join(sorted({t["recipe"] for t in trials})),
        sampler=", ".join(sorted({t["sampler"] for t in trials})),
        objective_name=", ".join(sorted({t["objective_name"] for t in trials})),
        budget=max(t["budget"] for t in trials),
        trials=len(trials),
        counts={s: sum(t["state"] == s for t in trials) for s in STATES} | {"complete": len(done)},
        epochs_trained=sum(t["epochs_trained"] for t in trials),
        device_seconds=math.fsum(t["device_seconds"] for t in trials),
        best_objective=float(best["objective"]) if best else None,
        best_params=best["params"] if best else None,
        best_trial=best["trial"] if best else None,
        best_run_id=best["run_id"] if best else None,
        curve=tuple(expected_max([t["objective"] for t in done])),
    )


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def study_teachers(trials: Sequence[dict[str, Any]], runs: dict[str, Run]) -> tuple[Teacher, ...]:
    """The teachers named by the study's trial runs found among `runs`, each once, sorted; a
    teacher that is a run there carries its training seconds (sum of its epochs' epoch_time_s)."""
    sources = set()
    for t in trials:
        run = runs.get(t["run_id"])
        if run is not None and run.last.get("teacher_source"):
            sources.add(str(run.last["teacher_source"]))
    return tuple(Teacher(s, _training_seconds(runs.get(s))) for s in sorted(sources))


def _training_seconds(run: Run | None) -> float | None:
    if run is None:
        return None
    times = [r.get("epoch_time_s") for r in run.rows]
    if any(v is None for v in times):
        return None
    return math.fsum(times)


# ------------------------------------------------------------------------------ tuning.parquet
STRING, INT, FLOAT = pa.string(), pa.int64(), pa.float64()

#: The columns of tuning.parquet (documented in docs/leaderboard.md by `python -m harness.docs`).
COLUMNS: tuple[tuple[str, pa.DataType, str], ...] = (
    ("study", STRING, "study name (its folder under `<runs-dir>/tuning/`)"),
    ("method", STRING, "method (strategy name)"),
    ("recipe", STRING, "base recipe path(s) of the method's trials"),
    ("sampler", STRING, "Optuna sampler"),
    ("objective_name", STRING, "what the objective measures (validation split)"),
    ("budget", INT, "the method's trial budget"),
    ("trials", INT, "trials in the file"),
    ("completed", INT, "trials complete with a finite objective"),
    ("pruned", INT, "trials pruned"),
    ("failed", INT, "trials failed"),
    ("running", INT, "trials still running"),
    ("epochs_trained", INT, "epochs trained over all the method's trials"),
    ("device_seconds", FLOAT, "device-seconds spent on the method's trials"),
    ("best_objective", FLOAT, "best objective of the completed trials (null: none completed)"),
    ("best_params", STRING, "params of the best trial (sorted JSON)"),
    ("best_trial", INT, "number of the best trial (the earliest on ties)"),
    ("best_run_id", STRING, "run id of the best trial"),
    ("expected_max", pa.list_(FLOAT), "E[max_n] for n = 1..completed (Dodge et al. 2019)"),
    ("expected_max_std", pa.list_(FLOAT), "std of max_n for n = 1..completed"),
    ("teachers", pa.list_(STRING), "teachers of the study's trial runs (the same on each method's row)"),
    (
        "teacher_seconds",
        FLOAT,
        "the study's teachers' training seconds, counted once per study (the same on each method's "
        "row: do not add them up); null: not counted",
    ),
)
SCHEMA = pa.schema([pa.field(n, t, metadata={"doc": d}) for n, t, d in COLUMNS])


def records(board: TuningBoard) -> list[dict[str, Any]]:
    """One record per study and method, keys in COLUMNS order."""
    out = []
    for s in board.studies:
        for m in s.methods:
            out.append(
                {
                    "study": s.name,
                    "method": m.method,
                    "recipe": m.recipe,
                    "sampler": m.sampler,
                    "objective_name": m.objective_name,
                    "budget": m.budget,
                    "trials": m.trials,
                    "completed": m.completed,
                    "pruned": m.counts["pruned"],
                    "failed": m.counts["failed"],
                    "running": m.counts["running"],
                    "epochs_trained": m.epochs_trained,
                    "device_seconds": m.device_seconds,
                    "best_objective": m.best_objective,
                    "best_params": m.best_params,
                    "best_trial": m.best_trial,
                    "best_run_id": m.best_run_id,
                    "expected_max": [mean for mean, _ in m.curve],
                    "expected_max_std": [std for _, std in m.curve],
                    "teachers": [t.source for t in s.teachers],
                    "teacher_seconds": s.teacher_seconds,
                }
            )
    return out


def to_parquet(board: TuningBoard) -> bytes:
    """tuning.parquet's bytes (deterministic for the same trials)."""
    recs = records(board)
    table = pa.table({name: [r[name] for r in recs] for name in SCHEMA.names}, schema=SCHEMA)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def params_text(params: str | None) -> str:
    """`key=value` pairs of a params JSON, comma-separated (the text itself if it is not an object)."""
    if params is None:
        return ""
    try:
        data = json.loads(params)
    except ValueError:
        return params
    if not isinstance(data, dict):
        return params
    return ", ".join(f"{k}={json.dumps(data[k])}" for k in sorted(data))
