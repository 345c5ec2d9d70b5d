"""Knowledge distillation (Hinton et al. 2015), weighted as in Yuan et al. 2020.

    L = (1 - alpha) CE(z, y) + alpha * m * T^2 * KL(softmax(t / T) || softmax(z / T))

alpha weighs the distillation term (torchdistill, mdistiller and timm weigh the CE term instead),
m is the Tf-KD `multiplier` (1 for plain KD), t the teacher's logits on the student's view, and
the KL is reduced by `batchmean` (sum / N) or `legacy_mean` (sum / (N K), the official Tf-KD code).

The same loss serves every teacher: a larger model (KD), the student's own trained architecture
(Tf-KD self), a weaker model (reversed KD) or an early checkpoint (defective KD). With alpha = 1
and T = 1 it is the pure soft-target KD of Shen et al. 2021.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from harness.schema import between, field, ge, gt
from harness.strategies.functional import KLReduction, cross_entropy, kl_divergence
from harness.strategies.registry import LossDict, StepInputs, Strategy, register


@dataclass(kw_only=True)
class KDParams:
    """Weights and temperature of the distillation loss."""

    alpha: float = field(check=between(0, 1), doc="weight of the KD term; (1-alpha) on CE")
    temperature: float = field(check=gt(0), doc="softmax temperature T")
    multiplier: float = field(1.0, check=ge(0), doc="extra KD-term factor (Tf-KD self)")
    kl_reduction: KLReduction = field(
        "batchmean", doc="batchmean: sum/N; legacy_mean: sum/(N*K) as the Tf-KD code"
    )


def kd_loss(
    student_logits: torch.Tensor,
    targets: torch.Tensor,
    teacher_logits: torch.Tensor,
    alpha: float,
    temperature: float,
    multiplier: float = 1.0,
    kl_reduction: KLReduction = "batchmean",
) -> LossDict:
    """KD loss and its parts `ce` and `kl` (the KL at temperature T, before any weight)."""
    t = temperature
    ce = cross_entropy(student_logits, targets)
    target = F.softmax(teacher_logits.detach().float() / t, dim=1)
    kl = kl_divergence(target, F.log_softmax(student_logits.float() / t, dim=1), kl_reduction)
    loss = (1.0 - alpha) * ce + alpha * multiplier * t * t * kl
    return {"loss": loss, "ce": ce.detach(), "kl": kl.detach()}


@register
class KnowledgeDistillation(Strategy):
    """Hinton KD from a teacher's logits on the same augmented view."""

    name = "kd"
    Params = KDParams
    needs_teacher = True
    example: ClassVar[dict[str, Any]] = {"alpha": 0.9, "temperature": 4.0}

    def forward(self, step: StepInputs) -> LossDict:
        p = self.params
        return kd_loss(
            step.student_logits,
            step.targets,
            step.teacher(self.name),
            p.alpha,
            p.temperature,
            p.multiplier,
            p.kl_reduction,
        )
