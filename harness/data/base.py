"""What every loader yields, and the facts the runner needs about the data.

`Loader` is what every backend gives (the loop and the evaluation read nothing else);
`Replayable` is the part a teacher cache needs on top of it (the memory and ffcv backends: views
replayed from `(view_seed, epoch)`), with its optional parts `OrderedPass`, `BatchMaker` (one of
the two builds a cache epoch) and `Identified` (more of the data's identity for the cache).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch


@dataclass
class Batch:
    """One batch on the training device.

    `images` are normalised floats (N, C, H, W); `indices` are the samples' positions in their
    split; `views` (N, 4) the augmentation parameters of each sample's view (None where the
    loader cannot report them), so a teacher cache can replay the exact view.
    """

    images: torch.Tensor
    targets: torch.Tensor
    indices: torch.Tensor | None = None
    views: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.targets.shape[0])


class Loader(Protocol):
    """A re-iterable loader over one split, sharded for this rank."""

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order and views the next iteration yields."""

    def __iter__(self) -> Iterator[Batch]: ...

    def __len__(self) -> int:
        """Batches per epoch on this rank."""

    @property
    def num_samples(self) -> int:
        """Samples this rank sees per epoch."""

    # Optional: `close()`, called by `DataBundle.close` where a loader has one.


@runtime_checkable
class Replayable(Protocol):
    """A loader whose every epoch's views replay from `(view_seed, epoch)` (memory, ffcv): what a
    teacher cache records and checks. It has `ordered_batches` (`OrderedPass`) or `make_batch`
    (`BatchMaker`) to go through an epoch in position order, and may be `Identified`."""

    view_seed: int

    def epoch_views(self, epoch: int) -> torch.Tensor:
        """(samples, view parameters) of `epoch`, in position order over the whole split."""
        ...


@runtime_checkable
class OrderedPass(Protocol):
    """Optional part of a `Replayable` loader that decodes the views itself (ffcv)."""

    def ordered_batches(self, epoch: int, batch_size: int, rank: int, world_size: int) -> Iterator[Batch]:
        """This rank's batches (r, r + w, ...) of the split in position order, at `epoch`'s views."""
        ...


@runtime_checkable
class BatchMaker(Protocol):
    """Optional part of a `Replayable` loader that makes any batch from positions and views (memory)."""

    device: torch.device

    def make_batch(self, idx: torch.Tensor, views: torch.Tensor | None) -> Batch:
        """The batch of the samples at positions `idx` under `views` (None: no augmentation)."""
        ...


@runtime_checkable
class Identified(Protocol):
    """Optional part of a loader: facts of its data beyond the recipe's (e.g. the ffcv files' hashes)."""

    def identity(self) -> dict[str, Any]:
        """What a teacher cache of this loader's views must have been made from."""
        ...


@dataclass
class DataBundle:
    """Train and validation loaders plus the shape facts a model needs."""

    train: Loader
    val: Loader
    num_classes: int
    channels: int
    image_size: int
    train_size: int  # samples in the whole train split (all ranks)
    val_size: int
    describe: str  # one line for logs
    eval_split: str = "val"  # which split the loaders' `val` is ("test" where no val split exists)
    holdout: Loader | None = None  # the held-out share of the training split (`data.holdout`)
    holdout_size: int = 0
    holdout_digest: str | None = None  # `harness.data.holdout.positions_digest` of its positions

    def close(self) -> None:
        for loader in (self.train, self.val, self.holdout):
            close = getattr(loader, "close", None)
            if callable(close):
                close()
