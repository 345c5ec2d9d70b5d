"""NKD against the reference code's formula.

Reference: yzd-v/cls_KD, mmcls/models/dis_losses/nkd.py (`NKDLoss.forward`); the student's own
CE is kept beside it as in mmcls/models/classifiers/distiller.py.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from harness import strategies
from tests.support.golden import fixed_inputs, strategy_value_and_grad, value_and_grad


def reference_nkd(logit_s, logit_t, gt_label, temp, gamma):
    label = gt_label.view(len(gt_label), 1)
    n = logit_s.shape[0]
    s_i = F.log_softmax(logit_s, dim=1)
    t_i = F.softmax(logit_t, dim=1)
    s_t = torch.gather(s_i, 1, label)
    t_t = torch.gather(t_i, 1, label).detach()
    loss_t = -(t_t * s_t).mean()
    mask = torch.ones_like(logit_s).scatter_(1, label, 0).bool()
    logit_s = logit_s[mask].reshape(n, -1)
    logit_t = logit_t[mask].reshape(n, -1)
    S_i = F.log_softmax(logit_s / temp, dim=1)
    T_i = F.softmax(logit_t / temp, dim=1)
    loss_non = -gamma * temp**2 * (T_i * S_i).sum(dim=1).mean()
    return loss_t + loss_non


@pytest.mark.parametrize(("temp", "gamma"), [(3.0, 3.5), (1.0, 1.5)])
def test_nkd_loss_and_gradient_match_the_reference(temp, gamma):
    z, t, y = fixed_inputs()

    def reference(leaf):
        return F.cross_entropy(leaf, y) + reference_nkd(leaf, t, y, temp, gamma)

    expected, expected_grad = value_and_grad(reference, z)
    nkd = strategies.build("nkd", temperature=temp, gamma=gamma)
    value, grad, parts = strategy_value_and_grad(nkd, z, y, t)
    assert value == pytest.approx(expected, rel=1e-5)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-4, atol=1e-6)
    assert set(parts) == {"loss", "ce", "target", "non_target"}
