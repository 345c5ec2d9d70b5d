"""Teacher-free KD with a hand-made regularising teacher (Tf-KD reg, Yuan et al. 2020, Eq. 9).

The virtual teacher puts `a` (correct_prob, 0.99) on the label and (1 - a)/(K - 1) elsewhere:
p_d. Its soft target is softmax(p_d / T) (the official code treats the probabilities as logits).

* `variant: paper`:  L = (1 - alpha) CE + alpha * m * T^2 * KL(softmax(p_d/T) || softmax(z/T))
* `variant: code`:   L = (1 - alpha) CE + alpha * m * KL(softmax(p_d/T) || softmax(z))
  (the official code: no temperature on the student, no T^2)

The KL is reduced by `batchmean` (sum / N) or `legacy_mean` (sum / (N K), the official code).
For K = 10, T = 20 the target is 0.1045 on the label and 0.0995 elsewhere: nearly uniform.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F

from harness.schema import between, field, ge, gt
from harness.strategies.functional import KLReduction, cross_entropy, kl_divergence
from harness.strategies.registry import LossDict, StepInputs, Strategy, register

Variant = Literal["code", "paper"]


@dataclass(kw_only=True)
class TfKDRegParams:
    """Weights, temperature and the virtual teacher's confidence."""

    alpha: float = field(check=between(0, 1), doc="weight of the KD term; (1-alpha) on CE")
    temperature: float = field(check=gt(0), doc="temperature T applied to p_d")
    multiplier: float = field(1.0, check=ge(0), doc="extra KD-term factor")
    correct_prob: float = field(
        0.99, check=between(0, 1, lo_open=True, hi_open=True), doc="a: teacher prob on the label"
    )
    variant: Variant = field("paper", doc="paper: Eq. 9 (student / T, T^2); code: official code")
    kl_reduction: KLReduction = field(
        "batchmean", doc="batchmean: sum/N; legacy_mean: sum/(N*K) as the Tf-KD code"
    )


def virtual_teacher_target(
    targets: torch.Tensor, num_classes: int, correct_prob: float, temperature: float
) -> torch.Tensor:
    """softmax(p_d / T) with p_d = a on the label, (1 - a)/(K - 1) elsewhere; shape (N, K)."""
    onehot = F.one_hot(targets, num_classes).float()
    p_d = onehot * correct_prob + (1.0 - onehot) * (1.0 - correct_prob) / (num_classes - 1)
    return F.softmax(p_d / temperature, dim=1)


def tfkd_reg_loss(
    student_logits: torch.Tensor,
    targets: torch.Tensor,
    alpha: float,
    temperature: float,
    multiplier: float = 1.0,
    correct_prob: float = 0.99,
    variant: Variant = "paper",
    kl_reduction: KLReduction = "batchmean",
) -> LossDict:
    """Tf-KD reg loss and its parts `ce` and `kl` (before any weight)."""
    t = temperature
    target = virtual_teacher_target(targets, student_logits.shape[1], correct_prob, t)
    ce = cross_entropy(student_logits, targets)
    scale = 1.0 if variant == "code" else t
    log_q = F.log_softmax(student_logits.float() / scale, dim=1)
    kl = kl_divergence(target, log_q, kl_reduction)
    loss = (1.0 - alpha) * ce + alpha * multiplier * scale * scale * kl
    return {"loss": loss, "ce": ce.detach(), "kl": kl.detach()}


#: Default search space of `harness tune` (docs/tuning.md): fields of Params -> distribution; the
#: learning rate is added by the tuner.
SPACE: dict[str, dict[str, list[float]]] = {
    "alpha": {"float": [0.1, 0.99]},
    "temperature": {"log": [1.0, 40.0]},
}


@register
class TfKDReg(Strategy):
    """Tf-KD reg: distillation from a hand-made, nearly uniform teacher (no teacher model)."""

    name = "tfkd_reg"
    Params = TfKDRegParams
    example: ClassVar[dict[str, Any]] = {"alpha": 0.1, "temperature": 20.0}

    def forward(self, step: StepInputs) -> LossDict:
        p = self.params
        return tfkd_reg_loss(
            step.student_logits,
            step.targets,
            p.alpha,
            p.temperature,
            p.multiplier,
            p.correct_prob,
            p.variant,
            p.kl_reduction,
        )
