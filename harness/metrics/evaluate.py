"""The evaluation pass: every metric of a network over one split, summed exactly across ranks.

`evaluate` is what a run measures after each evaluated epoch, what a teacher is measured by
(its `teacher_*` columns) and what `harness eval` applies to saved weights
(`harness.training.evaluation`). Alone or under `torchrun` (the split sharded, the sums
all-reduced), so a multi-rank evaluation equals a single-process one.

May import: `harness.runtime`, the metric accumulator of `harness.metrics`. Never `harness.store`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch

from harness.metrics.accumulator import MetricAccumulator
from harness.runtime import distributed
from harness.runtime.runtime import Runtime

if TYPE_CHECKING:
    from harness.data.base import Loader


@torch.no_grad()
def evaluate(
    model: Callable[[torch.Tensor], torch.Tensor],
    loader: Loader,
    num_classes: int,
    n_bins: int,
    runtime: Runtime,
    *,
    reference: Sequence[torch.Tensor] | None = None,
    keep: list[torch.Tensor] | None = None,
) -> dict[str, float]:
    """Every metric of `harness.metrics` over the whole split (summed exactly across ranks), the
    images in the runtime's memory format and autocast.

    `reference`: a teacher's logits for this loader's batches, in order (what `keep` collected
    when the teacher went through the same loader): the fidelity measures compare with them.
    `keep`: a list each batch's float32 logits are appended to. A split's evaluation order is
    fixed (no shuffle, the same shard per rank), so the two passes see the same images.

    A module is evaluated in eval mode (BatchNorm running statistics, no dropout) and given back
    in the mode it came in.
    """
    was_training = isinstance(model, torch.nn.Module) and model.training
    if was_training:
        model.eval()
    try:
        acc = MetricAccumulator(num_classes, n_bins, runtime.device)
        loader.set_epoch(0)
        batches = 0
        for batch in loader:
            x = runtime.prepare(batch.images)
            with runtime.autocast():
                logits = model(x).float()
            ref = None
            if reference is not None:
                if batches >= len(reference):
                    raise ValueError(f"teacher reference logits end after {len(reference)} batches")
                ref = reference[batches]
            acc.update(logits, batch.targets, ref)
            if keep is not None:
                keep.append(logits)
            batches += 1
        if reference is not None and batches != len(reference):
            raise ValueError(f"teacher reference logits hold {len(reference)} batches, the split {batches}")
    finally:
        if was_training:
            model.train()
    distributed.all_reduce_sum(acc.tensors())
    return acc.compute()
