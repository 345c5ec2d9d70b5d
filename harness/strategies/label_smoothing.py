"""Label smoothing (Szegedy et al. 2016), in the two conventions found in practice.

With smoothing e and K classes the target q replaces the one-hot label:

* `uniform` (torch, timm, ffcv): q = (1 - e) * onehot(y) + e / K
  (the label gets 1 - e + e/K);
* `others` (the official Tf-KD code, Yuan et al. 2020): q = 1 - e on y and e / (K - 1) elsewhere.

Loss: L = -(1/N) sum_i sum_k q_ik log softmax(z_i)_k = (1 - e) * CE + e * S, where S is the mean
of -log p over all classes (`uniform`) or over the non-label classes (`others`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from harness.schema import between, field
from harness.strategies.registry import LossDict, StepInputs, Strategy, register

Convention = Literal["uniform", "others"]


@dataclass(kw_only=True)
class LabelSmoothingParams:
    """Smoothing e and the convention that spreads it."""

    epsilon: float = field(0.1, check=between(0, 1, hi_open=True), doc="smoothing mass e")
    convention: Convention = field(
        "uniform", doc="uniform: (1-e) onehot + e/K; others: 1-e on y, e/(K-1) elsewhere"
    )


def smoothed_targets(
    targets: torch.Tensor, num_classes: int, epsilon: float, convention: Convention
) -> torch.Tensor:
    """The (N, K) smoothed target distribution q (rows sum to 1)."""
    onehot = F.one_hot(targets, num_classes).float()
    if convention == "uniform":
        return onehot * (1.0 - epsilon) + epsilon / num_classes
    return onehot * (1.0 - epsilon) + (1.0 - onehot) * (epsilon / (num_classes - 1))


def label_smoothing_loss(
    logits: torch.Tensor, targets: torch.Tensor, epsilon: float, convention: Convention
) -> LossDict:
    """L = (1 - e) CE + e S; returns the loss and its parts `ce` and `smooth` (unweighted)."""
    log_probs = F.log_softmax(logits.float(), dim=1)
    k = log_probs.shape[1]
    ce = -log_probs.gather(1, targets[:, None]).mean()
    if convention == "uniform":
        smooth = -log_probs.mean(dim=1).mean()
    else:
        smooth = (-log_probs.sum(dim=1).mean() - ce) / (k - 1)
    loss = (1.0 - epsilon) * ce + epsilon * smooth
    return {"loss": loss, "ce": ce.detach(), "smooth": smooth.detach()}


#: Default search space of `harness tune` (docs/tuning.md): fields of Params -> distribution; the
#: learning rate is added by the tuner.
SPACE: dict[str, dict[str, list[float]]] = {"epsilon": {"float": [0.01, 0.3]}}


@register
class LabelSmoothing(Strategy):
    """Cross-entropy against label-smoothed targets."""

    name = "label_smoothing"
    Params = LabelSmoothingParams

    def forward(self, step: StepInputs) -> LossDict:
        p = self.params
        return label_smoothing_loss(step.student_logits, step.targets, p.epsilon, p.convention)
