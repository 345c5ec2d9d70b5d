"""The recipe's optimizer and learning-rate schedule, from timm's factories.

`build_optimizer` maps the recipe's `optim` section onto `timm.optim.create_optimizer_v2`
(`sgd` becomes timm's `momentum` or `nesterov`); `build_scheduler` maps `schedule` onto
`timm.scheduler.create_scheduler_v2`, stepped per update (None for a constant rate).
"""

from __future__ import annotations

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2

from harness.config.recipe import Recipe


def build_optimizer(recipe: Recipe, model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    """timm optimizer; `sgd` maps to timm's `momentum` (plain) or `nesterov`."""
    cfg = recipe.optim
    name = cfg.name
    if name == "sgd":
        name = "nesterov" if cfg.nesterov else "momentum"
    kwargs = dict(cfg.kwargs)
    if name in ("momentum", "nesterov"):
        kwargs["momentum"] = cfg.momentum
    return create_optimizer_v2(
        model,
        opt=name,
        lr=lr,
        weight_decay=cfg.weight_decay,
        filter_bias_and_bn=not cfg.decay_bias_and_norm,
        **kwargs,
    )


def build_scheduler(recipe: Recipe, optimizer: torch.optim.Optimizer, updates_per_epoch: int):
    """timm scheduler stepped per update (None for a constant learning rate)."""
    s = recipe.schedule
    if s.name == "constant" and s.warmup_epochs == 0:
        return None
    scheduler, _ = create_scheduler_v2(
        optimizer,
        sched="step" if s.name == "constant" else s.name,
        num_epochs=s.epochs,
        decay_epochs=s.decay_epochs if s.name != "constant" else s.epochs + 1,
        decay_milestones=s.milestones,
        decay_rate=s.decay_rate if s.name != "constant" else 1.0,
        min_lr=s.min_lr,
        warmup_lr=s.warmup_lr,
        warmup_epochs=s.warmup_epochs,
        step_on_epochs=False,
        updates_per_epoch=updates_per_epoch,
    )
    return scheduler
