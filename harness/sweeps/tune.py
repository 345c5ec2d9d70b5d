"""`harness tune`: equal-budget tuning with Optuna (Dodge et al. 2019, "Show your work"), one study
per base recipe of a tuning file (`harness.sweeps.tuning`), selected on the held-out split.

Each trial is an ordinary run: the base recipe with the sampled fields as `--set` overrides
(`PlannedRun`), so its run id follows from its parameters, it has its own folder, resumes, is
skipped when complete and shows in `harness sweep status` and the leaderboard. Trials train
through the sweep's own machinery: locally `harness.sweeps.local.run_one` in `--jobs N` slots
(the ask/tell loop keeps N trials in flight), under Slurm the `SlurmExecutor`, one job a trial.
Optuna is called from the driver's main thread only: ask, tell, and after each tell
`<runs-dir>/tuning/<study>/trials.parquet` rewritten atomically (one row per trial).

Nothing lost, nothing doubled: the study lives in Optuna's JournalStorage
(`<runs-dir>/tuning/<study>/journal.log`) or `--storage URL`. Run again after a kill, the driver
first settles the trials left RUNNING: their run, found from their parameters, is told from its
metrics.parquet when complete, resumed otherwise; a failed or diverged run is told FAIL (never
retried). Each study stores the hash of its space (user attr `space_hash`): a changed space is
refused unless given a new `--study-name`.

Pruning (`pruner:`): while a trial trains, its metrics.parquet (rewritten at each epoch end) is
read back and each epoch's objective reported; a trial the pruner stops gets SIGTERM through the
pid in its run lock, checkpoints like any interrupted run and is told PRUNED.

`final_seeds: K` retrains each method's best parameters on K seeds no trial used, as
`<recipe name>_tuned` runs, listed in `<runs-dir>/tuning/<study>/final.json`.

May import the sweep's plan, summary, executors, triage and worker, `harness.store`,
`harness.config` and optuna (lazily).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import logging
import math
import os
import signal
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from harness.config import load_recipe
from harness.config.recipe import safe_name
from harness.errors import HarnessError, RecipeError
from harness.leaderboard.tuning import TRIALS_SCHEMA
from harness.store.files import atomic_write_bytes, write_json
from harness.store.metrics_file import read_metrics
from harness.store.rundir import RunDir
from harness.sweeps.executor import Executor, SweepOptions
from harness.sweeps.local import SignalForwarder, run_one, slot_envs
from harness.sweeps.plan import PlannedRun
from harness.sweeps.summary import RunRecord, SweepSummary, new_sweep_id
from harness.sweeps.tuning import TunedRecipe, TuningFile, load_tuning_file, resolve

if TYPE_CHECKING:
    import optuna

log = logging.getLogger("harness")

STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running"}
TUNED_SUFFIX = "_tuned"


class StorageError(HarnessError):
    """The study's storage cannot be opened or written (EX_IOERR)."""

    exit_code = 74


@dataclass
class TuneOptions:
    """How to run a tuning file (none of it changes a trial's run id)."""

    sweep: SweepOptions = field(default_factory=SweepOptions)
    study_name: str | None = None
    storage: str | None = None  # default: the journal file of the study's folder
    final_seeds: int | None = None  # default: the file's final_seeds
    executor: Executor | None = None  # Slurm; default: local slots
    track: list[str] = field(default_factory=list)  # --track: trackers every trial also logs to


@dataclass
class TuneResult:
    """What `tune` did: the study's folder, its trials' states and the final runs."""

    study_dir: Path
    counts: dict[str, int]
    best: dict[str, dict[str, Any]]
    final: dict[str, dict[str, Any]]
    interrupted: str | None = None
    budgets: dict[str, int] = field(default_factory=dict)  # method -> its trial budget
    final_failed: bool = False  # a final-seed run failed or diverged

    @property
    def exit_code(self) -> int:
        """130 if interrupted, 1 if a final-seed run failed (a failed trial is a result), else 0."""
        return 130 if self.interrupted else 1 if self.final_failed else 0

    def render(self) -> str:
        lines = [
            f"study {self.study_dir.name}: " + ", ".join(f"{n} {s}" for s, n in self.counts.items() if n)
        ]
        if self.interrupted:
            lines[0] += f" (interrupted by {self.interrupted}; run it again to resume)"
        if len(set(self.budgets.values())) > 1:
            budgets = ", ".join(f"{m} {n}" for m, n in self.budgets.items())
            lines.append(f"  unequal budgets (a recipe entry's trials): {budgets}")
        for method, best in self.best.items():
            lines.append(f"  {method:<20} best {best['objective']:.2f}  {best['params']}")
        for method, final in self.final.items():
            lines.append(f"  {method}{TUNED_SUFFIX}: {', '.join(final['run_ids'])}")
        lines.append(f"trials: {self.study_dir / 'trials.parquet'}")
        return "\n".join(lines)


