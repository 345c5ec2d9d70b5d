"""Whole-epoch cost: an epoch of the harness's own loop against a bare timm loop over the same data.

`harness run` reports each epoch's speed as `img_per_s` = training samples / `epoch_time_s`. This
suite times that epoch of the real loop and sets it beside hand-written loops on the same
in-memory split (the memory backend's uint8 tensors), every case a whole epoch of its own model,
interleaved round by round:

* `bare`: a bare timm loop that indexes the split itself: a random permutation per epoch, then
  per batch `images[idx]` to float, / 255, normalised, model(x) -> F.cross_entropy -> backward ->
  SGD step (`steps.bare_update`);
* `bare_loader`: the same loop on the batches of the harness's `MemoryLoader` (the loader's cost
  without the runner);
* `harness`: `Trainer.fit` on a one-epoch recipe, its epoch timed from the loop's first request
  for a batch to the exhaustion of the loader (what the runner's `epoch_time_s` spans but for
  making the disabled progress bar: the loader's epoch plan, every batch, step, loss tracking and
  per-step check; not the evaluation and the writes that follow the epoch);
* `harness_nondet`: the same with `runtime.deterministic: false`.

Hand-written loops do not ask torch for deterministic algorithms, so the bare cases run with them
off; each harness case runs with what its recipe says (on by default). Reported: median seconds
per epoch, images/s, each case's time against `bare`, and `harness_speed` = harness img/s / bare
img/s (the figure the goal >= 0.97 is about). `clock: cpu` times CPU seconds instead of wall
seconds (see `timing.CLOCKS`).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.benchmarking.steps import bare_model, bare_update
from harness.benchmarking.timing import CLOCKS, Timing, interleaved, sync
from harness.config import from_mapping
from harness.data import Loader
from harness.data.memory import MemoryLoader
from harness.training.loop import RunOptions, StopSignal, Trainer

Batches = Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]


@dataclass
class EpochConfig:
    """What the epoch benchmark trains: `images` of the data set's train split, no augmentation."""

    arch: str = "resnet18"
    dataset: str = "fashion_mnist"
    images: int = 6400
    batch_size: int = 128
    val_images: int = 128  # evaluated after each harness epoch (untimed): kept small
    rounds: int = 5
    device: str = "cpu"
    clock: str = "wall"  # a key of timing.CLOCKS


def recipe(cfg: EpochConfig, deterministic: bool = True) -> dict[str, Any]:
    """The one-epoch CE recipe every case trains (the bare ones take only its data)."""
    return {
        "seed": 0,
        "model": {"arch": cfg.arch},
        "data": {
            "dataset": cfg.dataset,
            "backend": "memory",
            "train_subset": cfg.images,
            "val_subset": cfg.val_images,
            "batch_size": cfg.batch_size,
            "eval_batch_size": cfg.val_images,
            "augment": {"crop_padding": 0, "hflip": False},
        },
        "strategy": {"name": "ce"},
        "optim": {"name": "sgd", "lr": 0.01},
        "schedule": {"epochs": 1, "name": "cosine"},
        "runtime": {"device": cfg.device, "deterministic": deterministic},
    }


@contextlib.contextmanager
def deterministic_algorithms(on: bool) -> Iterator[None]:
    """torch's deterministic algorithms on or off for the block, as they were afterwards."""
    before = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(on, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)


@contextlib.contextmanager
def quiet_run_log() -> Iterator[None]:
    """The runner's per-epoch log lines kept off the console (the benchmark prints its table)."""
    logger = logging.getLogger("harness")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


class TimedLoader:
    """A training loader that times each pass over it on `clock`, from the first request for a
    batch to its exhaustion (after the last step that the loop takes on its last batch)."""

    def __init__(self, loader: Loader, clock: Callable[[], float]) -> None:
        self.loader = loader
        self.clock = clock
        self.seconds = float("nan")

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    @property
    def num_samples(self) -> int:
        return self.loader.num_samples

    def __iter__(self) -> Iterator[Any]:
        start = self.clock()
        yield from self.loader
        self.seconds = self.clock() - start


