"""Knowledge distillation (Hinton et al. 2015), weighted as in Yuan et al. 2020.

    L = (1 - alpha) CE(z, y) + alpha * m * T^2 * KL(softmax(t / T) || softmax(z / T))

alpha weighs the distillation term (torchdistill, mdistiller and timm weigh the CE term instead),
m is the Tf-KD `multiplier` (1 for plain KD), t the teacher's logits on the student's view, and
the KL is reduced by `batchmean` (sum / N) or `legacy_mean` (sum / (N K), the official Tf-KD code).

With `logit_standardization: true` (Sun et al., "Logit standardization in knowledge distillation",
CVPR 2024) both logit vectors are z-scored per sample before the softmax, z -> (z - mean) /
std, and T is the base temperature (their CIFAR-100 setting: T 2, CE weight 0.1, KD weight 9,
i.e. alpha 0.9 and multiplier 10).

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
from harness.strategies.functional import KLReduction, cross_entropy, kl_divergence, standardize
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
    logit_standardization: bool = field(
        False, doc="z-score both logit vectors per sample before the softmax (Sun et al. 2024)"
    )


def kd_loss(
    student_logits: torch.Tensor,
    targets: torch.Tensor,
    teacher_logits: torch.Tensor,
    alpha: float,
    temperature: float,
    multiplier: float = 1.0,
    kl_reduction: KLReduction = "batchmean",
    logit_standardization: bool = False,
) -> LossDict:
    """KD loss and its parts `ce` and `kl` (the KL at temperature T, before any weight)."""
    t = temperature
    ce = cross_entropy(student_logits, targets)
    z_s, z_t = student_logits.float(), teacher_logits.detach().float()
    if logit_standardization:
        z_s, z_t = standardize(z_s), standardize(z_t)
    target = F.softmax(z_t / t, dim=1)
    kl = kl_divergence(target, F.log_softmax(z_s / t, dim=1), kl_reduction)
    loss = (1.0 - alpha) * ce + alpha * multiplier * t * t * kl
    return {"loss": loss, "ce": ce.detach(), "kl": kl.detach()}


#: Default search space of `harness tune` (docs/tuning.md): fields of Params -> distribution; the
#: learning rate is added by the tuner.
SPACE: dict[str, dict[str, list[float]]] = {
    "alpha": {"float": [0.1, 0.99]},
    "temperature": {"log": [1.0, 8.0]},
}


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
            p.logit_standardization,
        )
