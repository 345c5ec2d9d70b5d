"""Plain cross-entropy with the hard label (the CE baseline).

L = CE(z, y) = -(1/N) sum_i log softmax(z_i)[y_i]
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.strategies.functional import cross_entropy
from harness.strategies.registry import LossDict, StepInputs, Strategy, register


@dataclass(kw_only=True)
class CEParams:
    """Cross-entropy takes no parameters."""


#: Default search space of `harness tune` (docs/tuning.md): fields of Params -> distribution; the
#: learning rate is added by the tuner.
SPACE: dict[str, dict[str, list[float]]] = {}


@register
class CrossEntropy(Strategy):
    """The plain cross-entropy baseline."""

    name = "ce"
    Params = CEParams

    def forward(self, step: StepInputs) -> LossDict:
        ce = cross_entropy(step.student_logits, step.targets)
        return {"loss": ce, "ce": ce.detach()}
