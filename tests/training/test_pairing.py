"""Runs of different strategies with the same seed are paired: the harness guarantees identical
initial student weights, data order and augmented views whatever the strategy, also when the
strategy builds modules or draws random numbers in `setup` or in its steps. The leaderboard's
paired comparisons rest on this (docs/leaderboard.md), so it is checked for every registered
strategy against plain cross-entropy.
"""

from __future__ import annotations

import hashlib

import pytest
import torch

from harness import strategies
from harness.config import load_recipe
from harness.training.loop import RunOptions, Trainer
from harness.training.tracking import LossTracker
from tests.support.recipes import SMALL, tiny_recipe, write_recipe

pytestmark = pytest.mark.fashion

STEPS = 3  # training steps taken before the data is read again (a step may draw random numbers)


def fingerprint(name: str, tmp_path, teacher_weights) -> dict[str, object]:
    """What a paired comparison needs equal: the student's initial weights, and each batch's
    sample indices and pixels over two epochs, read after the strategy has trained a few steps."""
    cls = strategies.get(name)
    recipe = tiny_recipe(
        data={**SMALL, "holdout": {"size": 40}}, strategy={"name": name, "params": dict(cls.example)}
    )
    if cls.needs_teacher:
        recipe["teacher"] = {"arch": "test_resnet", "weights": str(teacher_weights)}
    trainer = Trainer(
        load_recipe(write_recipe(tmp_path / f"{name}.yaml", recipe)), tmp_path / "runs", RunOptions()
    )
    try:
        trainer.build()
        weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        steps = trainer.training_steps(LossTracker(trainer.device))
        for _ in range(STEPS):
            next(steps)
        batches = []
        for epoch in (0, 1):
            for _, batch in trainer.epoch_batches(epoch):
                pixels = hashlib.sha256(batch.images.contiguous().numpy().tobytes()).hexdigest()
                batches.append((batch.indices.tolist(), batch.targets.tolist(), pixels))
        held_out = [b.indices.tolist() for _, b in trainer.epoch_batches(0, loader=trainer.data.holdout)]
    finally:
        trainer.close()
    return {"weights": weights, "batches": batches, "held_out": held_out}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, teacher_weights):
    return fingerprint("ce", tmp_path_factory.mktemp("ce"), teacher_weights)


@pytest.mark.parametrize("name", [n for n in strategies.available() if n != "ce"])
def test_same_seed_same_start_order_and_views(name, baseline, tmp_path, teacher_weights):
    got = fingerprint(name, tmp_path, teacher_weights)
    assert got["weights"].keys() == baseline["weights"].keys()
    for key, value in baseline["weights"].items():
        assert torch.equal(got["weights"][key], value), (
            f"{name}: initial student weight {key} differs from ce's"
        )
    assert got["batches"] == baseline["batches"], f"{name}: data order or augmented views differ from ce's"
    assert got["held_out"] == baseline["held_out"]
