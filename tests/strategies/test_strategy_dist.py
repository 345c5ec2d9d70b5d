"""DIST against the reference code's formula.

Reference: hunto/image_classification_sota (the classification code of hunto/DIST_KD),
lib/models/losses/dist_kd.py (`DIST`, `pearson_correlation`, `inter_class_relation`,
`intra_class_relation`); CE weight 1 and KD weight 2 from configs/strategies/distill/dist_cifar.yaml.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from harness import strategies
from tests.support.golden import fixed_inputs, strategy_value_and_grad, value_and_grad


def reference_dist(z_s, z_t, beta, gamma, tau, eps=1e-8):
    def cosine(a, b):
        return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)

    def pearson(a, b):
        return cosine(a - a.mean(1).unsqueeze(1), b - b.mean(1).unsqueeze(1))

    y_s, y_t = (z_s / tau).softmax(dim=1), (z_t / tau).softmax(dim=1)
    inter = tau**2 * (1 - pearson(y_s, y_t).mean())
    intra = tau**2 * (1 - pearson(y_s.t(), y_t.t()).mean())
    return beta * inter + gamma * intra


@pytest.mark.parametrize(("beta", "gamma", "tau"), [(1.0, 1.0, 4.0), (1.0, 1.0, 1.0), (2.0, 0.5, 2.0)])
def test_dist_loss_and_gradient_match_the_reference(beta, gamma, tau):
    z, t, y = fixed_inputs()
    kd_weight = 2.0  # dist_cifar.yaml: kd_loss_weight 2 on DIST(beta=1, gamma=1)

    def reference(leaf):
        return F.cross_entropy(leaf, y) + kd_weight * reference_dist(leaf, t, beta, gamma, tau)

    expected, expected_grad = value_and_grad(reference, z)
    dist = strategies.build("dist", beta=kd_weight * beta, gamma=kd_weight * gamma, temperature=tau)
    value, grad, parts = strategy_value_and_grad(dist, z, y, t)
    assert value == pytest.approx(expected, rel=1e-5)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-4, atol=1e-6)
    assert 0 <= parts["inter"] <= 2 and 0 <= parts["intra"] <= 2


def test_dist_is_zero_for_a_positive_affine_copy_of_the_teacher_at_t1():
    # Pearson correlation ignores scale and shift of the probabilities: a student whose softmax
    # is exactly the teacher's has zero relation loss
    _, t, y = fixed_inputs()
    parts = strategies.build("dist", temperature=1.0)(t.float(), y, t.float())
    assert parts["inter"].item() == pytest.approx(0.0, abs=1e-6)
    assert parts["intra"].item() == pytest.approx(0.0, abs=1e-6)
