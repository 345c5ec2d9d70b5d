"""Weighted transformed teacher matching, WTTM (Zheng and Yang, "Knowledge distillation based on
transformed teacher matching", ICLR 2024).

TTM with each sample weighted by the power sum of its teacher probabilities, U_l(t_i) =
sum_k t_ik^l (large for a flat teacher prediction, 1 for a one-hot one when l < 1):

    L = ce_weight * CE(z, y) + beta * (1/N) sum_i U_l(t_i) KL(t~_i || softmax(z_i)),
    t~_ik = t_ik^l / U_l(t_i)

Defaults as `ttm` (l 0.1, beta 45, CE weight 1; tuned per pair in the paper).

Checked against zkxufo/TTM, distiller_zoo/wttm.py.
"""

from __future__ import annotations

from harness.strategies.registry import LossDict, StepInputs, Strategy, register
from harness.strategies.ttm import TTMParams, ttm_loss

#: Default search space of `harness tune` (docs/tuning.md): fields of Params -> distribution; the
#: learning rate is added by the tuner.
SPACE: dict[str, dict[str, list[float]]] = {"exponent": {"float": [0.05, 0.5]}, "beta": {"log": [5.0, 100.0]}}


@register
class WeightedTransformedTeacherMatching(Strategy):
    """WTTM: TTM with samples weighted by the teacher's power sum."""

    name = "wttm"
    Params = TTMParams
    needs_teacher = True

    def forward(self, step: StepInputs) -> LossDict:
        p = self.params
        t = step.teacher(self.name)
        return ttm_loss(step.student_logits, step.targets, t, p.exponent, p.beta, p.ce_weight, True)
