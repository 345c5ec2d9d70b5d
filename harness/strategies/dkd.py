"""Decoupled knowledge distillation (Zhao et al., "Decoupled Knowledge Distillation", CVPR 2022).

KD's KL splits into a target-class part and a non-target part, re-weighted independently. With
p = softmax(z / T), b = (p_y, 1 - p_y) the binary target/other distribution and p^ the
distribution over the K - 1 non-target classes (softmax of the non-target logits / T):

    TCKD = T^2 KL(b^t || b^s),   NCKD = T^2 KL(p^t || p^s)      (both averaged over the batch)
    L = ce_weight * CE(z, y) + w(e) * (alpha * TCKD + beta * NCKD),   w(e) = min((e + 1) / warmup, 1)

with e the 0-based epoch (the linear warm-up of the official code, whose epochs count from 1).
Defaults: CIFAR-100 ResNet32x4 -> ResNet8x4 (alpha 1, beta 8, T 4, CE weight 1, warm-up 20
epochs); the paper tunes beta per pair (configs/cifar100/dkd/ of mdistiller).

Checked against megvii-research/mdistiller, mdistiller/distillers/DKD.py. The official code
removes the target class from NCKD by subtracting 1000 from its logit / T; here the target
column is dropped exactly (the same value while 1000 dominates; finite at any logit scale).
`logit_standardization: true` z-scores both logit vectors first (Sun et al., CVPR 2024,
sunshangquan/logit-standardization-KD, mdistiller/distillers/DKD.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from harness.schema import field, ge, gt
from harness.strategies.functional import cross_entropy, non_target, standardize
from harness.strategies.registry import LossDict, StepInputs, Strategy, register


@dataclass(kw_only=True)
class DKDParams:
    """Weights of the decoupled terms, temperature and warm-up."""

    alpha: float = field(1.0, check=ge(0), doc="weight of TCKD (target class)")
    beta: float = field(8.0, check=ge(0), doc="weight of NCKD (non-target classes)")
    temperature: float = field(4.0, check=gt(0), doc="softmax temperature T")
    ce_weight: float = field(1.0, check=ge(0), doc="weight of CE")
    warmup_epochs: float = field(
        20.0, check=ge(0), doc="KD terms ramp linearly over this many epochs (0: none)"
    )
    logit_standardization: bool = field(False, doc="z-score both logit vectors first (Sun et al. 2024)")


def binary_log_probs(log_p: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(N, 2) log of (p_y, 1 - p_y) from (N, K) log-probabilities, computed in log space."""
    target = log_p.gather(1, targets[:, None])
    other = torch.logsumexp(non_target(log_p, targets), dim=1, keepdim=True)
    return torch.cat([target, other], dim=1)


def kl_rows(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Batch mean of KL(p || q) with both given as log-probabilities (terms with p = 0 are 0)."""
    return F.kl_div(log_q, log_p, reduction="sum", log_target=True) / log_p.shape[0]


def dkd_terms(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    temperature: float,
    logit_standardization: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(TCKD, NCKD), each already multiplied by T^2."""
    z_s, z_t = student_logits.float(), teacher_logits.detach().float()
    if logit_standardization:
        z_s, z_t = standardize(z_s), standardize(z_t)
    t = temperature
    ls_s, ls_t = F.log_softmax(z_s / t, dim=1), F.log_softmax(z_t / t, dim=1)
    tckd = kl_rows(binary_log_probs(ls_t, targets), binary_log_probs(ls_s, targets))
    nt_s = F.log_softmax(non_target(z_s, targets) / t, dim=1)
    nt_t = F.log_softmax(non_target(z_t, targets) / t, dim=1)
    nckd = kl_rows(nt_t, nt_s)
    return tckd * t * t, nckd * t * t


def warmup_weight(epoch: int, warmup_epochs: float) -> float:
    """min((epoch + 1) / warmup, 1) for the 0-based epoch (1 without warm-up)."""
    return 1.0 if warmup_epochs <= 0 else min((epoch + 1) / warmup_epochs, 1.0)


#: Default search space of `harness tune` (docs/tuning.md): fields of Params -> distribution; the
#: learning rate is added by the tuner.
SPACE: dict[str, dict[str, list[float]]] = {"beta": {"log": [1.0, 16.0]}, "temperature": {"log": [1.0, 8.0]}}


@register
class DecoupledKD(Strategy):
    """DKD: target-class and non-target-class KD with their own weights."""

    name = "dkd"
    Params = DKDParams
    needs_teacher = True

    def forward(self, step: StepInputs) -> LossDict:
        p = self.params
        z, y = step.student_logits, step.targets
        tckd, nckd = dkd_terms(z, step.teacher(self.name), y, p.temperature, p.logit_standardization)
        ce = cross_entropy(z, y)
        w = warmup_weight(step.epoch, p.warmup_epochs)
        loss = p.ce_weight * ce + w * (p.alpha * tckd + p.beta * nckd)
        return {"loss": loss, "ce": ce.detach(), "tckd": tckd.detach(), "nckd": nckd.detach()}