class HarnessEpoch:
    """One epoch of the real `Trainer.fit` per call; returns the seconds of its epoch loop."""

    def __init__(self, mapping: dict[str, Any], runs_dir: Path, clock: Callable[[], float]) -> None:
        self.recipe = from_mapping(mapping, "bench-epoch")
        self.trainer = Trainer(self.recipe, runs_dir, RunOptions(progress=False))
        self.trainer.build()
        self.loader = TimedLoader(self.trainer.data.train, clock)
        self.stop = StopSignal()  # never signalled: the per-step check runs, finds nothing

    def __call__(self) -> float:
        # the recipe's one epoch again (same order; the model trains on), over the timed loader
        with deterministic_algorithms(self.recipe.runtime.deterministic), quiet_run_log():
            self.trainer.fit_again(self.stop, self.loader)
        return self.loader.seconds


class BareEpoch:
    """One epoch of a bare timm loop per call over `batches`; returns its wall seconds."""

    def __init__(
        self, arch: str, num_classes: int, loader: MemoryLoader, batches: Batches, clock: Callable[[], float]
    ) -> None:
        self.model, self.opt = bare_model(arch, num_classes, int(loader.images.shape[1]), loader.device)
        self.batches = batches
        self.device = loader.device
        self.clock = clock

    def __call__(self) -> float:
        with deterministic_algorithms(False):
            sync(self.device)
            start = self.clock()
            for images, targets in self.batches():
                bare_update(self.model, self.opt, images, targets)
            sync(self.device)
            return self.clock() - start


def own_batches(loader: MemoryLoader, batch_size: int, seed: int = 0) -> Batches:
    """Batches a bare loop cuts from the split's tensors itself, in a new random order each epoch."""
    generator = torch.Generator().manual_seed(seed)
    mean, std = loader.mean.view(1, -1, 1, 1), loader.std.view(1, -1, 1, 1)

    def epoch() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(loader.targets), generator=generator).to(loader.device)
        for idx in order.split(batch_size):
            yield (loader.images[idx].float() / 255.0 - mean) / std, loader.targets[idx]

    return epoch


def loader_batches(loader: MemoryLoader) -> Batches:
    """The harness loader's batches of epoch 0 (the order and views `harness` trains on)."""

    def epoch() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        loader.set_epoch(0)
        for batch in loader:
            yield batch.images, batch.targets

    return epoch


def run(cfg: EpochConfig) -> list[dict[str, Any]]:
    """Measure every case over `cfg.rounds` interleaved rounds of one epoch each; the rows."""
    torch.manual_seed(0)
    clock = CLOCKS[cfg.clock]
    with tempfile.TemporaryDirectory(prefix="harness-bench-epoch-") as tmp:
        harness = HarnessEpoch(recipe(cfg), Path(tmp), clock)
        loader, classes = harness.loader.loader, harness.trainer.data.num_classes
        assert isinstance(loader, MemoryLoader)  # the recipe asks for the memory backend
        cases: dict[str, Callable[[], float | None]] = {
            "bare": BareEpoch(cfg.arch, classes, loader, own_batches(loader, cfg.batch_size), clock),
            "bare_loader": BareEpoch(cfg.arch, classes, loader, loader_batches(loader), clock),
            "harness": harness,
            "harness_nondet": HarnessEpoch(recipe(cfg, deterministic=False), Path(tmp), clock),
        }
        timings = interleaved(
            cases, rounds=cfg.rounds, work=1, warmup=1, device=torch.device(cfg.device), clock=clock
        )
        return rows(cfg, timings, loader.num_samples)


def rows(cfg: EpochConfig, timings: dict[str, Timing], samples: int) -> list[dict[str, Any]]:
    """A row per case (time against `bare`), then `harness_speed`: harness img/s / bare img/s."""
    bare = timings["bare"].median
    detail = f"{cfg.arch} b{cfg.batch_size}, {samples} {cfg.dataset} images, no augmentation, {cfg.clock} s"
    out = [
        {
            "suite": "epoch",
            "case": name,
            "median_s": t.median,
            "img_per_s": samples / t.median,
            "ratio": t.median / bare,
            "baseline": "bare",
            "spread": t.spread,
            "rounds": len(t.rounds),
            "detail": detail,
        }
        for name, t in timings.items()
    ]
    harness = timings["harness"]
    out.append(
        {
            "suite": "epoch",
            "case": "harness_speed",
            "median_s": harness.median - bare,
            "img_per_s": float("nan"),
            "ratio": bare / harness.median,
            "baseline": "bare",
            "spread": float("nan"),
            "rounds": len(harness.rounds),
            "detail": "harness img/s / bare timm loop img/s, whole epochs (goal >= 0.97)",
        }
    )
    return out
