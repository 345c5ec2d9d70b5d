"""The evaluation pass: every metric of a network over one split, summed exactly across ranks.

`evaluate` is what a run measures after each evaluated epoch, what a teacher is measured by
(its `teacher_*` columns) and what `harness eval` applies to saved weights
(`harness.training.evaluation`). Alone or under `torchrun` (the split sharded, the sums
all-reduced), so a multi-rank evaluation equals a single-process one.

May import: `harness.runtime`, the metric accumulator of `harness.metrics`. Never `harness.store`.
"""

from __future__ import annotations

from collections.abc import Callable
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
) -> dict[str, float]:
    """Every metric of `harness.metrics` over the whole split (summed exactly across ranks), the
    images in the runtime's memory format and autocast.

    A module is evaluated in eval mode (BatchNorm running statistics, no dropout) and given back
    in the mode it came in.
    """
    was_training = isinstance(model, torch.nn.Module) and model.training
    if was_training:
        model.eval()
    try:
        acc = MetricAccumulator(num_classes, n_bins, runtime.device)
        loader.set_epoch(0)
        for batch in loader:
            x = runtime.prepare(batch.images)
            with runtime.autocast():
                logits = model(x)
            acc.update(logits.float(), batch.targets)
    finally:
        if was_training:
            model.train()
    distributed.all_reduce_sum(acc.tensors())
    return acc.compute()
