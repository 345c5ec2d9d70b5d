"""Curriculum temperature KD, CTKD (Li et al., "Curriculum temperature for knowledge
distillation", AAAI 2023), with its global learnable temperature.

KD whose temperature is a learnable parameter theta trained adversarially: it reaches the loss
through a gradient reversal layer GRL_lambda (identity forward, gradient times -lambda backward),
so the student minimises the KD loss while the temperature maximises it, with a strength lambda
that grows along a cosine curriculum:

    T = T_min + T_range * sigmoid(GRL_lambda(theta))
    lambda(e) = lambda_max * (1 - cos(pi * min(e + 1, E) / E)) / 2      (e: 0-based epoch)
    L = (1 - alpha) CE(z, y) + alpha * T^2 * KL(softmax(t / T) || softmax(z / T))   (batchmean)

Defaults: the official CIFAR-100 script (scripts/run_cifar_distill.sh: gamma 0.1 on CE, alpha 0.9
on KD, t_start 1, t_end 20, cosine decay from 0 to -1 over 10 epochs) and theta = 1 at start (T =
1 + 20 sigmoid(1) = 15.6). Like the official code, theta is optimised by the student's optimizer
with the recipe's learning rate and weight decay; it is this strategy's own trainable module.

Checked against zhengli97/CTKD: models/temp_global.py (Global_T, the gradient reversal),
train_student.py (CosineDecay, epochs from 1), helper/loops.py (T = t_start + t_end *
sigmoid(.)), distiller_zoo/KD.py (DistillKL, batchmean x T^2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from harness.schema import between, field, ge, gt
from harness.strategies.functional import cross_entropy
from harness.strategies.registry import LossDict, StepInputs, Strategy, register


@dataclass(kw_only=True)
class CTKDParams:
    """KD weight, the temperature's range and the curriculum."""

    alpha: float = field(0.9, check=between(0, 1), doc="weight of the KD term; (1-alpha) on CE")
    temperature_min: float = field(1.0, check=gt(0), doc="T_min (official t_start)")
    temperature_range: float = field(
        20.0, check=gt(0), doc="T_range: T in (T_min, T_min + T_range) (official t_end)"
    )
    initial: float = field(1.0, doc="theta at the start (T = T_min + T_range sigmoid(theta))")
    lambda_max: float = field(1.0, check=ge(0), doc="final strength of the gradient reversal")
    curriculum_epochs: float = field(10.0, check=gt(0), doc="epochs of the cosine ramp of lambda")


class _ReverseGradient(torch.autograd.Function):
    """Identity forward; the gradient times -strength backward (Ganin and Lempitsky 2015)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, strength: float) -> torch.Tensor:
        ctx.strength = strength
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.strength * grad, None


def reverse_gradient(x: torch.Tensor, strength: float) -> torch.Tensor:
    """GRL: x forward, -strength * gradient backward."""
    return _ReverseGradient.apply(x, strength)


def curriculum_lambda(epoch: int, lambda_max: float, epochs: float) -> float:
    """Cosine ramp from 0 to lambda_max over `epochs`, for the 0-based epoch (official: from 1)."""
    i = min(epoch + 1, epochs)
    return lambda_max * (1.0 - math.cos(math.pi * i / epochs)) / 2.0


#: Default search space of `harness tune` (docs/tuning.md): fields of Params -> distribution; the
#: learning rate is added by the tuner.
SPACE: dict[str, dict[str, list[float]]] = {"alpha": {"float": [0.1, 0.99]}}


@register
class CurriculumTemperatureKD(Strategy):
    """CTKD: KD with an adversarially learned global temperature."""

    name = "ctkd"
    Params = CTKDParams
    needs_teacher = True

    def __init__(self, params: CTKDParams) -> None:
        super().__init__(params)
        self.theta = torch.nn.Parameter(torch.full((1,), float(params.initial)))

    def temperature(self, strength: float) -> torch.Tensor:
        """T through the gradient reversal layer, shape (1,)."""
        p = self.params
        return p.temperature_min + p.temperature_range * torch.sigmoid(reverse_gradient(self.theta, strength))

    def forward(self, step: StepInputs) -> LossDict:
        p = self.params
        strength = curriculum_lambda(step.epoch, p.lambda_max, p.curriculum_epochs)
        t = self.temperature(strength)
        z = step.student_logits.float()
        target = F.softmax(step.teacher(self.name).detach().float() / t, dim=1)
        kl = F.kl_div(F.log_softmax(z / t, dim=1), target, reduction="batchmean")
        kd = kl * t[0] * t[0]
        ce = cross_entropy(z, step.targets)
        loss = (1.0 - p.alpha) * ce + p.alpha * kd
        return {"loss": loss, "ce": ce.detach(), "kl": kl.detach(), "temperature": t[0].detach()}
