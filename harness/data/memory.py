"""The `memory` backend: a whole split held as a uint8 tensor on the device.

For small data sets (Fashion-MNIST, CIFAR, generated data) this is the fastest loader there is:
no decoding, no worker processes, no per-image Python. Each batch is gathered by index, turned to
float and augmented on the device in one batched call (see `harness.data.augment`).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from harness.data.augment import AugmentSpec, apply_views, epoch_generator, normalize, sample_views
from harness.data.base import Batch
from harness.data.pipeline import per_channel


class MemoryLoader:
    """Batches of one split, shuffled per epoch from (seed, epoch), augmented from (view_seed, epoch).

    With `world_size > 1` each rank takes an equal, disjoint share of each epoch's permutation
    (train) or the indices `rank::world_size` (evaluation: every sample counted exactly once).
    """

    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        *,
        batch_size: int,
        train: bool,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        augment: AugmentSpec,
        device: torch.device,
        seed: int = 0,
        view_seed: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError("MemoryLoader takes uint8 images shaped (N, C, H, W)")
        self.images = images.to(device)
        self.targets = targets.to(device)
        self.batch_size = batch_size
        self.train = train
        self.augment = augment if train else AugmentSpec()
        self.device = device
        self.seed = seed
        self.view_seed = seed if view_seed is None else view_seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        channels = images.shape[1]
        self.mean = torch.tensor(per_channel(mean, channels), device=device)
        self.std = torch.tensor(per_channel(std, channels), device=device)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_views(self, epoch: int) -> torch.Tensor:
        """(N, 4) views of every sample of the split at `epoch`, indexed by sample.

        They depend on (view_seed, epoch) alone, not on the order or the rank, so a teacher
        cache made once serves every training seed that shares the view seed.
        """
        return sample_views(self.augment, len(self.targets), epoch_generator(self.view_seed, epoch, 1))

    def _epoch_plan(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """This rank's sample indices for the epoch, and their views (train only)."""
        n = len(self.targets)
        if not self.train:
            return torch.arange(self.rank, n, self.world_size), None
        order = torch.randperm(n, generator=epoch_generator(self.seed, self.epoch))
        # interleaved like DistributedSampler: step k of all ranks together covers the same
        # samples as step k of one process with world_size x the batch
        mine = order[: (n // self.world_size) * self.world_size][self.rank :: self.world_size]
        return mine, self.epoch_views(self.epoch)[mine]

    @property
    def num_samples(self) -> int:
        n = len(self.targets)
        if self.train:
            return n // self.world_size
        return len(range(self.rank, n, self.world_size))

    def __len__(self) -> int:
        full, rest = divmod(self.num_samples, self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def __iter__(self) -> Iterator[Batch]:
        indices, views = self._epoch_plan()
        indices = indices.to(self.device)  # one copy per epoch, none per step
        views = None if views is None else views.to(self.device)
        for b in range(len(self)):
            sl = slice(b * self.batch_size, (b + 1) * self.batch_size)
            yield self.make_batch(indices[sl], None if views is None else views[sl])

    def make_batch(self, idx: torch.Tensor, views: torch.Tensor | None) -> Batch:
        """The batch of samples `idx` (on the device) seen through `views`."""
        x = self.images[idx].float().div_(255.0)
        if views is not None and self.augment.active:
            x = apply_views(x, views, self.augment)
        x = normalize(x, self.mean, self.std)
        return Batch(images=x, targets=self.targets[idx], indices=idx, views=views)
