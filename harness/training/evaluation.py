"""`harness eval`: `evaluate_run` measures a run's saved weights on its recipe's evaluation split.

The pass itself is `harness.metrics.evaluate.evaluate`, the one a run makes after each evaluated
epoch; here it runs with the run's own runtime (`harness.runtime.runtime.Runtime`: device,
kernels, autocast, memory format), alone or under `torchrun` (the split sharded and the sums
all-reduced), which is how a multi-rank evaluation is checked against a single-process one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.config import from_mapping, read_yaml
from harness.data import build_data
from harness.errors import RunStateError
from harness.metrics.evaluate import evaluate
from harness.models.build import build_model
from harness.runtime.runtime import Runtime
from harness.store import checkpoint
from harness.store.rundir import RunDir


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
    """Metrics of the run's `which` weights on its evaluation split (rank 0 gets the totals), and
    under `holdout` those on its held-out split where the recipe holds one out."""
    run_dir = Path(run_dir)
    if not (run_dir / "recipe.yaml").exists():
        raise RunStateError(f"{run_dir}: not a run folder (no recipe.yaml)")
    recipe = from_mapping(read_yaml(run_dir / "recipe.yaml"), run_dir.name, str(run_dir / "recipe.yaml"))
    run = RunDir(run_dir.parent, run_dir.name)
    path = weights_path(run, which)
    state = checkpoint.load(path)
    # the same device, kernels, autocast and memory format as the run's own evaluation
    runtime = Runtime.start(recipe.runtime, recipe.seed, device)
    world = runtime.world
    data = build_data(
        recipe.data, device=runtime.device, seed=recipe.seed, rank=world.rank, world_size=world.world_size
    )
    model = build_model(recipe.model.arch, data.num_classes, data.channels, recipe.model.kwargs)
    model.load_state_dict(state["model"])
    model.to(runtime.device)
    try:
        metrics = evaluate(model, data.val, data.num_classes, recipe.eval.ece_bins, runtime)
        if data.holdout is not None:
            held_out = evaluate(model, data.holdout, data.num_classes, recipe.eval.ece_bins, runtime)
            metrics["holdout"] = {"hash": data.holdout_digest, **held_out}
    finally:
        data.close()
    return {"run_id": recipe.run_id, "checkpoint": str(path), "world_size": world.world_size, **metrics}
