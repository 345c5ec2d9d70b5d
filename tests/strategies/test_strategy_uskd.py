"""USKD against the reference code's formula, weak classifier included.

Reference: yzd-v/cls_KD, mmcls/models/dis_losses/uskd.py (`USKDLoss.forward`: the squared target
probability, the 0.9 / 0.1 weak target, the rank on log-probabilities, the Zipf labels) and
mmcls/models/classifiers/distiller.py (`fea_mid`: the pooled second-to-last stage; the student's
own CE beside the USKD loss).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from harness import strategies
from tests.support.golden import K, N, fixed_inputs

C = 5


def reference_uskd(fea_mid, logit_s, gt_label, fc_w, fc_b, alpha, beta, mu, probs_in_rank=False):
    label = gt_label.view(len(gt_label), 1)
    value = torch.ones_like(label)
    n, c = logit_s.shape
    s_i = F.softmax(logit_s, dim=1)
    s_t = torch.gather(s_i, 1, label)
    p_t = s_t**2
    p_t = p_t + value - p_t.mean(0, True)
    p_t = p_t.detach()
    log_s_i = F.log_softmax(logit_s, dim=1)
    log_s_t = torch.gather(log_s_i, 1, label)
    loss_t = -(p_t * log_s_t).sum(dim=1).mean()
    target = torch.zeros_like(logit_s).scatter_(1, label, 0.9) + 0.1 * torch.ones_like(logit_s) / c
    w_fc = fea_mid @ fc_w.t() + fc_b
    w_i = F.log_softmax(w_fc, dim=1)
    loss_weak = -(mu * target * w_i).sum(dim=1).mean()
    w_i = F.softmax(w_fc, dim=1)
    w_t = torch.gather(w_i, 1, label)
    r_i, r_t = (s_i, s_t) if probs_in_rank else (log_s_i, log_s_t)  # the code ranks with log-probs
    rank = w_i / (1 - w_t.sum(1, True) + 1e-6) + r_i / (1 - r_t.sum(1, True) + 1e-6)
    _, rank = torch.sort(rank, descending=True, dim=-1)
    zipf = 1 / torch.arange(1, c + 1, dtype=logit_s.dtype)
    z_i = torch.gather(zipf.repeat(n, 1), dim=1, index=torch.argsort(rank))
    mask = torch.ones_like(logit_s).scatter_(1, label, 0).bool()
    ns_i = F.log_softmax(logit_s[mask].reshape(n, -1), dim=1)
    nz_i = z_i[mask].reshape(n, -1)
    nz_i = (nz_i / nz_i.sum(dim=1, keepdim=True)).detach()
    loss_non = -(nz_i * ns_i).sum(dim=1).mean()
    return alpha * loss_t + beta * loss_non + loss_weak


@pytest.mark.parametrize("rank_scores", ["code", "paper"])
@pytest.mark.parametrize(("alpha", "beta", "mu"), [(0.1, 0.1, 0.1), (1.0, 0.1, 0.005)])
def test_uskd_loss_and_gradients_match_the_reference(alpha, beta, mu, rank_scores):
    z, _, y = fixed_inputs()
    feats = torch.randn(N, C, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    uskd = strategies.build("uskd", alpha=alpha, beta=beta, mu=mu, rank_scores=rank_scores)
    assert uskd.features.student == (-2,) and not uskd.needs_teacher
    uskd.setup(strategies.SetupInfo(num_classes=K, student_shapes={-2: (C,)}))
    w, b = uskd.weak_head.weight.detach().double(), uskd.weak_head.bias.detach().double()

    z_ref, f_ref, w_ref = (v.clone().requires_grad_() for v in (z, feats, w))
    expected = F.cross_entropy(z_ref, y) + reference_uskd(
        f_ref, z_ref, y, w_ref, b, alpha, beta, mu, probs_in_rank=rank_scores == "paper"
    )
    expected.backward()

    z32, f32 = z.float().requires_grad_(), feats.float().requires_grad_()
    out = uskd(z32, y, None, student_features={-2: f32})
    out["loss"].backward()
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    torch.testing.assert_close(z32.grad.double(), z_ref.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(f32.grad.double(), f_ref.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(uskd.weak_head.weight.grad.double(), w_ref.grad, rtol=1e-4, atol=1e-6)


def test_uskd_pools_cnn_stage_features():
    z, _, y = fixed_inputs()
    maps = torch.randn(N, C, 4, 4, generator=torch.Generator().manual_seed(4))
    uskd = strategies.build("uskd")
    uskd.setup(strategies.SetupInfo(num_classes=K, student_shapes={-2: (C, 4, 4)}))
    a = uskd(z.float(), y, student_features={-2: maps})["loss"]
    b = uskd(z.float(), y, student_features={-2: maps.mean(dim=(2, 3))})["loss"]
    assert a.item() == pytest.approx(b.item(), rel=1e-6)