# ------------------------------------------------------------------------------ the plan
@dataclass
class Study:
    """One base recipe's Optuna study and what the trials table says of it."""

    tuned: TunedRecipe
    study: optuna.Study
    sampler: str


def plan_tuning(path: Path, study_name: str | None) -> tuple[TuningFile, list[TunedRecipe], str]:
    """The tuning file, its base recipes resolved and checked, and the study's name; nothing written."""
    spec = load_tuning_file(path)
    tuned = resolve(spec, path)
    for t in tuned:
        if load_recipe(t.path, t.overrides).data.holdout is None:
            raise RecipeError(
                f"{t.path}: data.holdout: required by tuning, which selects on the held-out split "
                "(never on the test split)"
            )
    names = [t.name for t in tuned]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice:
        raise RecipeError(f"{path}: recipes: two base recipes are named {twice!r}")
    name = study_name or path.stem
    problem = safe_name(name)
    if problem:
        raise RecipeError(f"--study-name {name!r}: it {problem}")
    return spec, tuned, name


def open_storage(url: str | None, study_dir: Path) -> Any:
    """Optuna's storage: `url`, else a JournalStorage on STUDY_DIR/journal.log; exit 74 if it cannot open."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    try:
        if url is None:
            study_dir.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(study_dir / "journal.log")))
        return optuna.storages.RDBStorage(url)
    except Exception as exc:  # sqlalchemy, OSError, a bad URL: one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StorageError(
            f"--storage {url or study_dir / 'journal.log'}: cannot be opened: {first}"
        ) from None


def make_sampler(spec: TuningFile, tuned: TunedRecipe) -> Any:
    """The file's sampler, seeded (grid: every choice, every integer, the bounds of a float range)."""
    import optuna

    s = spec.sampler
    if s.name == "random":
        return optuna.samplers.RandomSampler(seed=s.seed)
    if s.name == "grid":
        grid = {}
        for key, dist in tuned.space.items():
            if dist.kind == "int":
                grid[key] = list(range(dist.values[0], dist.values[1] + 1))
            else:
                grid[key] = list(dist.values)
        return optuna.samplers.GridSampler(grid, seed=s.seed)
    return optuna.samplers.TPESampler(seed=s.seed)


def make_pruner(spec: TuningFile) -> Any:
    import optuna

    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    if spec.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def open_studies(spec: TuningFile, tuned: list[TunedRecipe], name: str, storage: Any) -> list[Study]:
    """One Optuna study per base recipe, `<study>/<recipe name>`; a study whose stored space hash
    differs from the file's is refused (give a new --study-name)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    studies = []
    for t in tuned:
        try:
            study = optuna.create_study(
                study_name=f"{name}/{t.name}",
                storage=storage,
                sampler=make_sampler(spec, t),
                pruner=make_pruner(spec),
                direction="maximize",
                load_if_exists=True,
            )
        except OSError as exc:
            raise StorageError(f"study {name}: storage cannot be written: {exc}") from None
        stored = study.user_attrs.get("space_hash")
        if stored is not None and stored != t.space_hash():
            raise RecipeError(
                f"study {name}: the space of {t.name} changed since the study began; "
                "give a new --study-name to start another study"
            )
        if stored is None:
            study.set_user_attr("space_hash", t.space_hash())
            study.set_user_attr("objective", spec.objective)
        studies.append(Study(t, study, spec.sampler.name))
    return studies


# ------------------------------------------------------------------------------ one trial
def trial_run(tuned: TunedRecipe, params: dict[str, Any], extra: tuple[str, ...] = ()) -> PlannedRun:
    """The run of a trial: the base recipe with each sampled field as a `--set` override."""
    overrides = (*tuned.overrides, *(f"{k}={json.dumps(params[k])}" for k in sorted(params)), *extra)
    run = PlannedRun(tuned.path, overrides, None)
    run.recipe = load_recipe(tuned.path, overrides)
    run.seed = run.recipe.seed
    return run


def objective_of(rows: list[dict[str, Any]], name: str) -> float | None:
    """holdout_top1 of the last evaluated epoch, or its best over the epochs (None: none finite)."""
    values = [r.get("holdout_top1") for r in rows]
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None
    return max(values) if name == "holdout_top1_best" else values[-1]


def run_cost(runs_dir: Path, run_id: str) -> tuple[int, float, list[dict[str, Any]]]:
    """(epochs trained, summed epoch_time_s, the rows) of a run's metrics.parquet (0s if none yet)."""
    path = RunDir(runs_dir, run_id).metrics
    try:
        rows = read_metrics(path) if path.exists() else []
    except Exception:  # being rewritten, or not yet a whole file: nothing to read yet
        rows = []
    return len(rows), float(sum(r.get("epoch_time_s") or 0.0 for r in rows)), rows


