"""TTM and WTTM against the reference code's formulas.

Reference: zkxufo/TTM, distiller_zoo/ttm.py and distiller_zoo/wttm.py (the power transform,
`norm`, `F.kl_div(..., reduction='none')`), weights `-r` (CE) and `-b` as in helper/loops.py.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from harness import strategies
from tests.support.golden import fixed_inputs, strategy_value_and_grad, value_and_grad


def reference_ttm(y_s, y_t, power, weighted):
    p_s = F.log_softmax(y_s, dim=1)
    p_t = torch.pow(torch.softmax(y_t, dim=1), power)
    norm = torch.sum(p_t, dim=1)
    p_t = p_t / norm.unsqueeze(1)
    kl = torch.sum(F.kl_div(p_s, p_t, reduction="none"), dim=1)
    return torch.mean(norm * kl) if weighted else torch.mean(kl)


@pytest.mark.parametrize("name", ["ttm", "wttm"])
@pytest.mark.parametrize(("power", "beta"), [(0.1, 45.0), (0.5, 2.0), (1.0, 1.0)])
def test_ttm_loss_and_gradient_match_the_reference(name, power, beta):
    z, t, y = fixed_inputs()

    def reference(leaf):
        return F.cross_entropy(leaf, y) + beta * reference_ttm(leaf, t, power, name == "wttm")

    expected, expected_grad = value_and_grad(reference, z)
    value, grad, _ = strategy_value_and_grad(strategies.build(name, exponent=power, beta=beta), z, y, t)
    assert value == pytest.approx(expected, rel=1e-5)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-4, atol=1e-6)


def test_ttm_is_kd_with_the_temperature_on_the_teacher_only():
    # t^l / sum t^l = softmax(z_t / T) with l = 1/T: TTM's target is KD's, the student stays at T = 1
    z, t, y = fixed_inputs()
    ttm = strategies.build("ttm", exponent=0.25, beta=1.0, ce_weight=0.0)(z.float(), y, t.float())
    kl = F.kl_div(F.log_softmax(z, 1), F.softmax(t / 4.0, 1), reduction="batchmean")
    assert ttm["loss"].item() == pytest.approx(float(kl), rel=1e-5)
