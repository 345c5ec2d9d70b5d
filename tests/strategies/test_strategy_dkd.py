"""DKD and KD with logit standardization against the reference code's formulas.

Reference: megvii-research/mdistiller, mdistiller/distillers/DKD.py (`dkd_loss`, `cat_mask`, the
warm-up `min(epoch / warmup, 1)` with epochs from 1) and sunshangquan/logit-standardization-KD,
mdistiller/distillers/KD.py and DKD.py (`normalize`).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from harness import strategies
from tests.support.golden import fixed_inputs, strategy_value_and_grad, value_and_grad


def normalize(logit):  # logit-standardization-KD: (z - mean) / (1e-7 + std), unbiased std
    return (logit - logit.mean(dim=-1, keepdim=True)) / (1e-7 + logit.std(dim=-1, keepdim=True))


def reference_dkd(z_s, z_t, y, alpha, beta, temperature, logit_stand=False):
    """mdistiller's dkd_loss, line for line (masks, cat_mask, the -1000 on the target logit)."""
    if logit_stand:
        z_s, z_t = normalize(z_s), normalize(z_t)
    gt = torch.zeros_like(z_s).scatter_(1, y[:, None], 1).bool()
    other = ~gt
    p_s = F.softmax(z_s / temperature, dim=1)
    p_t = F.softmax(z_t / temperature, dim=1)

    def cat_mask(t):
        return torch.cat([(t * gt).sum(1, keepdim=True), (t * other).sum(1, keepdim=True)], dim=1)

    b_s, b_t = cat_mask(p_s), cat_mask(p_t)
    tckd = F.kl_div(torch.log(b_s), b_t, reduction="sum") * temperature**2 / y.shape[0]
    p_t2 = F.softmax(z_t / temperature - 1000.0 * gt, dim=1)
    log_p_s2 = F.log_softmax(z_s / temperature - 1000.0 * gt, dim=1)
    nckd = F.kl_div(log_p_s2, p_t2, reduction="sum") * temperature**2 / y.shape[0]
    return alpha * tckd + beta * nckd


@pytest.mark.parametrize("logit_stand", [False, True])
@pytest.mark.parametrize(("alpha", "beta", "temperature"), [(1.0, 8.0, 4.0), (0.5, 2.0, 1.0)])
@pytest.mark.parametrize(("epoch", "warmup"), [(0, 20.0), (4, 20.0), (30, 20.0), (0, 0.0)])
def test_dkd_loss_and_gradient_match_mdistiller(alpha, beta, temperature, logit_stand, epoch, warmup):
    z, t, y = fixed_inputs()
    weight = min((epoch + 1) / warmup, 1.0) if warmup else 1.0  # mdistiller's epoch = ours + 1

    def reference(leaf):
        kd = reference_dkd(leaf, t, y, alpha, beta, temperature, logit_stand)
        return F.cross_entropy(leaf, y) + weight * kd

    expected, expected_grad = value_and_grad(reference, z)
    dkd = strategies.build(
        "dkd",
        alpha=alpha,
        beta=beta,
        temperature=temperature,
        warmup_epochs=warmup,
        logit_standardization=logit_stand,
    )
    value, grad, parts = strategy_value_and_grad(dkd, z, y, t, epoch=epoch)
    assert value == pytest.approx(expected, rel=1e-5)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-4, atol=1e-6)
    assert parts["tckd"] >= 0 and parts["nckd"] >= 0
    alone = reference_dkd(z, t, y, 1.0, 0.0, temperature, logit_stand)
    assert parts["tckd"] == pytest.approx(float(alone), rel=1e-5)


def test_tckd_and_nckd_decompose_kd():
    # the paper's Eq. (6): KD = TCKD + (1 - p_t_target) NCKD; check it on our parts, sample by sample
    z, t, y = fixed_inputs()
    for i in range(len(y)):
        zi, ti, yi = z[i : i + 1], t[i : i + 1], y[i : i + 1]
        parts = strategies.build("dkd", temperature=1.0)(zi.float(), yi, ti.float())
        kd = F.kl_div(F.log_softmax(zi, 1), F.softmax(ti, 1), reduction="sum")
        p_t = float(F.softmax(ti, 1)[0, yi])
        assert float(kd) == pytest.approx(parts["tckd"].item() + (1 - p_t) * parts["nckd"].item(), rel=1e-4)


@pytest.mark.parametrize("temperature", [2.0, 4.0])
def test_kd_logit_standardization_matches_the_reference(temperature):
    z, t, y = fixed_inputs()

    def reference(leaf):  # logit-standardization-KD kd_loss with CE weight 0.1, KD weight 9
        log_p_s = F.log_softmax(normalize(leaf) / temperature, dim=1)
        p_t = F.softmax(normalize(t) / temperature, dim=1)
        kd = F.kl_div(log_p_s, p_t, reduction="none").sum(1).mean() * temperature**2
        return 0.1 * F.cross_entropy(leaf, y) + 9.0 * kd

    expected, expected_grad = value_and_grad(reference, z)
    kd = strategies.build(
        "kd", alpha=0.9, multiplier=10.0, temperature=temperature, logit_standardization=True
    )
    value, grad, _ = strategy_value_and_grad(kd, z, y, t)
    assert value == pytest.approx(expected, rel=1e-5)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-4, atol=1e-6)
    # invariant to the scale and shift of either logit vector (the point of the method)
    shifted = strategies.build("kd", alpha=1.0, temperature=temperature, logit_standardization=True)
    a = shifted(z.float(), y, t.float())["kl"]
    b = shifted(z.float() * 5 + 3, y, t.float() * 0.2 - 1)["kl"]
    assert float(a) == pytest.approx(float(b), rel=1e-4)
