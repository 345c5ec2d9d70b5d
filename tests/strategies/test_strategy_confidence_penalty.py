"""The confidence penalty against its formula computed by hand with `math` (Pereyra et al. 2017,
Eq. 2; no official code)."""

from __future__ import annotations

import math

import pytest
import torch

from harness import strategies

Z = [[2.0, 0.5, -1.0, 0.0], [0.1, 0.2, 3.0, -0.5], [-1.0, 1.5, 0.3, 0.7]]
Y = [0, 2, 3]


def softmax(row):
    e = [math.exp(v) for v in row]
    return [v / sum(e) for v in e]


def entropies():
    return [-sum(p * math.log(p) for p in softmax(r)) for r in Z]


def ce():
    return sum(-math.log(softmax(r)[y]) for r, y in zip(Z, Y, strict=True)) / len(Y)


@pytest.mark.parametrize("beta", [0.0, 0.1, 1.0])
def test_confidence_penalty_golden(beta):
    out = strategies.build("confidence_penalty", beta=beta)(torch.tensor(Z), torch.tensor(Y))
    h = entropies()
    assert out["loss"].item() == pytest.approx(ce() - beta * sum(h) / len(h), rel=1e-6)
    assert out["entropy"].item() == pytest.approx(sum(h) / len(h), rel=1e-6)


def test_hinge_form_penalises_only_entropies_below_the_threshold():
    h = entropies()
    threshold = sorted(h)[1]  # between the smallest and the largest entropy
    out = strategies.build("confidence_penalty", beta=0.5, threshold=threshold)(
        torch.tensor(Z), torch.tensor(Y)
    )
    expected = ce() + 0.5 * sum(max(0.0, threshold - e) for e in h) / len(h)
    assert out["loss"].item() == pytest.approx(expected, rel=1e-6)


def entropy_after_step(name: str, **params: float) -> float:
    """Mean entropy of softmax(z - 0.1 * grad) after one gradient step on the logits."""
    z = torch.tensor(Z).requires_grad_()
    strategies.build(name, **params)(z, torch.tensor(Y))["loss"].backward()
    p = torch.softmax(torch.tensor(Z) - 0.1 * z.grad, 1)
    return float(-(p * p.log()).sum(1).mean())


def test_a_gradient_step_leaves_more_entropy_than_with_ce():
    assert entropy_after_step("confidence_penalty", beta=1.0) > entropy_after_step("ce")
