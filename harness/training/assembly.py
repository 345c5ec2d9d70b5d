"""Assembling the parts a run trains: the student, the student as the loop calls it, the strategy.

Each takes the run's `Runtime` (device, memory format, DDP world). `student_model` builds the
timm student on the device (channels-last and SyncBatchNorm where asked); `training_forward` is
the student as a training step calls it (the strategy's declared stage features from the same
forward, DDP, `torch.compile`); `setup_strategy` gives the strategy
its shapes, lets it build its modules and wraps its trainable part; `ddp_wrap` averages a
module's gradients across ranks under DDP. The runner calls them in a fixed order, which fixes
every random draw of a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from harness import strategies
from harness.config.recipe import Recipe, recipe_dir
from harness.data import DataBundle
from harness.models.build import build_student
from harness.models.features import WithFeatures, feature_shapes, resolve_stages
from harness.runtime import distributed
from harness.runtime.runtime import Runtime
from harness.strategies.registry import Stage
from harness.teachers.teacher import Teacher


def ddp_wrap(module: torch.nn.Module, runtime: Runtime, **ddp: Any) -> torch.nn.Module:
    """`module` for training: under DDP wrapped so its gradients are averaged across ranks."""
    if not runtime.world.distributed:
        return module
    device = runtime.device
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids, **ddp)


def student_model(recipe: Recipe, data: DataBundle, runtime: Runtime) -> tuple[torch.nn.Module, dict | None]:
    """(the recipe's timm student on the runtime's device, where its pretrained weights came from)."""
    model, origin = build_student(recipe, data.num_classes, data.channels, recipe_dir(recipe))
    runtime.place(model)
    if runtime.world.distributed and recipe.model.sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model, origin


def training_forward(
    model: torch.nn.Module, stages: Sequence[Stage], recipe: Recipe, runtime: Runtime
) -> torch.nn.Module:
    """The student as a training step calls it: the declared `stages` come from its one forward
    pass (timm's forward_intermediates), and DDP and compile wrap that forward."""
    net: torch.nn.Module = model
    if stages:
        resolve_stages(model, stages, recipe.model.arch, "strategy.params", "student")
        net = WithFeatures(model, stages)
    train_model = ddp_wrap(net, runtime)
    if recipe.runtime.compile:
        train_model = torch.compile(train_model)
    return train_model


def setup_strategy(
    strategy: strategies.Strategy,
    recipe: Recipe,
    data: DataBundle,
    model: torch.nn.Module,
    teacher: Teacher | None,
    runtime: Runtime,
) -> torch.nn.Module:
    """Give the strategy its shapes (one eval-mode pass where it wants features), let it build
    its modules and state, move them to the device; returns it as trained (its trainable part
    wrapped for DDP)."""
    features = strategy.features
    sample = torch.zeros(2, data.channels, data.image_size, data.image_size, device=runtime.device)
    teacher_shapes = {}
    if features.teacher:
        assert teacher is not None
        resolve_stages(teacher.model, features.teacher, teacher.arch, "strategy.params", "teacher")
        teacher_shapes = feature_shapes(teacher.model, features.teacher, sample)
    info = strategies.SetupInfo(
        num_classes=data.num_classes,
        train_size=data.train_size,
        epochs=recipe.schedule.epochs,
        steps_per_epoch=len(data.train),
        student_shapes=feature_shapes(model, features.student, sample),
        teacher_shapes=teacher_shapes,
        rank=runtime.world.rank,
        world_size=runtime.world.world_size,
        reduce=distributed.all_reduce_sum,
    )
    strategy.setup(info)
    strategy.to(runtime.device)
    trainable = any(p.requires_grad for p in strategy.parameters())
    # broadcast_buffers off: a strategy's buffers are its own state, reduced where it says
    return ddp_wrap(strategy, runtime, broadcast_buffers=False) if trainable else strategy
