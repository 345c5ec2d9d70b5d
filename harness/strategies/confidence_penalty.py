"""Confidence penalty (Pereyra et al., "Regularizing neural networks by penalizing confident
output distributions", ICLR workshop 2017).

Cross-entropy minus beta times the predictive entropy H(p) = -sum_k p_k log p_k, p = softmax(z):

    L = CE(z, y) - beta * (1/N) sum_i H(p_i)

or, with a `threshold` G, the paper's hinge form that penalises only entropies below G:

    L = CE(z, y) + beta * (1/N) sum_i max(0, G - H(p_i))

Where label smoothing pulls p towards the uniform distribution through KL(u || p), the penalty
does it through KL(p || u) = log K - H(p) (the paper's section 3.2). There is no official code;
the formula is the paper's Eq. (2). The default beta is a typical value; the paper tunes beta
per task.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from harness.schema import field, ge
from harness.strategies.functional import cross_entropy
from harness.strategies.registry import LossDict, StepInputs, Strategy, register


@dataclass(kw_only=True)
class ConfidencePenaltyParams:
    """Weight of the entropy term and the optional hinge threshold."""

    beta: float = field(0.1, check=ge(0), doc="weight of the entropy penalty")
    threshold: float | None = field(None, check=ge(0), doc="hinge: penalise only H(p) below this (nats)")


#: Default search space of `harness tune` (docs/tuning.md): fields of Params -> distribution; the
#: learning rate is added by the tuner.
SPACE: dict[str, dict[str, list[float]]] = {"beta": {"log": [0.01, 1.0]}}


@register
class ConfidencePenalty(Strategy):
    """CE minus beta times the predictive entropy."""

    name = "confidence_penalty"
    Params = ConfidencePenaltyParams

    def forward(self, step: StepInputs) -> LossDict:
        p = self.params
        z = step.student_logits.float()
        log_p = F.log_softmax(z, dim=1)
        entropy = -(log_p.exp() * log_p).sum(dim=1)
        penalty = -entropy if p.threshold is None else (p.threshold - entropy).clamp(min=0)
        ce = cross_entropy(z, step.targets)
        mean_entropy = entropy.mean()
        return {"loss": ce + p.beta * penalty.mean(), "ce": ce.detach(), "entropy": mean_entropy.detach()}
