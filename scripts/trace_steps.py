"""Trace the first epoch of a recipe step by step: the loss parts, the gradient norm, the scale of
the student's logits and how many units of its last stage are still alive.

A diagnosis for a run that ends at chance or far below its peers: it shows whether the student's
penultimate features die (every unit of the pooled last stage zero on the whole batch, so the
classifier sees only its bias) and at which step. It trains exactly as `harness run` does (the
runner's `Trainer`, teacher runs taken from --runs-dir or trained there first) and writes nothing
but the teacher runs it may need.

    .venv/bin/python scripts/trace_steps.py recipes/fashion_mnist/resnet10t_ttm.yaml \
        --runs-dir runs --every 5 --steps 30 --set strategy.params.beta=4.5

Columns: the step's loss parts (the strategy's, as in `train_parts`), `grad` the L2 norm of the
student's gradient, `logit_std` the mean over samples of the standard deviation of the logits
(after the step), `alive` the fraction of penultimate units non-zero on some sample of the batch,
`spread` the mean over units of their standard deviation across the batch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from harness.config import load_recipe
from harness.training.lifecycle import teacher_run_trainer
from harness.training.loop import RunOptions, Trainer
from harness.training.tracking import LossTracker


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where teacher runs are")
    parser.add_argument("--every", type=int, default=5, help="print every N steps (and the first 3)")
    parser.add_argument("--steps", type=int, default=0, help="stop after N steps (0: one epoch)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="KEY=VALUE")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    recipe = load_recipe(args.recipe, args.overrides)
    options = RunOptions(progress=False)
    train_teacher = teacher_run_trainer(args.runs_dir, options)
    trainer = Trainer(recipe, args.runs_dir, options, train_teacher=train_teacher)
    trainer.build()
    head = trainer.model.get_classifier()
    pooled: dict[str, torch.Tensor] = {}
    head.register_forward_hook(lambda module, inputs, output: pooled.__setitem__("x", inputs[0].detach()))
    trainer.train_model.train()
    trainer.train_strategy.train()
    steps = len(trainer.data.train)
    last = min(steps, args.steps) if args.steps else steps
    for i, batch in trainer.batches(0):
        if i >= last:
            break
        tracker = LossTracker(trainer.device)
        trainer.train_step(batch, tracker, i, steps)
        if i < 3 or i % args.every == 0 or i == last - 1:
            print(f"step {i:4d}  " + trace(trainer, tracker, head, pooled["x"]), flush=True)


def trace(trainer: Trainer, tracker: LossTracker, head: torch.nn.Module, x: torch.Tensor) -> str:
    """One line: the step's loss parts, gradient norm, logit scale and live units."""
    parts = " ".join(f"{k} {v:.3f}" for k, v in tracker.means().items())
    grads = [p.grad.norm() for p in trainer.model.parameters() if p.grad is not None]
    with torch.no_grad():
        logits = head(x)
    alive = (x.abs().sum(dim=0) > 0).float().mean()
    return (
        f"{parts}  grad {torch.stack(grads).norm():.1f}  logit_std {logits.std(dim=1).mean():.3f}  "
        f"alive {alive:.2f}  spread {x.std(dim=0).mean():.4f}"
    )


if __name__ == "__main__":
    main()
