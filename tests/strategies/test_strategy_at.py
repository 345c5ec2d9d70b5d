"""Attention transfer against mdistiller's code.

Reference: megvii-research/mdistiller, mdistiller/distillers/AT.py (`single_stage_at_loss`,
`at_loss`; CE weight 1, feat weight 1000, p 2, the larger map average-pooled to the smaller),
re-implemented below in float64.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from harness import strategies


def reference_at(g_s, g_t, p):
    def _at(feat):
        return F.normalize(feat.pow(p).mean(1).reshape(feat.size(0), -1))

    total = 0
    for f_s, f_t in zip(g_s, g_t, strict=True):
        s_h, t_h = f_s.shape[2], f_t.shape[2]
        if s_h > t_h:
            f_s = F.adaptive_avg_pool2d(f_s, (t_h, t_h))
        elif s_h < t_h:
            f_t = F.adaptive_avg_pool2d(f_t, (s_h, s_h))
        total = total + (_at(f_s) - _at(f_t)).pow(2).mean()
    return total


@pytest.mark.parametrize("p", [2.0, 3.0])
def test_loss_and_gradients_match_mdistiller(p):
    g = torch.Generator().manual_seed(5)
    z = torch.randn(4, 6, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 6, (4,), generator=g)
    sides_s, sides_t = (8, 4, 2), (8, 8, 1)  # equal, the teacher pooled, the student pooled
    f_s = [torch.randn(4, 3 + i, h, h, generator=g, dtype=torch.float64) for i, h in enumerate(sides_s)]
    f_t = [torch.relu(torch.randn(4, 5, h, h, generator=g, dtype=torch.float64)) for h in sides_t]

    leaves = [f.clone().requires_grad_() for f in f_s]
    z_ref = z.clone().requires_grad_()
    expected = F.cross_entropy(z_ref, y) + 1000.0 * reference_at(leaves, f_t, p)
    expected.backward()

    at = strategies.build("at", stages=[1, 2, 3], p=p)
    ours = [f.float().requires_grad_() for f in f_s]
    z_ours = z.float().requires_grad_()
    out = at(
        strategies.StepInputs(
            student_logits=z_ours,
            targets=y,
            teacher_logits=torch.zeros(4, 6),
            student_features=dict(zip((1, 2, 3), ours, strict=True)),
            teacher_features={s: f.float() for s, f in zip((1, 2, 3), f_t, strict=True)},
        )
    )
    out["loss"].backward()
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert out["at"].item() == pytest.approx(reference_at(f_s, f_t, p).item(), rel=1e-5)
    torch.testing.assert_close(z_ours.grad.double(), z_ref.grad, rtol=1e-4, atol=1e-7)
    for mine, ref in zip(ours, leaves, strict=True):
        torch.testing.assert_close(mine.grad.double(), ref.grad, rtol=1e-4, atol=1e-7)


def test_default_stages_are_the_last_three():
    at = strategies.build("at")
    assert at.features.student == at.features.teacher == (-3, -2, -1)
