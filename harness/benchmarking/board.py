"""The leaderboard at scale: `harness leaderboard` over thousands of real run files.

A study of `settings` x `rows` x `seeds` runs (3,300 by default: 10 settings of 110 rows over 3
seeds, every run with a held-out split and 3 epochs) is written as real metrics.parquet files
under a temporary runs folder, then timed, interleaved round by round:

* `read`: reading every run's metrics.parquet with pyarrow and nothing else (the floor: the files
  must be read);
* `generate`: `harness.leaderboard.generate` on the same folder (read, check, aggregate, test,
  correct, render the four outputs and write them).

Reported: the median seconds of each, and `generate` / `read`, the leaderboard's cost beyond
reading its inputs. The issue's target is `generate` under 10 s for 3,300 runs on the reference
machine (its absolute figure is in the row beside the ratio).
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from harness.benchmarking.timing import CLOCKS, Timing, interleaved
from harness.metrics.columns import SCHEMA
from harness.store.metrics_file import write_metrics


@dataclass
class BoardConfig:
    """The synthetic study the leaderboard benchmark regenerates."""

    settings: int = 10
    rows: int = 110
    seeds: int = 3
    epochs: int = 3
    rounds: int = 3
    clock: str = "wall"

    @property
    def runs(self) -> int:
        return self.settings * self.rows * self.seeds


def write_study(root: Path, cfg: BoardConfig) -> list[Path]:
    """Write the study's metrics.parquet files (deterministic values); their paths."""
    rng = random.Random(0)
    paths = []
    for s in range(cfg.settings):
        for r in range(cfg.rows):
            method = ("ce", "label_smoothing")[r] if r < 2 else f"method{r}"
            for seed in range(cfg.seeds):
                run_id = f"s{s}_r{r}-s{seed}-{s:04d}{r:04d}"
                base = dict.fromkeys(SCHEMA.names) | {
                    "run_id": run_id,
                    "recipe_name": f"s{s}_r{r}",
                    "config_hash": f"{s:04d}{r:04d}",
                    "method": method,
                    "strategy": method,
                    "strategy_params": "{}",
                    "dataset": "synthetic",
                    "arch": f"arch{s}",
                    "seed": seed,
                    "setting_key": f"setting{s:04d}",
                    "data_pipeline": "{}",
                    "epochs": cfg.epochs,
                    "eval_split": "test",
                    "holdout_hash": "0" * 16,
                    "train_samples": 1000,
                    "train_parts": {},
                    "epoch_time_s": 1.0,
                    "status": "completed",
                }
                rows = [
                    base
                    | {
                        "epoch": e + 1,
                        "step": 10 * (e + 1),
                        "top1": 70.0 + e + rng.gauss(0, 1),
                        "holdout_top1": 69.0 + e + rng.gauss(0, 1),
                        "nll": 0.5 + rng.random() / 10,
                        "entropy": 0.4 + rng.random() / 10,
                    }
                    for e in range(cfg.epochs)
                ]
                path = root / run_id / "metrics.parquet"
                path.parent.mkdir(parents=True)
                write_metrics(path, rows)
                paths.append(path)
    return paths


def run(cfg: BoardConfig) -> list[dict[str, Any]]:
    """Write the study, time `read` and `generate` over `cfg.rounds` interleaved rounds; the rows."""
    from harness.leaderboard import generate

    clock = CLOCKS[cfg.clock]
    with tempfile.TemporaryDirectory(prefix="harness-bench-board-") as tmp:
        root = Path(tmp)
        paths = write_study(root / "runs", cfg)
        rounds = {"n": 0}

        def read_all() -> None:
            for path in paths:
                pq.read_table(path)

        def board() -> None:
            rounds["n"] += 1
            result = generate(root / "runs", root / f"board{rounds['n']}")
            assert result.runs_used == cfg.runs, result.runs_used

        cases: dict[str, Callable[[], float | None]] = {"read": read_all, "generate": board}
        timings = interleaved(cases, rounds=cfg.rounds, work=1, warmup=1, clock=clock)
        return rows(cfg, timings)


def rows(cfg: BoardConfig, timings: dict[str, Timing]) -> list[dict[str, Any]]:
    """A row per case (time against `read`)."""
    base = timings["read"].median
    detail = f"{cfg.runs} runs ({cfg.settings} settings x {cfg.rows} rows x {cfg.seeds} seeds), {cfg.clock} s"
    return [
        {
            "suite": "board",
            "case": name,
            "median_s": t.median,
            "img_per_s": float("nan"),
            "ratio": t.median / base,
            "baseline": "read",
            "spread": t.spread,
            "rounds": len(t.rounds),
            "detail": detail,
        }
        for name, t in timings.items()
    ]