@dataclass
class Flight:
    """A trial in flight: its study, its number, its run and how its run ended."""

    study: Study
    number: int
    run: PlannedRun
    record: RunRecord
    pruned: bool = False


def _reported(flight: Flight, runs_dir: Path, objective: str, seen: int, may_prune: bool) -> int:
    """Report each new epoch's objective of a training trial to its pruner (main thread); when
    `may_prune` (a local worker still training), prune it by SIGTERM to its worker (the pid in the
    run's lock) if the pruner says so."""
    _, _, rows = run_cost(runs_dir, flight.run.run_id)
    trial = live_trial(flight.study, flight.number)
    for i in range(seen, len(rows)):
        value = objective_of(rows[: i + 1], objective)
        if value is None:
            continue
        trial.report(value, int(rows[i]["epoch"]))
        if may_prune and not flight.pruned and trial.should_prune():
            flight.pruned = _stop_worker(RunDir(runs_dir, flight.run.run_id))
    return max(seen, len(rows))  # a file being rewritten reads as no rows


def live_trial(study: Study, number: int) -> optuna.trial.Trial:
    """Trial `number` of `study` as a live Optuna trial (to report to and to set attributes of)."""
    import optuna

    frozen = study.study.get_trials(deepcopy=False)[number]  # a study's trials are numbered 0, 1, ...
    return optuna.trial.Trial(study.study, frozen._trial_id)


def _stop_worker(rundir: RunDir) -> bool:
    """SIGTERM to the process holding the run's lock (it checkpoints and ends interrupted); False
    when no process holds it any more (the run ended: nothing to prune)."""
    if not rundir.locked_elsewhere():
        return False
    with contextlib.suppress(OSError, ValueError):
        pid = int((rundir.root / ".lock").read_text().strip() or "0")
        if pid > 0:
            os.kill(pid, signal.SIGTERM)
            return True
    return False


