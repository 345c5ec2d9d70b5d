"""FitNets (Romero et al., "FitNets: Hints for thin deep nets", ICLR 2015), trained jointly.

A connector r (a convolution, then BatchNorm and ReLU) maps the student's hint stage onto the
teacher's guided stage, and the student learns to match it:

    L = ce_weight * CE(z, y) + weight * MSE(r(F_s), F_t)

MSE is the mean over every element. The paper trains in two stages (hints first, then KD); here,
as in mdistiller (mdistiller/distillers/FitNet.py, configs: weight 100, hint layer 2) the hint
and CE are trained together from the start, with the connector in the optimizer. The connector
follows mdistiller's `ConvReg` (mdistiller/distillers/_common.py): a 3x3 stride-2 convolution when
the student's map is twice the teacher's side, a 4x4 stride-2 transposed convolution when half,
otherwise a (1 + H_s - H_t) x (1 + W_s - W_t) convolution (1x1 at equal sides).

Stages are timm `feature_info` indices; RepDistiller's CIFAR networks (`harness.models.cifar`)
number them as mdistiller's `feats` list, so stage 2 is mdistiller's hint layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import RecipeError
from harness.schema import field, ge
from harness.strategies.functional import cross_entropy
from harness.strategies.registry import FeatureSpec, LossDict, SetupInfo, StepInputs, Strategy, register


@dataclass(kw_only=True)
class FitNetParams:
    """Hint stages and weights."""

    student_stage: int = field(2, doc="student's hint stage (timm feature_info index, negative from the end)")
    teacher_stage: int | None = field(None, doc="teacher's guided stage (default: student_stage)")
    weight: float = field(100.0, check=ge(0), doc="weight of the hint MSE (mdistiller: 100)")
    ce_weight: float = field(1.0, check=ge(0), doc="weight of CE")


def connector(student_shape: tuple[int, ...], teacher_shape: tuple[int, ...]) -> nn.Module:
    """mdistiller's ConvReg from (C_s, H_s, W_s) to (C_t, H_t, W_t): conv, BatchNorm, ReLU."""
    (c_s, h_s, w_s), (c_t, h_t, w_t) = student_shape, teacher_shape
    if h_s == 2 * h_t:
        conv: nn.Module = nn.Conv2d(c_s, c_t, kernel_size=3, stride=2, padding=1)
    elif h_s * 2 == h_t:
        conv = nn.ConvTranspose2d(c_s, c_t, kernel_size=4, stride=2, padding=1)
    elif h_s >= h_t and w_s >= w_t:
        conv = nn.Conv2d(c_s, c_t, kernel_size=(1 + h_s - h_t, 1 + w_s - w_t))
    else:
        raise RecipeError(
            f"strategy.params.student_stage: a {h_s}x{w_s} student map cannot be mapped onto the "
            f"teacher's {h_t}x{w_t} (sides must be equal, twice, half, or larger)"
        )
    return nn.Sequential(conv, nn.BatchNorm2d(c_t), nn.ReLU())


def hint_loss(
    student_logits: torch.Tensor,
    targets: torch.Tensor,
    hint: torch.Tensor,
    guided: torch.Tensor,
    weight: float,
    ce_weight: float,
) -> LossDict:
    """ce_weight * CE + weight * MSE(hint, guided); parts `ce` and `hint` (the MSE)."""
    ce = cross_entropy(student_logits, targets)
    mse = F.mse_loss(hint.float(), guided.detach().float())
    return {"loss": ce_weight * ce + weight * mse, "ce": ce.detach(), "hint": mse.detach()}


#: Default search space of `harness tune` (docs/tuning.md): fields of Params -> distribution; the
#: learning rate is added by the tuner.
SPACE: dict[str, dict[str, list[float]]] = {"weight": {"log": [10.0, 1000.0]}}


@register
class FitNet(Strategy):
    """FitNet hint at one stage through a trainable convolutional connector."""

    name = "fitnet"
    Params = FitNetParams
    needs_teacher = True

    @classmethod
    def declared_features(cls, params: FitNetParams) -> FeatureSpec:
        t_stage = params.student_stage if params.teacher_stage is None else params.teacher_stage
        return FeatureSpec(student=(params.student_stage,), teacher=(t_stage,))

    def __init__(self, params: FitNetParams) -> None:
        super().__init__(params)
        self.stages = (self.features.student[0], self.features.teacher[0])

    def setup(self, info: SetupInfo) -> None:
        s, t = self.stages
        s_shape, t_shape = info.student_shapes[s], info.teacher_shapes[t]
        if len(s_shape) != 3 or len(t_shape) != 3:
            raise RecipeError(
                f"strategy.params.student_stage: fitnet needs (C, H, W) maps, got {s_shape}, {t_shape}"
            )
        self.connector = connector(s_shape, t_shape)

    def forward(self, step: StepInputs) -> LossDict:
        s, t = self.stages
        step.teacher(self.name)
        p = self.params
        hint = self.connector(step.student_features[s])
        return hint_loss(
            step.student_logits, step.targets, hint, step.teacher_features[t], p.weight, p.ce_weight
        )
