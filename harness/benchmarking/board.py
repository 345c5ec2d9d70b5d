"""The leaderboard at scale: `harness leaderboard` over thousands of real run files.

A study of `settings` x `rows` x `seeds` runs (3,300 by default: 10 settings of 110 rows over 3
seeds, every run with a held-out split and 3 epochs) is written as real metrics.parquet files
under a temporary runs folder, then timed, interleaved round by round:

* `read`: reading every run's metrics.parquet with pyarrow and nothing else (the floor: the files
  must be read);
* `generate`: `harness.leaderboard.generate` on the same folder without the run index (read every
  run, check, aggregate, test, correct, render the four outputs and write them).

Reported: the median seconds of each, and `generate` / `read`, the leaderboard's cost beyond
reading its inputs. The issue's target is `generate` under 10 s for 3,300 runs on the reference
machine (its absolute figure is in the row beside the ratio).

The run index (`harness.leaderboard.run_index`) at `index_sizes` runs each (1k and 10k by default,
100k on request), a study written fast enough at that scale by copying a few template files'
bytes with their identity strings and seed patched in place (`write_scaled_study`):

* `cold_<n>`: `generate` with no index (it reads every run and writes the index), the baseline;
* `warm_<n>`: the index present and nothing changed (a `stat` per file, no run file opened);
* `changed_<n>`: 1% of the runs' metrics files touched (new mtime) since the last index.
"""

from __future__ import annotations

import io
import os
import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
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
    #: run counts of the run-index rows (`index_rows`); none: no such rows
    index_sizes: tuple[int, ...] = field(default=(1000, 10_000))
    index_rows: int = 100  # rows per setting of the scaled studies
    index_seeds: int = 5

    @property
    def runs(self) -> int:
        return self.settings * self.rows * self.seeds


def study_rows(identity: dict[str, Any], epochs: int, rng: random.Random) -> list[dict[str, Any]]:
    """One run's metric rows (deterministic values from `rng`) with its `identity` columns."""
    base = dict.fromkeys(SCHEMA.names) | {
        "strategy_params": "{}",
        "dataset": "synthetic",
        "data_pipeline": "{}",
        "epochs": epochs,
        "eval_split": "test",
        "holdout_hash": "0" * 16,
        "train_samples": 1000,
        "train_parts": {},
        "epoch_time_s": 1.0,
        "status": "completed",
    }
    return [
        base
        | identity
        | {
            "epoch": e + 1,
            "step": 10 * (e + 1),
            "top1": 70.0 + e + rng.gauss(0, 1),
            "holdout_top1": 69.0 + e + rng.gauss(0, 1),
            "nll": 0.5 + rng.random() / 10,
            "entropy": 0.4 + rng.random() / 10,
        }
        for e in range(epochs)
    ]


def _method(r: int) -> str:
    return ("ce", "label_smoothing")[r] if r < 2 else f"method{r}"


def write_study(root: Path, cfg: BoardConfig) -> list[Path]:
    """Write the study's metrics.parquet files (deterministic values); their paths."""
    rng = random.Random(0)
    paths = []
    for s in range(cfg.settings):
        for r in range(cfg.rows):
            method = _method(r)
            for seed in range(cfg.seeds):
                run_id = f"s{s}_r{r}-s{seed}-{s:04d}{r:04d}"
                identity = {
                    "run_id": run_id,
                    "recipe_name": f"s{s}_r{r}",
                    "config_hash": f"{s:04d}{r:04d}",
                    "method": method,
                    "strategy": method,
                    "arch": f"arch{s}",
                    "seed": seed,
                    "setting_key": f"setting{s:04d}",
                }
                path = root / run_id / "metrics.parquet"
                path.parent.mkdir(parents=True)
                write_metrics(path, study_rows(identity, cfg.epochs, rng))
                paths.append(path)
    return paths


#: Placeholders of the scaled study's template files, each as long as the values put in its place
#: (setting s < 10,000, row r < 1,000): patched in the uncompressed Parquet bytes, statistics included.
_PLACEHOLDERS = {
    "run_id": "@RUN@ID@@@@@@@@@@@@@@@@",  # s0000_r000-s00-00000000
    "recipe_name": "@RECIPE@@@",  # s0000_r000
    "config_hash": "@HASH@@@",  # 00000000
    "arch": "@ARCH@@@",  # arch0000
    "setting_key": "@SETTING@@@",  # setting0000
}
_SEED = 0x5EED5EED5EED5EED  # an int64 no other value of the file holds


def _identity(s: int, r: int, seed: int) -> dict[str, Any]:
    return {
        "run_id": f"s{s:04d}_r{r:03d}-s{seed:02d}-{s:04d}{r:04d}",
        "recipe_name": f"s{s:04d}_r{r:03d}",
        "config_hash": f"{s:04d}{r:04d}",
        "arch": f"arch{s:04d}",
        "setting_key": f"setting{s:04d}",
    }