# ------------------------------------------------------------------------------ the loop
class Driver:
    """The ask/tell loop of every study of a tuning file, N trials in flight."""

    def __init__(
        self, spec: TuningFile, studies: list[Study], study_dir: Path, runs_dir: Path, opts: TuneOptions
    ):
        self.spec, self.studies, self.opts = spec, studies, opts
        self.study_dir, self.runs_dir = study_dir, runs_dir
        self.jobs = max(1, opts.sweep.jobs)
        self.free = slot_envs(self.jobs, opts.sweep.device) if opts.executor is None else [{}] * self.jobs
        self.flights: dict[cf.Future, Flight] = {}
        self.seen: dict[int, int] = {}

    def run(self, stop: SignalForwarder, scratch: Path) -> None:
        """Settle the trials a killed driver left RUNNING, then ask each study for trials up to its
        budget, N in flight; a signal stops the asking and the driver waits for the trials in flight."""
        with cf.ThreadPoolExecutor(max_workers=self.jobs) as pool:
            for study in self.studies:
                for trial in study.study.get_trials(deepcopy=False):
                    if trial.state.name == "RUNNING" and stop.signum is None:  # left by a killed
                        self._wait_for_slot(pool, stop)  # driver: settle it, once
                        live = live_trial(study, trial.number)  # killed between two suggestions:
                        for key, dist in study.tuned.space.items():  # the rest sampled now
                            _suggest(live, key, dist)
                        self._launch(pool, study, trial.number, live.params, stop, scratch)
            for study in self.studies:
                while stop.signum is None and self._started(study) < study.tuned.trials:
                    self._wait_for_slot(pool, stop)
                    if stop.signum is not None:
                        break
                    trial = study.study.ask()
                    for key, dist in study.tuned.space.items():
                        _suggest(trial, key, dist)
                    self._launch(pool, study, trial.number, trial.params, stop, scratch)
            while self.flights:
                self._settle_one(stop)

    def _started(self, study: Study) -> int:
        return len(study.study.get_trials(deepcopy=False))

    def _wait_for_slot(self, pool: cf.ThreadPoolExecutor, stop: SignalForwarder) -> None:
        while len(self.flights) >= self.jobs:
            self._settle_one(stop)

    def _launch(
        self,
        pool: cf.ThreadPoolExecutor,
        study: Study,
        number: int,
        params: dict[str, Any],
        stop: SignalForwarder,
        scratch: Path,
    ) -> None:
        try:
            run = trial_run(study.tuned, params)
        except HarnessError as exc:  # a sampled value the recipe refuses: the trial failed
            study.study.tell(number, state=_state("FAIL"))
            log.info("tune: trial %d of %s failed: %s", number, study.tuned.name, exc)
            self.write_trials()
            return
        live_trial(study, number).set_user_attr("run_id", run.run_id)
        record = RunRecord(*_record_key(run))
        flight = Flight(study, number, run, record)
        for other in self.flights.values():  # the same parameters twice: train once, tell both
            if other.run.run_id == run.run_id:
                self._settle_all_of(other, stop)
                break
        env = self.free.pop(0)
        log.info("tune: %s trial %d -> %s", study.tuned.name, number, run.run_id)
        future = pool.submit(self._train, flight, env, stop, scratch / f"{study.tuned.name}-{number}")
        self.flights[future] = flight
        self.seen[id(flight)] = 0
        self.write_trials()

    def _settle_all_of(self, other: Flight, stop: SignalForwarder) -> None:
        while any(f is other for f in self.flights.values()):
            self._settle_one(stop)

    def _train(
        self, flight: Flight, env: dict[str, str], stop: SignalForwarder, scratch: Path
    ) -> dict[str, str]:
        if self.opts.executor is not None:
            summary = SweepSummary(new_sweep_id(), str(self.runs_dir), [], time.time(), runs=[flight.record])
            self.opts.executor.run([flight.run], summary)
        else:
            run_one(flight.run, flight.record, self.runs_dir, self.opts.sweep, stop, scratch, env or None)
            while flight.record.outcome == "busy" and stop.signum is None:
                # another process holds the run (a killed driver's worker checkpointing, another
                # tune): wait for it, then settle the trial from what it leaves
                time.sleep(1.0)
                flight.record = RunRecord(*_record_key(flight.run))
                run_one(flight.run, flight.record, self.runs_dir, self.opts.sweep, stop, scratch, env or None)
        return env

    def _settle_one(self, stop: SignalForwarder) -> None:
        done, _ = cf.wait(list(self.flights), timeout=1.0, return_when=cf.FIRST_COMPLETED)
        if self.spec.pruner is not None:
            local = self.opts.executor is None  # under Slurm the worker runs elsewhere: report only
            for future, flight in self.flights.items():
                if future not in done:
                    self.seen[id(flight)] = _reported(
                        flight, self.runs_dir, self.spec.objective, self.seen[id(flight)], local
                    )
        for future in done:
            flight = self.flights.pop(future)
            self.free.append(future.result())
            self._tell(flight, stop)

    def _tell(self, flight: Flight, stop: SignalForwarder) -> None:
        record, study = flight.record, flight.study.study
        if self.spec.pruner is not None and not flight.pruned:
            self.seen[id(flight)] = _reported(
                flight, self.runs_dir, self.spec.objective, self.seen[id(flight)], False
            )
        if flight.pruned:
            study.tell(flight.number, state=_state("PRUNED"))
        elif record.outcome in ("ran", "skipped"):
            _, _, rows = run_cost(self.runs_dir, flight.run.run_id)
            value = objective_of(rows, self.spec.objective)
            if value is None:
                study.tell(flight.number, state=_state("FAIL"))
            else:
                study.tell(flight.number, value)
        elif record.outcome in ("failed", "diverged"):
            log.info("tune: trial %d %s: %s", flight.number, record.outcome, record.error or "")
            study.tell(flight.number, state=_state("FAIL"))
        # interrupted, busy: the trial stays RUNNING and is settled by the next invocation
        self.write_trials()

    def write_trials(self) -> None:
        write_trials(self.studies, self.study_dir, self.runs_dir, self.spec)


