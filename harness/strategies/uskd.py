"""Universal self-knowledge distillation, USKD (Yang et al., "From knowledge distillation to
self-knowledge distillation: a unified approach with normalized loss and customized soft
labels", ICCV 2023): NKD's normalised loss with soft labels the student makes itself (no teacher).

With s = softmax(z) the student's prediction (detached where it is a target):

* target part: soft target p_i = s_{y_i}^2 + 1 - mean_batch(s_y^2);
  L_t = -(1/N) sum_i p_i log s_{y_i}
* weak supervision: a linear classifier on the pooled features of a middle stage (`stage`, by
  default the second-to-last, as the official `neck(fea_s[-2])`) gives weak logits w, trained
  against 0.9 onehot + 0.1/K: L_weak = -(mu/N) sum_i sum_k q_ik log softmax(w_i)_k
* non-target part: the classes are ranked by r = w^/(1 - w^_y) + s'/(1 - s'_y) (w^ = softmax(w));
  the c-th ranked class gets the Zipf weight 1/c; over the non-target classes these weights,
  normalised, are the soft labels z^: L_non = -(1/N) sum_i sum_{k != y_i} z^_ik log s^_ik with
  s^ the softmax of the non-target logits.

    L = ce_weight * CE(z, y) + alpha * L_t + beta * L_non + L_weak

The official code ranks with s' = log softmax(z) (`rank_scores: code`, the default: the reported
results come from it); the paper's description uses the probabilities (`rank_scores: paper`).
Defaults: the official CIFAR-100 configuration (configs/distillers/cifar100/res18_sd_cifar.py:
alpha 0.1, beta 0.1, mu 0.1; the class defaults for ImageNet are alpha 1, beta 0.1, mu 0.005).
The weak classifier is this strategy's own trainable module (optimised with the student).

Checked against yzd-v/cls_KD, mmcls/models/dis_losses/uskd.py and
mmcls/models/classifiers/distiller.py (how `fea_mid` is taken).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from harness.errors import RecipeError
from harness.schema import between, field, ge
from harness.strategies.functional import cross_entropy, non_target
from harness.strategies.registry import FeatureSpec, LossDict, SetupInfo, StepInputs, Strategy, register

RankScores = Literal["code", "paper"]


@dataclass(kw_only=True)
class USKDParams:
    """Weights of the three parts, the weak classifier's stage and label smoothing."""

    alpha: float = field(0.1, check=ge(0), doc="weight of the target part")
    beta: float = field(0.1, check=ge(0), doc="weight of the non-target part")
    mu: float = field(0.1, check=ge(0), doc="weight of the weak classifier's loss")
    ce_weight: float = field(1.0, check=ge(0), doc="weight of CE")
    stage: int = field(-2, doc="student feature stage of the weak classifier (timm feature_info index)")
    weak_smoothing: float = field(
        0.1, check=between(0, 1, hi_open=True), doc="label smoothing of the weak target (uniform)"
    )
    rank_scores: RankScores = field("code", doc="code: rank with log-probabilities; paper: probabilities")


def pooled(features: torch.Tensor) -> torch.Tensor:
    """(N, C) from (N, C, H, W) by global average pooling, or (N, C) as it is."""
    return features.float().mean(dim=(2, 3)) if features.dim() == 4 else features.float()


def zipf_soft_labels(rank: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(N, K - 1) soft labels: the class ranked c-th gets 1/c; the label's column dropped; rows
    normalised."""
    order = rank.argsort(dim=1, descending=True)
    position = order.argsort(dim=1)  # 0-based rank of each class
    weights = 1.0 / (position.float() + 1.0)
    nt = non_target(weights, targets)
    return nt / nt.sum(dim=1, keepdim=True)


def uskd_parts(
    logits: torch.Tensor,
    weak_logits: torch.Tensor,
    targets: torch.Tensor,
    weak_smoothing: float = 0.1,
    rank_scores: RankScores = "code",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(L_t, L_non, L_weak / mu): the unweighted USKD parts."""
    z, w = logits.float(), weak_logits.float()
    k = z.shape[1]
    y = targets[:, None]
    probs = F.softmax(z, dim=1)
    log_s = F.log_softmax(z, dim=1)
    s_y2 = probs.gather(1, y).detach() ** 2
    soft_target = s_y2 + 1.0 - s_y2.mean(dim=0, keepdim=True)
    target_part = -(soft_target * log_s.gather(1, y)).sum(dim=1).mean()

    q = F.one_hot(targets, k).float() * (1.0 - weak_smoothing) + weak_smoothing / k
    log_w = F.log_softmax(w, dim=1)
    weak = -(q * log_w).sum(dim=1).mean()

    with torch.no_grad():
        w_p = log_w.exp()
        s_score = log_s if rank_scores == "code" else probs
        rank = w_p / (1.0 - w_p.gather(1, y) + 1e-6) + s_score / (1.0 - s_score.gather(1, y) + 1e-6)
        labels = zipf_soft_labels(rank, targets)
    non_target_part = -(labels * F.log_softmax(non_target(z, targets), dim=1)).sum(dim=1).mean()
    return target_part, non_target_part, weak


#: Default search space of `harness tune` (docs/tuning.md): fields of Params -> distribution; the
#: learning rate is added by the tuner.
SPACE: dict[str, dict[str, list[float]]] = {"alpha": {"log": [0.01, 1.0]}, "beta": {"log": [0.01, 1.0]}}


@register
class USKD(Strategy):
    """USKD: teacher-free NKD with self-made soft labels and a weak classifier."""

    name = "uskd"
    Params = USKDParams

    @classmethod
    def declared_features(cls, params: USKDParams) -> FeatureSpec:
        return FeatureSpec(student=(params.stage,))

    def __init__(self, params: USKDParams) -> None:
        super().__init__(params)

    def setup(self, info: SetupInfo) -> None:
        shape = info.student_shapes.get(self.params.stage)
        if shape is None:
            raise RecipeError(f"strategy.params.stage: no student features for stage {self.params.stage}")
        self.weak_head = torch.nn.Linear(shape[0], info.num_classes)

    def forward(self, step: StepInputs) -> LossDict:
        p = self.params
        feats = pooled(step.student_features[p.stage])
        weak_logits = self.weak_head(feats)
        z, y = step.student_logits, step.targets
        target_part, non_target_part, weak = uskd_parts(z, weak_logits, y, p.weak_smoothing, p.rank_scores)
        ce = cross_entropy(z, y)
        loss = p.ce_weight * ce + p.alpha * target_part + p.beta * non_target_part + p.mu * weak
        return {
            "loss": loss,
            "ce": ce.detach(),
            "target": target_part.detach(),
            "non_target": non_target_part.detach(),
            "weak": weak.detach(),
        }
