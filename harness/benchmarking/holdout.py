"""What a held-out validation split costs: an epoch of `harness run` with `data.holdout` against
one without, training on the same number of images of the same split.

Cases, interleaved round by round, each a whole epoch of the real loop (`Trainer.fit_again`:
training, the strategy's epoch end, the evaluation and the metrics write), timed on `clock`:

* `plain`: `images` training images, the evaluation split's `val_images` evaluated;
* `holdout`: the same recipe with `data.holdout: {fraction}` (carved from the whole split before
  the same `train_subset`), so it also evaluates the held-out images after the epoch;
* `holdout_pass`: one evaluation pass of the `holdout` run's student over its held-out split alone.

Reported: each case's median seconds and its ratio to `plain`, then `holdout_overhead` =
(holdout - plain) / holdout_pass: how much of the extra time the held-out pass explains (1.0:
the holdout costs its own evaluation pass and nothing else; the goal is 1 within the noise of the
spreads reported beside it).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.benchmarking.epochs import deterministic_algorithms, quiet_run_log
from harness.benchmarking.timing import CLOCKS, Timing, interleaved
from harness.config import from_mapping
from harness.metrics.evaluate import evaluate
from harness.training.loop import RunOptions, StopSignal, Trainer


@dataclass
class HoldoutConfig:
    """What the holdout benchmark trains: timm's `arch` on `images` Fashion-MNIST training images."""

    arch: str = "resnet10t"
    images: int = 6400
    val_images: int = 2000
    fraction: float = 0.1  # of the 60,000 training images: 6,000 held out
    batch_size: int = 128
    eval_batch_size: int = 1000
    rounds: int = 5
    device: str = "cpu"
    clock: str = "wall"


def recipe(cfg: HoldoutConfig, holdout: bool) -> dict[str, Any]:
    """The one-epoch CE recipe of a case, with or without the held-out split."""
    data: dict[str, Any] = {
        "dataset": "fashion_mnist",
        "backend": "memory",
        "train_subset": cfg.images,
        "val_subset": cfg.val_images,
        "batch_size": cfg.batch_size,
        "eval_batch_size": cfg.eval_batch_size,
        "augment": {"crop_padding": 2, "hflip": True},
    }
    if holdout:
        data["holdout"] = {"fraction": cfg.fraction, "seed": 0}
    return {
        "seed": 0,
        "model": {"arch": cfg.arch},
        "data": data,
        "strategy": {"name": "ce"},
        "optim": {"name": "sgd", "lr": 0.05},
        "schedule": {"epochs": 1, "name": "cosine"},
        "runtime": {"device": cfg.device},
    }


class WholeEpoch:
    """One epoch of the real loop (train, evaluate every split, write) per call."""

    def __init__(self, mapping: dict[str, Any], runs_dir: Path) -> None:
        self.recipe = from_mapping(mapping, "bench-holdout")
        self.trainer = Trainer(self.recipe, runs_dir, RunOptions(progress=False))
        self.trainer.build()
        self.trainer.run.root.mkdir(parents=True, exist_ok=True)
        self.stop = StopSignal()

    def __call__(self) -> None:
        with deterministic_algorithms(self.recipe.runtime.deterministic), quiet_run_log():
            self.trainer.fit_again(self.stop)
        self.trainer.rows.clear()


def held_out_pass(epoch: WholeEpoch) -> Callable[[], None]:
    """One evaluation pass of `epoch`'s student over its held-out split."""
    trainer = epoch.trainer
    assert trainer.data.holdout is not None

    def call() -> None:
        evaluate(trainer.model, trainer.data.holdout, trainer.data.num_classes, 15, trainer.runtime)

    return call


def run(cfg: HoldoutConfig) -> list[dict[str, Any]]:
    """Measure the three cases over `cfg.rounds` interleaved rounds; the rows."""
    torch.manual_seed(0)
    clock = CLOCKS[cfg.clock]
    with tempfile.TemporaryDirectory(prefix="harness-bench-holdout-") as tmp:
        plain = WholeEpoch(recipe(cfg, holdout=False), Path(tmp) / "plain")
        held = WholeEpoch(recipe(cfg, holdout=True), Path(tmp) / "holdout")
        assert plain.trainer.data.train_size == held.trainer.data.train_size == cfg.images
        cases: dict[str, Callable[[], float | None]] = {
            "plain": plain,
            "holdout": held,
            "holdout_pass": held_out_pass(held),
        }
        timings = interleaved(
            cases, rounds=cfg.rounds, work=1, warmup=1, device=torch.device(cfg.device), clock=clock
        )
        return rows(cfg, timings, held.trainer.data.holdout_size)


def rows(cfg: HoldoutConfig, timings: dict[str, Timing], held_out: int) -> list[dict[str, Any]]:
    """A row per case (time against `plain`), then `holdout_overhead`."""
    base = timings["plain"].median
    detail = (
        f"{cfg.arch} b{cfg.batch_size}, Fashion-MNIST: {cfg.images} trained, {cfg.val_images} evaluated, "
        f"{held_out} held out, {cfg.clock} s"
    )
    out = [
        {
            "suite": "holdout",
            "case": name,
            "median_s": t.median,
            "img_per_s": cfg.images / t.median if name != "holdout_pass" else held_out / t.median,
            "ratio": t.median / base,
            "baseline": "plain",
            "spread": t.spread,
            "rounds": len(t.rounds),
            "detail": detail,
        }
        for name, t in timings.items()
    ]
    extra = timings["holdout"].median - base
    out.append(
        {
            "suite": "holdout",
            "case": "holdout_overhead",
            "median_s": extra,
            "img_per_s": float("nan"),
            "ratio": extra / timings["holdout_pass"].median,
            "baseline": "holdout_pass",
            "spread": float("nan"),
            "rounds": len(timings["holdout"].rounds),
            "detail": "(holdout - plain) / holdout_pass: 1.0 = the holdout costs its evaluation pass only",
        }
    )
    return out