def _record_key(run: PlannedRun) -> tuple[str, str, int | None, list[str], str | None]:
    """The fields a sweep's `RunRecord` of `run` starts from."""
    return run.run_id, str(run.recipe_path), run.seed, list(run.overrides), run.group


def _state(name: str) -> Any:
    import optuna

    return optuna.trial.TrialState[name]


def _suggest(trial: Any, key: str, dist: Any) -> Any:
    lo_hi = dist.values
    if dist.kind == "log":
        return trial.suggest_float(key, lo_hi[0], lo_hi[1], log=True)
    if dist.kind == "float":
        return trial.suggest_float(key, lo_hi[0], lo_hi[1])
    if dist.kind == "int":
        return trial.suggest_int(key, lo_hi[0], lo_hi[1])
    return trial.suggest_categorical(key, dist.values)


# ------------------------------------------------------------------------------ the files
def trial_rows(
    studies: list[Study], study_name: str, runs_dir: Path, spec: TuningFile
) -> list[dict[str, Any]]:
    """One row per trial of every study (TRIALS_SCHEMA)."""
    rows = []
    for s in studies:
        for trial in s.study.get_trials(deepcopy=False):
            run_id = trial.user_attrs.get("run_id")
            epochs, seconds, _ = run_cost(runs_dir, run_id) if run_id else (0, 0.0, [])
            state = STATES.get(trial.state.name, trial.state.name.lower())
            rows.append(
                {
                    "study": study_name,
                    "recipe": str(s.tuned.path),
                    "method": s.tuned.method,
                    "trial": trial.number,
                    "state": state,
                    "params": json.dumps(trial.params, sort_keys=True),
                    "objective": trial.value if state == "complete" else None,
                    "epochs_trained": epochs,
                    "device_seconds": seconds,
                    "run_id": run_id,
                    "budget": s.tuned.trials,
                    "sampler": s.sampler,
                    "objective_name": spec.objective,
                }
            )
    return rows


def write_trials(studies: list[Study], study_dir: Path, runs_dir: Path, spec: TuningFile) -> Path:
    """Rewrite STUDY_DIR/trials.parquet atomically from the storage."""
    table = pa.Table.from_pylist(trial_rows(studies, study_dir.name, runs_dir, spec), schema=TRIALS_SCHEMA)
    path = study_dir / "trials.parquet"
    atomic_write_bytes(path, lambda fh: pq.write_table(table, fh))
    return path