def _template(method: str, epochs: int, rng: random.Random) -> bytes:
    """An uncompressed metrics file with the placeholders for identity and seed."""
    rows = study_rows(_PLACEHOLDERS | {"method": method, "strategy": method, "seed": _SEED}, epochs, rng)
    with tempfile.TemporaryDirectory(prefix="harness-bench-template-") as tmp:
        path = Path(tmp) / "metrics.parquet"
        write_metrics(path, rows)  # the metrics file's own schema and checks
        table = pq.read_table(path)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="none", use_dictionary=False)
    return buffer.getvalue()


def write_scaled_study(root: Path, runs: int, *, rows: int = 100, seeds: int = 5, epochs: int = 3) -> int:
    """Write about `runs` real metrics.parquet files (settings of `rows` rows x `seeds` seeds) by
    patching a few templates' bytes; the number written."""
    rng = random.Random(0)
    variants = min(seeds, 8)  # top-1 curves per method kind, so seeds differ
    templates = {
        kind: [_template(kind if kind != "other" else "@METHOD@@", epochs, rng) for _ in range(variants)]
        for kind in ("ce", "label_smoothing", "other")
    }
    settings = max(1, round(runs / (rows * seeds)))
    seed_bytes = _SEED.to_bytes(8, "little", signed=True)
    n = 0
    for s in range(settings):
        for r in range(rows):
            kind = _method(r) if r < 2 else "other"
            for seed in range(seeds):
                data = templates[kind][n % variants]
                identity = _identity(s, r, seed)
                for name, placeholder in _PLACEHOLDERS.items():
                    assert len(placeholder) == len(identity[name]), name  # the file's offsets stay
                    data = data.replace(placeholder.encode(), identity[name].encode())
                if kind == "other":
                    data = data.replace(b"@METHOD@@", f"method{r:03d}".encode())
                data = data.replace(seed_bytes, seed.to_bytes(8, "little", signed=True))
                folder = root / identity["run_id"]
                os.makedirs(folder)
                with open(folder / "metrics.parquet", "wb") as fh:
                    fh.write(data)
                n += 1
    return n


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
            result = generate(root / "runs", root / f"board{rounds['n']}", use_index=False)
            assert result.runs_used == cfg.runs, result.runs_used

        cases: dict[str, Callable[[], float | None]] = {"read": read_all, "generate": board}
        timings = interleaved(cases, rounds=cfg.rounds, work=1, warmup=1, clock=clock)
    return [*rows(cfg, timings), *index_rows(cfg)]


def index_rows(cfg: BoardConfig) -> list[dict[str, Any]]:
    """The run index at each of `cfg.index_sizes` runs: cold, warm and 1%-changed regenerations,
    against cold; every call checks that all runs were used."""
    from harness.leaderboard import generate
    from harness.leaderboard.run_index import INDEX_PATH

    clock = CLOCKS[cfg.clock]
    out: list[dict[str, Any]] = []
    for size in cfg.index_sizes:
        with tempfile.TemporaryDirectory(prefix="harness-bench-index-") as tmp:
            root = Path(tmp)
            written = write_scaled_study(
                root / "runs", size, rows=cfg.index_rows, seeds=cfg.index_seeds, epochs=cfg.epochs
            )
            metrics = sorted((root / "runs").glob("*/metrics.parquet"))[::100]  # 1% of the runs
            touched = [0]  # calls of `changed`: each gives the touched files a new mtime

            def board(root: Path = root, written: int = written) -> None:
                result = generate(root / "runs", root / "board")
                assert result.runs_used == written, result.runs_used

            def cold(root: Path = root, board: Callable[[], None] = board) -> None:
                (root / "runs" / INDEX_PATH).unlink(missing_ok=True)
                board()

            def changed(
                metrics: list[Path] = metrics, board: Callable[[], None] = board, touched: list[int] = touched
            ) -> None:
                touched[0] += 1
                for path in metrics:  # a new mtime: re-read although the bytes are the same
                    os.utime(path, ns=(touched[0], touched[0]))
                board()

            cases: dict[str, Callable[[], float | None]] = {"cold": cold, "warm": board, "changed": changed}
            timings = interleaved(cases, rounds=cfg.rounds, work=1, warmup=0, clock=clock)
        base = timings["cold"].median
        settings = written // (cfg.index_rows * cfg.index_seeds)
        shape = f"{settings} settings x {cfg.index_rows} rows x {cfg.index_seeds} seeds"
        detail = f"{written} runs ({shape}), {len(metrics)} touched in `changed`, {cfg.clock} s"
        out += [
            _row(f"{name}_{size}", t, t.median / base, f"cold_{size}", detail) for name, t in timings.items()
        ]
    return out


def _row(case: str, t: Timing, ratio: float, baseline: str, detail: str) -> dict[str, Any]:
    return {
        "suite": "board",
        "case": case,
        "median_s": t.median,
        "img_per_s": float("nan"),
        "ratio": ratio,
        "baseline": baseline,
        "spread": t.spread,
        "rounds": len(t.rounds),
        "detail": detail,
    }


def rows(cfg: BoardConfig, timings: dict[str, Timing]) -> list[dict[str, Any]]:
    """A row per case (time against `read`)."""
    base = timings["read"].median
    detail = f"{cfg.runs} runs ({cfg.settings} settings x {cfg.rows} rows x {cfg.seeds} seeds), {cfg.clock} s"
    return [_row(name, t, t.median / base, "read", detail) for name, t in timings.items()]
