"""`evaluation.evaluate` measures a network in eval mode and gives it back in the mode it came in."""

from __future__ import annotations

import math

import torch
from torch import nn

from harness.data.augment import AugmentSpec
from harness.data.memory import MemoryLoader
from harness.metrics.evaluate import evaluate
from harness.runtime.runtime import Runtime


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(4, 3),
    )


def _loader(batch_size: int) -> MemoryLoader:
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8, generator=g)
    targets = torch.tensor([0, 1, 2, 0, 1, 2])
    return MemoryLoader(
        images,
        targets,
        batch_size=batch_size,
        train=False,
        mean=(0.5,),
        std=(0.25,),
        augment=AugmentSpec(),
        device=torch.device("cpu"),
    )


def test_evaluate_uses_running_statistics_and_restores_training_mode():
    net = _net()
    bn = net[1]
    bn.running_mean.fill_(0.3)  # statistics a training run would have left
    bn.running_var.fill_(2.0)
    net.train()
    m = evaluate(net, _loader(1), 3, 15, Runtime(torch.device("cpu")))  # batch 1: train-mode BN fails
    assert net.training and all(module.training for module in net.modules())
    assert torch.equal(bn.running_mean, torch.full((4,), 0.3))  # not updated by the evaluation
    assert torch.equal(bn.running_var, torch.full((4,), 2.0))

    # the same metrics by hand, in eval mode (dropout off, running statistics)
    net.eval()
    with torch.no_grad():
        batch = next(iter(_loader(6)))
        logits = net(batch.images)
    log_probs = logits.log_softmax(1)
    expected_nll = -log_probs.gather(1, batch.targets[:, None]).mean().item()
    expected_top1 = 100.0 * (logits.argmax(1) == batch.targets).float().mean().item()
    assert math.isclose(m["nll"], expected_nll, rel_tol=1e-5)
    assert math.isclose(m["top1"], expected_top1, rel_tol=1e-6)


def test_evaluate_leaves_an_eval_mode_network_in_eval_mode():
    net = _net().eval()
    evaluate(net, _loader(3), 3, 15, Runtime(torch.device("cpu")))
    assert not net.training
