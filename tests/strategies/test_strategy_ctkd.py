"""CTKD against the reference code: the learnable temperature, its gradient reversal and the
cosine curriculum.

Reference: zhengli97/CTKD, models/temp_global.py (`Global_T`, `GradientReversalFunction`:
backward multiplies by lambda_), train_student.py (`CosineDecay(max_value=0, min_value=-1,
num_loops=10).get_value(epoch)`, epochs from 1), helper/loops.py (`temp = t_start + t_end *
sigmoid(mlp_net(...))`, `loss = gamma * loss_cls + alpha * loss_div`) and distiller_zoo/KD.py
(`DistillKL`: KLDivLoss(batchmean) * T * T), with scripts/run_cifar_distill.sh's -r 0.1 -a 0.9.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from harness import strategies
from tests.support.golden import fixed_inputs


def cosine_decay(i, max_value=0.0, min_value=-1.0, num_loops=10):
    i = min(max(i, 0), num_loops)
    value = (math.cos(i * math.pi / num_loops) + 1.0) * 0.5
    return value * (max_value - min_value) + min_value


class ReverseGradient(torch.autograd.Function):  # the official GradientReversalFunction
    @staticmethod
    def forward(ctx, x, lambda_):
        ctx.lambda_ = lambda_
        return x.clone()

    @staticmethod
    def backward(ctx, grads):
        return ctx.lambda_ * grads, None


@pytest.mark.parametrize("epoch", [0, 3, 9, 50])
def test_ctkd_loss_and_gradients_match_the_reference(epoch):
    z, t, y = fixed_inputs()
    lambda_ = cosine_decay(epoch + 1)  # the official loop counts epochs from 1
    theta = torch.ones(1, dtype=torch.float64, requires_grad=True)
    z_ref = z.clone().requires_grad_()
    temp = 1.0 + 20.0 * torch.sigmoid(ReverseGradient.apply(theta, lambda_))
    kl = F.kl_div(F.log_softmax(z_ref / temp, dim=1), F.softmax(t / temp, dim=1), reduction="batchmean")
    expected = 0.1 * F.cross_entropy(z_ref, y) + 0.9 * kl * temp * temp
    expected.backward()

    ctkd = strategies.build("ctkd")
    z32 = z.float().requires_grad_()
    out = ctkd(z32, y, t.float(), epoch=epoch)
    out["loss"].backward()
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert out["temperature"].item() == pytest.approx(float(temp.detach()), rel=1e-6)
    torch.testing.assert_close(z32.grad.double(), z_ref.grad, rtol=1e-4, atol=1e-6)
    # float32 against float64: the temperature's gradient sums terms that nearly cancel
    torch.testing.assert_close(ctkd.theta.grad.double(), theta.grad, rtol=1e-3, atol=1e-5)


def test_the_temperature_ascends_the_kd_loss_once_the_curriculum_starts():
    z, t, y = fixed_inputs()
    ctkd = strategies.build("ctkd", alpha=1.0)
    out = ctkd(z.float(), y, t.float(), epoch=5)
    out["loss"].backward()
    # d loss / d theta through the reversal = -lambda * true gradient: the optimizer's descent
    # step on theta moves it up the KD loss
    theta = ctkd.theta.detach().clone().requires_grad_()
    temp = 1.0 + 20.0 * torch.sigmoid(theta)
    kd = F.kl_div(F.log_softmax(z.float() / temp, 1), F.softmax(t.float() / temp, 1), reduction="batchmean")
    (true_grad,) = torch.autograd.grad(kd * temp * temp, theta)
    lam = (1 - math.cos(math.pi * 6 / 10)) / 2
    torch.testing.assert_close(ctkd.theta.grad, -lam * true_grad, rtol=1e-4, atol=1e-8)
