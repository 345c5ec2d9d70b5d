"""DIST (Huang et al., "Knowledge distillation from a stronger teacher", NeurIPS 2022).

Match relations instead of exact probabilities. With P = softmax(z / T) (N x K) for student (s)
and teacher (t) and rho the Pearson correlation of two vectors:

    inter = 1 - (1/N) sum_i rho(P^s_i, P^t_i)        (each sample's class distribution)
    intra = 1 - (1/K) sum_k rho(P^s_:k, P^t_:k)      (each class's distribution over the batch)
    L = ce_weight * CE(z, y) + T^2 * (beta * inter + gamma * intra)

rho(a, b) = <a - mean a, b - mean b> / (||a - mean a|| ||b - mean b|| + eps), eps 1e-8.
Defaults: the official CIFAR-100 setting (configs/strategies/distill/dist_cifar.yaml: `dist_t4`,
CE weight 1, KD weight 2 on beta = gamma = 1, so beta = gamma = 2 here, T 4); the paper's
ImageNet setting is beta = gamma = 1, T = 1.

Checked against hunto/image_classification_sota (the classification code of hunto/DIST_KD),
lib/models/losses/dist_kd.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from harness.schema import field, ge, gt
from harness.strategies.functional import cross_entropy
from harness.strategies.registry import LossDict, StepInputs, Strategy, register


@dataclass(kw_only=True)
class DISTParams:
    """Weights of the inter- and intra-class relations, and the temperature."""

    beta: float = field(2.0, check=ge(0), doc="weight of the inter-class relation (per sample)")
    gamma: float = field(2.0, check=ge(0), doc="weight of the intra-class relation (per class)")
    temperature: float = field(4.0, check=gt(0), doc="softmax temperature T (also T^2 on both terms)")
    ce_weight: float = field(1.0, check=ge(0), doc="weight of CE")
    eps: float = field(1e-8, check=gt(0), doc="added to the norms' product in the correlation")


def pearson_rows(a: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    """Pearson correlation of each row of `a` with the same row of `b`: shape (rows,)."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def dist_relations(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float, eps: float = 1e-8
) -> tuple[torch.Tensor, torch.Tensor]:
    """(inter, intra) relation losses, before T^2 and the weights."""
    p_s = F.softmax(student_logits.float() / temperature, dim=1)
    p_t = F.softmax(teacher_logits.detach().float() / temperature, dim=1)
    inter = 1.0 - pearson_rows(p_s, p_t, eps).mean()
    intra = 1.0 - pearson_rows(p_s.t(), p_t.t(), eps).mean()
    return inter, intra


#: Default search space of `harness tune` (docs/tuning.md): fields of Params -> distribution; the
#: learning rate is added by the tuner.
SPACE: dict[str, dict[str, list[float]]] = {
    "beta": {"float": [0.5, 4.0]},
    "gamma": {"float": [0.5, 4.0]},
    "temperature": {"log": [1.0, 8.0]},
}


@register
class DIST(Strategy):
    """DIST: inter- and intra-class Pearson relations of the softened predictions."""

    name = "dist"
    Params = DISTParams
    needs_teacher = True

    def forward(self, step: StepInputs) -> LossDict:
        p = self.params
        z = step.student_logits
        inter, intra = dist_relations(z, step.teacher(self.name), p.temperature, p.eps)
        ce = cross_entropy(z, step.targets)
        t2 = p.temperature**2
        loss = p.ce_weight * ce + t2 * (p.beta * inter + p.gamma * intra)
        return {"loss": loss, "ce": ce.detach(), "inter": inter.detach(), "intra": intra.detach()}
