"""Normalized KD (Yang et al., "From knowledge distillation to self-knowledge distillation: a
unified approach with normalized loss and customized soft labels", ICCV 2023).

KD's loss splits into a target part and a non-target part whose weight depends on the target
probability; NKD normalises the non-target part (softmax over the K - 1 non-target logits) and
weights the target part by the teacher's target probability:

    L_t   = -(1/N) sum_i t_{y_i} log s_{y_i}                      (T = 1, t detached)
    L_non = -gamma T^2 (1/N) sum_i sum_{k != y_i} t^_ik log s^_ik  (^: softmax of non-target z / T)
    L = ce_weight * CE(z, y) + L_t + L_non

Defaults: the official CIFAR-100 configuration (configs/distillers/cifar100/
res34_distill_res18_cifar.py: T 3, gamma 3.5; ImageNet: T 1, gamma 1.5), CE weight 1 (the
student's own loss, kept beside the distillation loss).

Checked against yzd-v/cls_KD, mmcls/models/dis_losses/nkd.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from harness.schema import field, ge, gt
from harness.strategies.functional import cross_entropy, non_target
from harness.strategies.registry import LossDict, StepInputs, Strategy, register


@dataclass(kw_only=True)
class NKDParams:
    """Temperature and weight of the normalised non-target part."""

    temperature: float = field(3.0, check=gt(0), doc="temperature T of the non-target part")
    gamma: float = field(3.5, check=ge(0), doc="weight of the non-target part")
    ce_weight: float = field(1.0, check=ge(0), doc="weight of CE")


#: Default search space of `harness tune` (docs/tuning.md): fields of Params -> distribution; the
#: learning rate is added by the tuner.
SPACE: dict[str, dict[str, list[float]]] = {
    "temperature": {"log": [1.0, 8.0]},
    "gamma": {"float": [0.5, 5.0]},
}


@register
class NormalizedKD(Strategy):
    """NKD: target part weighted by the teacher, non-target part normalised."""

    name = "nkd"
    Params = NKDParams
    needs_teacher = True

    def forward(self, step: StepInputs) -> LossDict:
        p = self.params
        z, y = step.student_logits.float(), step.targets
        z_t = step.teacher(self.name).detach().float()
        log_s = F.log_softmax(z, dim=1)
        t_target = F.softmax(z_t, dim=1).gather(1, y[:, None])
        target_part = -(t_target * log_s.gather(1, y[:, None])).mean()
        t = p.temperature
        nt_s = F.log_softmax(non_target(z, y) / t, dim=1)
        nt_t = F.softmax(non_target(z_t, y) / t, dim=1)
        non_target_part = -(nt_t * nt_s).sum(dim=1).mean() * t * t
        ce = cross_entropy(z, y)
        loss = p.ce_weight * ce + target_part + p.gamma * non_target_part
        return {
            "loss": loss,
            "ce": ce.detach(),
            "target": target_part.detach(),
            "non_target": non_target_part.detach(),
        }
