"""The training loss of an epoch, summed on the device (`LossTracker`), and its progress bar.

Each step adds its loss parts (weighted by the batch's samples) without a host sync; the means
over all ranks are taken once, at the epoch's end. The tracker also remembers the first step
whose loss was not finite (a diverged run), and is saved in mid-epoch checkpoints so that a
resumed epoch reports the same means as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tqdm import tqdm

from harness.runtime import distributed


class LossTracker:
    """Sums of the loss parts over an epoch, kept on the device (no sync per step).

    It also remembers the first step whose loss was not finite, without synchronising.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0
        self.samples = 0  # samples of all ranks, as of the last means()
        self.bad_step = torch.full((), -1, dtype=torch.int64, device=device)

    def add(self, parts: dict[str, torch.Tensor], n: int, step: int) -> None:
        finite = torch.isfinite(parts["loss"].detach())
        self.bad_step = torch.where((self.bad_step < 0) & ~finite, step, self.bad_step)
        for name, value in parts.items():
            v = value.detach().double() * n
            self.sums[name] = self.sums[name] + v if name in self.sums else v
        self.count += n

    def merge(self, all_reduce_sum: Callable[[list[torch.Tensor]], None], keep: bool) -> None:
        """Sum the partial epoch over all ranks into this rank if `keep` (rank 0, which saves the
        checkpoint), else empty it: the epoch's means stay exact, and a resume that hands the
        saved sums to rank 0 alone counts every rank's samples once."""
        names = sorted(self.sums)
        packed = torch.stack(
            [self.sums[k] for k in names]
            + [torch.tensor(float(self.count), dtype=torch.float64, device=self.device)]
        )
        all_reduce_sum([packed])
        if not keep:
            packed.zero_()
        self.sums = dict(zip(names, packed[:-1].unbind(), strict=True))
        self.count = int(packed[-1])

    def first_bad_step(self) -> int | None:
        step = int(self.bad_step.item())
        return None if step < 0 else step

    def state(self) -> dict[str, Any]:
        return {
            "sums": {k: v.cpu() for k, v in self.sums.items()},
            "count": self.count,
            "bad_step": self.bad_step.cpu(),
        }

    def load(self, state: dict[str, Any]) -> None:
        self.sums = {k: v.to(self.device) for k, v in state["sums"].items()}
        self.count = int(state["count"])
        self.bad_step = state["bad_step"].to(self.device)

    def means(self) -> dict[str, float]:
        """Mean of each part over the samples of all ranks."""
        names = sorted(self.sums)
        if not names:
            return {}
        packed = torch.stack(
            [self.sums[k] for k in names]
            + [torch.tensor(float(self.count), dtype=torch.float64, device=self.device)]
        )
        distributed.all_reduce_sum([packed])
        total = float(packed[-1])
        self.samples = int(total)  # of all ranks
        return {k: float(v) / max(total, 1.0) for k, v in zip(names, packed[:-1].tolist(), strict=True)}


def progress_bar(start: int, steps: int, desc: str, is_main: bool, progress: bool | None) -> tqdm:
    """An epoch's progress bar at step `start` of `steps`, on rank 0 only; `progress` None shows
    it on a terminal only (tqdm's disable=None), False never, True always."""
    disable = True if not is_main or progress is False else (None if progress is None else False)
    return tqdm(total=steps, initial=start, desc=desc, disable=disable, leave=False, dynamic_ncols=True)
