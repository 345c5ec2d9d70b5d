"""Attention transfer (Zagoruyko and Komodakis, "Paying more attention to attention", ICLR 2017).

The spatial attention map of a feature map F (C x H x W) is Q = vec(mean_c F_c^p), normalised to
unit L2 norm; the student matches the teacher's maps at several stages:

    L = ce_weight * CE(z, y) + beta * sum_stages mean_{i, hw} (Q_s - Q_t)^2

As mdistiller (mdistiller/distillers/AT.py: p 2, beta 1000, the stages after the stem) and the
authors' code (szagoruyko/attention-transfer, `at` and `at_loss`): the mean over the batch and
the positions, F^p taken as is (the paper's |F|^p; equal for even p), and, where a student's and
a teacher's map differ in side, the larger one average-pooled to the smaller (mdistiller). The
authors' code weighs the sum by beta / 2; mdistiller, followed here, by beta.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from harness.schema import field, ge, gt
from harness.strategies.functional import cross_entropy
from harness.strategies.registry import FeatureSpec, LossDict, StepInputs, Strategy, register


@dataclass(kw_only=True)
class ATParams:
    """Stages, exponent and weight of attention transfer."""

    stages: list[int] = field(
        [-3, -2, -1], doc="stages matched, student and teacher alike (timm feature_info indices)"
    )
    p: float = field(2.0, check=gt(0), doc="exponent of the attention map (mean over channels of F^p)")
    beta: float = field(1000.0, check=ge(0), doc="weight of the attention term (mdistiller: 1000)")
    ce_weight: float = field(1.0, check=ge(0), doc="weight of CE")


def attention_map(feat: torch.Tensor, p: float) -> torch.Tensor:
    """(N, H*W): mean over channels of feat^p, each row scaled to unit L2 norm."""
    return F.normalize(feat.float().pow(p).mean(1).reshape(feat.shape[0], -1))


def at_stage_loss(f_s: torch.Tensor, f_t: torch.Tensor, p: float) -> torch.Tensor:
    """mean (Q_s - Q_t)^2 at one stage, the larger map pooled to the smaller side first."""
    h_s, h_t = f_s.shape[2], f_t.shape[2]
    if h_s > h_t:
        f_s = F.adaptive_avg_pool2d(f_s, (h_t, h_t))
    elif h_s < h_t:
        f_t = F.adaptive_avg_pool2d(f_t, (h_s, h_s))
    return (attention_map(f_s, p) - attention_map(f_t.detach(), p)).pow(2).mean()


#: Default search space of `harness tune` (docs/tuning.md): fields of Params -> distribution; the
#: learning rate is added by the tuner.
SPACE: dict[str, dict[str, list[float]]] = {"beta": {"log": [100.0, 3000.0]}}


@register
class AttentionTransfer(Strategy):
    """Attention transfer over several stages."""

    name = "at"
    Params = ATParams
    needs_teacher = True

    @classmethod
    def declared_features(cls, params: ATParams) -> FeatureSpec:
        return FeatureSpec(student=tuple(params.stages), teacher=tuple(params.stages))

    def __init__(self, params: ATParams) -> None:
        super().__init__(params)

    def forward(self, step: StepInputs) -> LossDict:
        step.teacher(self.name)
        p = self.params
        ce = cross_entropy(step.student_logits, step.targets)
        at = sum(at_stage_loss(step.student_features[s], step.teacher_features[s], p.p) for s in p.stages)
        at = torch.as_tensor(at, device=ce.device, dtype=ce.dtype)
        return {"loss": p.ce_weight * ce + p.beta * at, "ce": ce.detach(), "at": at.detach()}
