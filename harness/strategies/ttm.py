"""Transformed teacher matching, TTM (Zheng and Yang, "Knowledge distillation based on
transformed teacher matching", ICLR 2024).

Temperature scaling is applied to the teacher only, as a power transform of its probabilities,
and the student is matched at T = 1. With t = softmax(z_t) and the exponent l = 1/T:

    t~_ik = t_ik^l / sum_j t_ij^l                     (= softmax(z_t / T))
    L = ce_weight * CE(z, y) + beta * (1/N) sum_i KL(t~_i || softmax(z_i))

Dropping the student's temperature adds, relative to KD, a Renyi-entropy term on the student: the
paper reads TTM as KD plus an entropy regulariser, which is the label-smoothing question again.
Defaults: the official example (README, VGG13 -> VGG8: `--ttm_l 0.1 -r 1 -b 45`); l and beta are
tuned per pair. The sample-weighted form is `wttm`.

Checked against zkxufo/TTM, distiller_zoo/ttm.py (and helper/loops.py for the weights).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from harness.schema import between, field, ge
from harness.strategies.functional import cross_entropy
from harness.strategies.registry import LossDict, StepInputs, Strategy, register


@dataclass(kw_only=True)
class TTMParams:
    """Exponent of the power transform and the weights."""

    exponent: float = field(
        0.1, check=between(0, 1, lo_open=True), doc="l = 1/T, power on the teacher's probabilities"
    )
    beta: float = field(45.0, check=ge(0), doc="weight of the matching term")
    ce_weight: float = field(1.0, check=ge(0), doc="weight of CE")


def transformed_teacher(teacher_logits: torch.Tensor, exponent: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(log t~, sum_k t_k^l): the power-transformed teacher (log-probabilities) and its
    normaliser per sample, computed in log space."""
    powered = exponent * F.log_softmax(teacher_logits.detach().float(), dim=1)
    log_norm = torch.logsumexp(powered, dim=1, keepdim=True)
    return powered - log_norm, log_norm.squeeze(1).exp()


def matching_kl(student_logits: torch.Tensor, log_target: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(t~ || softmax(z)), shape (N,)."""
    log_s = F.log_softmax(student_logits.float(), dim=1)
    return F.kl_div(log_s, log_target, reduction="none", log_target=True).sum(dim=1)


def ttm_loss(
    student_logits: torch.Tensor,
    targets: torch.Tensor,
    teacher_logits: torch.Tensor,
    exponent: float,
    beta: float,
    ce_weight: float,
    weighted: bool,
) -> LossDict:
    """TTM (weighted False) or WTTM (weighted True) loss and its parts `ce` and `kl`."""
    log_target, norm = transformed_teacher(teacher_logits, exponent)
    kl_i = matching_kl(student_logits, log_target)
    kl = (norm * kl_i).mean() if weighted else kl_i.mean()
    ce = cross_entropy(student_logits, targets)
    return {"loss": ce_weight * ce + beta * kl, "ce": ce.detach(), "kl": kl.detach()}


#: Default search space of `harness tune` (docs/tuning.md): fields of Params -> distribution; the
#: learning rate is added by the tuner.
SPACE: dict[str, dict[str, list[float]]] = {"exponent": {"float": [0.05, 0.5]}, "beta": {"log": [5.0, 100.0]}}


@register
class TransformedTeacherMatching(Strategy):
    """TTM: KD with the temperature on the teacher only."""

    name = "ttm"
    Params = TTMParams
    needs_teacher = True

    def forward(self, step: StepInputs) -> LossDict:
        p = self.params
        t = step.teacher(self.name)
        return ttm_loss(step.student_logits, step.targets, t, p.exponent, p.beta, p.ce_weight, False)
