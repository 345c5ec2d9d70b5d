"""What every loader yields, and the facts the runner needs about the data."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

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

    def close(self) -> None:
        for loader in (self.train, self.val):
            close = getattr(loader, "close", None)
            if callable(close):
                close()
