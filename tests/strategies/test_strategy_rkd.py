"""RKD against mdistiller's code.

Reference: megvii-research/mdistiller, mdistiller/distillers/RKD.py (`_pdist`, `rkd_loss`: distance
weight 25, angle weight 50, eps 1e-12, not squared, on the pooled features), re-implemented below
in float64 (the same as lenscloth/RKD, metric/loss.py).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from harness import strategies


def _pdist(e, squared, eps):
    e_square = e.pow(2).sum(dim=1)
    prod = e @ e.t()
    res = (e_square.unsqueeze(1) + e_square.unsqueeze(0) - 2 * prod).clamp(min=eps)
    if not squared:
        res = res.sqrt()
    res = res.clone()
    res[range(len(e)), range(len(e))] = 0
    return res


def reference_rkd(stu, tea, squared, eps, distance_weight, angle_weight):
    with torch.no_grad():
        t_d = _pdist(tea, squared, eps)
        t_d = t_d / t_d[t_d > 0].mean()
    d = _pdist(stu, squared, eps)
    d = d / d[d > 0].mean()
    loss_d = F.smooth_l1_loss(d, t_d)
    with torch.no_grad():
        td = tea.unsqueeze(0) - tea.unsqueeze(1)
        norm_td = F.normalize(td, p=2, dim=2)
        t_angle = torch.bmm(norm_td, norm_td.transpose(1, 2)).view(-1)
    sd = stu.unsqueeze(0) - stu.unsqueeze(1)
    norm_sd = F.normalize(sd, p=2, dim=2)
    s_angle = torch.bmm(norm_sd, norm_sd.transpose(1, 2)).view(-1)
    loss_a = F.smooth_l1_loss(s_angle, t_angle)
    return distance_weight * loss_d + angle_weight * loss_a


@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("scale", [1.0, 0.05])  # 0.05: distances below the smooth-L1 threshold
def test_loss_and_gradients_match_mdistiller(squared, scale):
    g = torch.Generator().manual_seed(9)
    z = torch.randn(6, 4, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 4, (6,), generator=g)
    e_s = torch.randn(6, 10, generator=g, dtype=torch.float64) * scale
    e_t = torch.relu(torch.randn(6, 12, generator=g, dtype=torch.float64))

    e_ref, z_ref = e_s.clone().requires_grad_(), z.clone().requires_grad_()
    expected = F.cross_entropy(z_ref, y) + reference_rkd(e_ref, e_t, squared, 1e-12, 25.0, 50.0)
    expected.backward()

    rkd = strategies.build("rkd", squared=squared)
    e_ours, z_ours = e_s.float().requires_grad_(), z.float().requires_grad_()
    out = rkd(
        strategies.StepInputs(
            student_logits=z_ours,
            targets=y,
            teacher_logits=torch.zeros(6, 4),
            student_features={"pre_logits": e_ours},
            teacher_features={"pre_logits": e_t.float()},
        )
    )
    out["loss"].backward()
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    torch.testing.assert_close(z_ours.grad.double(), z_ref.grad, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(e_ours.grad.double(), e_ref.grad, rtol=1e-3, atol=1e-6)
    assert rkd.features.student == rkd.features.teacher == ("pre_logits",)
