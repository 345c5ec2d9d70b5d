"""The tuning driver's own cost per trial: `harness tune` around the training it schedules.

A study of `trials` trials over a three-field space (a log, a float and an int range) in Optuna's
JournalStorage on a journal file, as `harness tune` keeps it, with the file's TPE sampler. For each
trial, timed apart:

* `ask+tell`: `study.ask()`, the three suggestions and `study.tell(value)`, every step written to
  the journal (what the ask/tell loop costs);
* `trials.parquet`: the trials table rewritten atomically from the storage after the tell
  (`harness.sweeps.tune.write_trials`, its one row per trial read back from the journal).

Reported: the median seconds per trial of each and of both together, over the trials (their
cost grows with the study: TPE fits every earlier trial); the target is the whole under 1 s.
"""

from __future__ import annotations

import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.benchmarking.timing import CLOCKS
from harness.sweeps.tuning import Dist, TunedRecipe, TuningEntry, TuningFile


@dataclass
class TuneBenchConfig:
    """The synthetic study the driver benchmark asks and tells."""

    trials: int = 50
    clock: str = "wall"


def run(cfg: TuneBenchConfig) -> list[dict[str, Any]]:
    """Ask and tell `cfg.trials` trials, writing the trials table after each; the rows."""
    import optuna

    from harness.sweeps.tune import Study, _suggest, open_storage, write_trials

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    clock = CLOCKS[cfg.clock]
    space = {"optim.lr": Dist("log", [0.01, 0.3]), "a": Dist("float", [0.1, 0.9]), "b": Dist("int", [1, 8])}
    tuned = TunedRecipe(Path("bench.yaml"), "bench", "kd", 0, space, cfg.trials, ())
    spec = TuningFile(recipes=[TuningEntry(path="bench.yaml")], trials=cfg.trials)
    asks, writes = [], []
    with tempfile.TemporaryDirectory(prefix="harness-bench-tune-") as tmp:
        study_dir = Path(tmp) / "tuning" / "bench"
        storage = open_storage(None, study_dir)
        study = optuna.create_study(
            study_name="bench/bench",
            storage=storage,
            sampler=optuna.samplers.TPESampler(seed=0),
            direction="maximize",
        )
        studies = [Study(tuned, study, "tpe")]
        for _ in range(cfg.trials):
            t0 = clock()
            trial = study.ask()
            values = [_suggest(trial, key, dist) for key, dist in space.items()]
            study.tell(trial, float(values[0] * values[1] + values[2]))
            t1 = clock()
            write_trials(studies, study_dir, Path(tmp) / "runs", spec)
            t2 = clock()
            asks.append(t1 - t0)
            writes.append(t2 - t1)
    both = [a + w for a, w in zip(asks, writes, strict=True)]
    detail = f"{cfg.trials} trials, TPE, JournalStorage (file), {cfg.clock} s per trial"
    return [
        {
            "suite": "tune",
            "case": name,
            "median_s": statistics.median(values),
            "img_per_s": float("nan"),
            "ratio": statistics.median(values) / statistics.median(both),
            "baseline": "per trial",
            "spread": max(values) - min(values),
            "rounds": len(values),
            "detail": detail,
        }
        for name, values in (("ask+tell", asks), ("trials.parquet", writes), ("per trial", both))
    ]