def best_of(study: Study) -> dict[str, Any] | None:
    """The best complete trial's parameters and objective (None: no trial completed)."""
    complete = [t for t in study.study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if not complete:
        return None
    best = max(complete, key=lambda t: (t.value, -t.number))
    return {"params": dict(best.params), "objective": best.value, "trial": best.number}


def final_runs(study: Study, params: dict[str, Any], k: int) -> list[PlannedRun]:
    """The best parameters on K seeds no trial used, named `<recipe name>_tuned`."""
    seeds = [s for s in range(k + 1) if s != study.tuned.seed][:k]
    name = f"name={study.tuned.name}{TUNED_SUFFIX}"
    return [trial_run(study.tuned, params, (name, f"seed={s}")) for s in seeds]


# ------------------------------------------------------------------------------ --plan
def plan_cost(path: Path, history: Path, final_seeds: int | None = None) -> str:
    """`harness tune --plan`: each base recipe's device-hours for its trials and final seeds, by
    `harness sweep --plan`'s estimate (history, else rates.csv) of the base recipe (a trial's
    sampled values change no image count); nothing written."""
    from harness.sweeps.estimate import estimate, render_plan

    spec, tuned, _ = plan_tuning(path, None)
    k = spec.final_seeds if final_seeds is None else final_seeds
    plans = []
    for t in tuned:
        base = PlannedRun(t.path, t.overrides, t.seed, load_recipe(t.path, t.overrides))
        (one,) = estimate([base], history)
        for label, n in (("trial", t.trials), ("final seed", k)):
            plans += [replace(one, run_id=f"{t.name} {label} {i}") for i in range(n)]
    text, _ = render_plan(plans, None, None)
    return text


# ------------------------------------------------------------------------------ tune
def tune(path: Path, runs_dir: Path | str, opts: TuneOptions | None = None) -> TuneResult:
    """Run (or continue) every study of the tuning file at `path`, then its final seeds."""
    opts = opts or TuneOptions()
    spec, tuned, name = plan_tuning(path, opts.study_name)
    tuned = [with_tracking(t, opts.track, name) for t in tuned]
    runs_dir = Path(runs_dir).resolve()
    study_dir = runs_dir / "tuning" / name
    storage = open_storage(opts.storage, study_dir)
    studies = open_studies(spec, tuned, name, storage)
    study_dir.mkdir(parents=True, exist_ok=True)
    interrupted = _train_teachers(tuned, runs_dir, opts)
    if interrupted:
        return TuneResult(study_dir, {s: 0 for s in STATES.values()}, {}, {}, interrupted, {}, False)
    driver = Driver(spec, studies, study_dir, runs_dir, opts)
    with SignalForwarder() as stop, tempfile.TemporaryDirectory(prefix="harness-tune-") as tmp:
        driver.run(stop, Path(tmp))
        driver.write_trials()
        interrupted = stop.name
    best = {s.tuned.method: b for s in studies if (b := best_of(s)) is not None}
    final: dict[str, dict[str, Any]] = {}
    k = spec.final_seeds if opts.final_seeds is None else opts.final_seeds
    final_failed = False
    if not interrupted:
        final, interrupted, final_failed = _final_seeds(studies, k, runs_dir, study_dir, opts)
    counts = {s: 0 for s in STATES.values()}
    for s in studies:
        for t in s.study.get_trials(deepcopy=False):
            counts[STATES.get(t.state.name, "failed")] += 1
    if opts.sweep.leaderboard and not interrupted and not final:
        from harness.sweeps.executor import regenerate_leaderboard

        regenerate_leaderboard(runs_dir, opts.sweep.leaderboard_dir(runs_dir))
    budgets = {s.tuned.method: s.tuned.trials for s in studies}
    return TuneResult(study_dir, counts, best, final, interrupted, budgets, final_failed)


def with_tracking(tuned: TunedRecipe, track: list[str], study: str) -> TunedRecipe:
    """The base recipe with the `--track` trackers on and its trials grouped by study in them (W&B
    group, MLflow tag); stops with one line, before any trial, where a tracker is not installed.
    Trackers are not part of the run id, so a trial's run is the same with or without them."""
    from harness.training.trackers import check_installed, with_trackers

    base = load_recipe(tuned.path, tuned.overrides)
    extra = with_trackers(base.tracking, track, study)
    if extra:
        tuned = replace(tuned, overrides=(*tuned.overrides, *extra))
        base = load_recipe(tuned.path, tuned.overrides)
    check_installed(base.tracking)
    return tuned


def _train_teachers(tuned: list[TunedRecipe], runs_dir: Path, opts: TuneOptions) -> str | None:
    """Train, through the sweep, the teacher runs the studies' trials read and that are not yet
    complete (`plan.with_teacher_runs`), once each, before any trial: trials in flight side by
    side would otherwise race to train a shared teacher. Returns the signal that stopped it."""
    from harness.sweeps.plan import with_teacher_runs
    from harness.sweeps.sweep import run_sweep

    bases = [trial_run(t, {}) for t in tuned]
    base_ids = {r.run_id for r in bases}
    teachers = [r for r in with_teacher_runs(bases, runs_dir) if r.run_id not in base_ids]
    if not teachers:
        return None
    names = ", ".join(r.run_id for r in teachers)
    log.info("tune: training %d teacher run(s) first: %s", len(teachers), names)
    summary = run_sweep(teachers, runs_dir, replace(opts.sweep, leaderboard=False), opts.executor)
    if summary.exit_code == 1 and not summary.interrupted:
        raise HarnessError("tune: a teacher run failed; see its run folder (harness sweep status)")
    return summary.interrupted


def _final_seeds(
    studies: list[Study], k: int, runs_dir: Path, study_dir: Path, opts: TuneOptions
) -> tuple[dict[str, dict[str, Any]], str | None, bool]:
    """Train every method's best configuration on K fresh seeds through the sweep; final.json.
    Returns the final entries, the signal that stopped the sweep and whether a run failed."""
    if k <= 0:
        return {}, None, False
    from harness.sweeps.sweep import run_sweep

    final, runs = {}, []
    for s in studies:
        best = best_of(s)
        if best is None:
            continue
        planned = final_runs(s, best["params"], k)
        runs.extend(planned)
        final[s.tuned.method] = {
            "params": best["params"],
            "run_ids": [r.run_id for r in planned],
            "budget": s.tuned.trials,
        }
    write_json(study_dir / "final.json", final)
    summary = run_sweep(runs, runs_dir, opts.sweep, opts.executor)
    return final, summary.interrupted, summary.exit_code == 1
