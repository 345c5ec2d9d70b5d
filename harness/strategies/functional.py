"""Loss pieces shared by the strategies (pure functions on logits and probabilities).

Notation follows `methods.md`: z student logits (N, K), y labels (N,), KL(p || q) with p the
target. All losses are computed in float32, whatever the autocast dtype of the logits.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

KLReduction = Literal["batchmean", "legacy_mean"]


def kl_divergence(
    target_probs: torch.Tensor, student_log_probs: torch.Tensor, reduction: KLReduction
) -> torch.Tensor:
    """KL(p || q) summed over classes and batch, divided by N (`batchmean`) or N*K (`legacy_mean`).

    `legacy_mean` is what `nn.KLDivLoss(reduction='mean')` computes, as the official Tf-KD code
    does: the term is K times smaller than `batchmean`, and its hyper-parameters were tuned so.
    Terms with p = 0 contribute 0 (x log x -> 0).
    """
    total = F.kl_div(student_log_probs.float(), target_probs.float(), reduction="sum")
    n, k = student_log_probs.shape
    return total / (n if reduction == "batchmean" else n * k)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy with the hard labels: -(1/N) sum_i log softmax(z_i)[y_i]."""
    return F.cross_entropy(logits.float(), targets)


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy with soft targets: -(1/N) sum_i sum_k q_ik log softmax(z_i)_k."""
    return -(target_probs.float() * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()


def standardize(logits: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Z-score each sample's logits (Sun et al., CVPR 2024): (z - mean(z)) / (eps + std(z)).

    The standard deviation is the unbiased one (divides by K - 1) with eps added to it, as in
    sunshangquan/logit-standardization-KD (mdistiller/distillers/KD.py, `normalize`).
    """
    z = logits.float()
    return (z - z.mean(dim=1, keepdim=True)) / (eps + z.std(dim=1, keepdim=True))


def non_target(values: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The (N, K - 1) entries of `values` (N, K) outside each row's label, in class order."""
    n, k = values.shape
    keep = torch.ones_like(values, dtype=torch.bool).scatter_(1, targets[:, None], False)
    return values[keep].reshape(n, k - 1)
