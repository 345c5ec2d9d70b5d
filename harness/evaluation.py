"""`harness eval`: evaluate a run's saved weights on its recipe's evaluation split.

Works alone or under `torchrun` (the split is sharded and the sums all-reduced), which is how a
multi-rank evaluation is checked against a single-process one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import checkpoint, distributed
from harness.data import build_data
from harness.errors import RunStateError
from harness.models import build_model
from harness.recipe import from_mapping, read_yaml
from harness.rundir import RunDir
from harness.runner import autocast_dtype, configure_runtime, evaluate, resolve_device, use_channels_last


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
