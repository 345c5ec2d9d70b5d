"""Evaluation: `evaluate` (every metric of a network over a split), and `harness eval`.

`evaluate` is what a run measures after each evaluated epoch (and on its teacher); `evaluate_run`
applies it to a run's saved weights on its recipe's evaluation split. Both work alone or under
`torchrun` (the split is sharded and the sums all-reduced), which is how a multi-rank evaluation
is checked against a single-process one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from harness.config import from_mapping, read_yaml
from harness.data import build_data
from harness.errors import RunStateError
from harness.metrics.accumulator import MetricAccumulator
from harness.models.build import build_model
from harness.runtime import distributed
from harness.runtime.device import (
    autocast,
    autocast_dtype,
    configure_runtime,
    resolve_device,
    use_channels_last,
)
from harness.store import checkpoint
from harness.store.rundir import RunDir


@torch.no_grad()
def evaluate(
    model: Callable[[torch.Tensor], torch.Tensor],
    loader: Any,
    num_classes: int,
    n_bins: int,
    amp: torch.dtype | None,
    channels_last: bool,
    device: torch.device,
) -> dict[str, float]:
    """Every metric of `harness.metrics` over the whole split (summed exactly across ranks).

    A module is evaluated in eval mode (BatchNorm running statistics, no dropout) and given back
    in the mode it came in.
    """
    was_training = isinstance(model, torch.nn.Module) and model.training
    if was_training:
        model.eval()
    try:
        acc = MetricAccumulator(num_classes, n_bins, device)
        loader.set_epoch(0)
        for batch in loader:
            x = batch.images.contiguous(memory_format=torch.channels_last) if channels_last else batch.images
            with autocast(device, amp):
                logits = model(x)
            acc.update(logits.float(), batch.targets)
    finally:
        if was_training:
            model.train()
    distributed.all_reduce_sum(acc.tensors())
    return acc.compute()


def weights_path(run: RunDir, which: str) -> Path:
    """final | last | epoch_<N> -> the checkpoint file in the run folder."""
    if which == "final":
        return run.final_weights
    if which == "last":
        return run.last_checkpoint
    if which.startswith("epoch_") and which[6:].isdigit():
        return run.epoch_checkpoint(int(which[6:]))
    raise RunStateError(f"--checkpoint: expected final, last or epoch_<N>, got {which!r}")


def evaluate_run(run_dir: Path, which: str = "final", device: str = "auto") -> dict[str, Any]:
    """Metrics of the run's `which` weights on its evaluation split (rank 0 gets the totals)."""
    run_dir = Path(run_dir)
    if not (run_dir / "recipe.yaml").exists():
        raise RunStateError(f"{run_dir}: not a run folder (no recipe.yaml)")
    recipe = from_mapping(read_yaml(run_dir / "recipe.yaml"), run_dir.name, str(run_dir / "recipe.yaml"))
    run = RunDir(run_dir.parent, run_dir.name)
    path = weights_path(run, which)
    state = checkpoint.load(path)
    world = distributed.world_from_env()
    dev = resolve_device(device)
    distributed.init(world, dev)
    configure_runtime(recipe.runtime, dev, recipe.seed)  # the same kernels as the run's evaluation
    data = build_data(recipe.data, device=dev, seed=recipe.seed, rank=world.rank, world_size=world.world_size)
    model = build_model(recipe.model.arch, data.num_classes, data.channels, recipe.model.kwargs)
    model.load_state_dict(state["model"])
    model.to(dev)
    runtime = recipe.runtime
    metrics = evaluate(
        model,
        data.val,
        data.num_classes,
        recipe.eval.ece_bins,
        autocast_dtype(runtime, dev),
        use_channels_last(runtime, dev),
        dev,
    )
    data.close()
    return {"run_id": recipe.run_id, "checkpoint": str(path), "world_size": world.world_size, **metrics}
