"""Relational KD (Park et al., "Relational knowledge distillation", CVPR 2019).

On the penultimate embeddings (the pooled features the classifier reads) of a batch, the student
matches the teacher's pairwise distances, each normalised by the batch's mean distance mu,

    L_D = mean_{i,j} huber(||s_i - s_j|| / mu_s, ||t_i - t_j|| / mu_t)

and the angles of every triplet, cos of the angle at j between i and k,

    L_A = mean_{i,j,k} huber(<e^s_ij, e^s_kj>, <e^t_ij, e^t_kj>),   e_ij = (x_i - x_j) / ||x_i - x_j||

    L = ce_weight * CE(z, y) + distance_weight * L_D + angle_weight * L_A

huber is smooth L1 with threshold 1. Defaults 25 and 50, the distances clamped at eps 1e-12 and
not squared, the diagonal zero and mu the mean of the positive distances: mdistiller's
`rkd_loss` (mdistiller/distillers/RKD.py; the same as lenscloth/RKD's metric/loss.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from harness.schema import field, ge, gt
from harness.strategies.functional import cross_entropy
from harness.strategies.registry import FeatureSpec, LossDict, StepInputs, Strategy, register

PRE_LOGITS = "pre_logits"


@dataclass(kw_only=True)
class RKDParams:
    """Weights of the distance and angle terms."""

    distance_weight: float = field(25.0, check=ge(0), doc="weight of the distance term")
    angle_weight: float = field(50.0, check=ge(0), doc="weight of the angle term")
    ce_weight: float = field(1.0, check=ge(0), doc="weight of CE")
    eps: float = field(1e-12, check=gt(0), doc="squared distances are clamped at eps")
    squared: bool = field(False, doc="use squared distances")


def pairwise_distances(e: torch.Tensor, squared: bool, eps: float) -> torch.Tensor:
    """(N, N) Euclidean distances of the rows of `e` (clamped at eps before the root), zero diagonal."""
    sq = e.pow(2).sum(dim=1)
    d = (sq[:, None] + sq[None, :] - 2 * e @ e.t()).clamp(min=eps)
    if not squared:
        d = d.sqrt()
    return d * (1 - torch.eye(len(e), device=e.device, dtype=e.dtype))


def normalised_distances(e: torch.Tensor, squared: bool, eps: float) -> torch.Tensor:
    d = pairwise_distances(e, squared, eps)
    return d / d[d > 0].mean()


def angles(e: torch.Tensor) -> torch.Tensor:
    """(N^3,) cosines <e_ij, e_kj> of the unit difference vectors, for every (j, i, k)."""
    diff = F.normalize(e[None, :, :] - e[:, None, :], p=2, dim=2)
    return torch.bmm(diff, diff.transpose(1, 2)).reshape(-1)


def rkd_terms(
    student: torch.Tensor, teacher: torch.Tensor, squared: bool, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_D, L_A) of flattened embeddings; the teacher's side carries no gradient."""
    s = student.float().reshape(len(student), -1)
    t = teacher.detach().float().reshape(len(teacher), -1)
    with torch.no_grad():
        t_d, t_a = normalised_distances(t, squared, eps), angles(t)
    distance = F.smooth_l1_loss(normalised_distances(s, squared, eps), t_d)
    angle = F.smooth_l1_loss(angles(s), t_a)
    return distance, angle


#: Default search space of `harness tune` (docs/tuning.md): fields of Params -> distribution; the
#: learning rate is added by the tuner.
SPACE: dict[str, dict[str, list[float]]] = {
    "distance_weight": {"log": [5.0, 100.0]},
    "angle_weight": {"log": [10.0, 200.0]},
}


@register
class RelationalKD(Strategy):
    """RKD distance and angle losses on the penultimate embeddings."""

    name = "rkd"
    Params = RKDParams
    needs_teacher = True

    @classmethod
    def declared_features(cls, params: RKDParams) -> FeatureSpec:
        return FeatureSpec(student=(PRE_LOGITS,), teacher=(PRE_LOGITS,))

    def __init__(self, params: RKDParams) -> None:
        super().__init__(params)

    def forward(self, step: StepInputs) -> LossDict:
        step.teacher(self.name)
        p = self.params
        ce = cross_entropy(step.student_logits, step.targets)
        dist, ang = rkd_terms(
            step.student_features[PRE_LOGITS], step.teacher_features[PRE_LOGITS], p.squared, p.eps
        )
        loss = p.ce_weight * ce + p.distance_weight * dist + p.angle_weight * ang
        return {"loss": loss, "ce": ce.detach(), "distance": dist.detach(), "angle": ang.detach()}
