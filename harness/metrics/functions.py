"""Accuracy and confidence metrics: the public functions, pure and stateless.

Public functions (imported by tools outside the project) take torch tensors: probabilities or
logits shaped (N, K) and int64 labels (N,), and return Python floats:

* `topk_accuracy(logits, targets, k)`: percent of samples whose label is among the top k.
  Ties: classes are ranked by logit, equal logits by class index (the lower index first, as
  `argmax` does), so the label's rank is #{j: z_j > z_y} + #{j < y: z_j = z_y}; it is in the top
  k when its rank is below k. The same rule decides top-1, top-5 and the correctness of ECE bins,
  so top-1 never exceeds top-5, and it does not depend on the device's `topk` order among ties.
* `expected_calibration_error(probs, targets, n_bins=15)`: equal-width bins over the max
  probability, ECE = sum_b (n_b / N) |acc_b - conf_b| (a fraction; Guo et al. 2017).
* `mean_entropy(probs)`: mean of H(p) = -sum_k p_k log p_k, in nats (Sultan 2023).
* `mean_max_prob(probs)`: mean of max_k p_k.
* `stability(probs, targets)`: Shen et al. 2021,
  S = 1 - (1/K') sum_c (1/n_c) sum_{i in c} ||p_i - mean_{j in c} p_j||^2, where the sum and K'
  run over the K' classes present in the evaluation set. The paper divides by K, the number of
  classes; the two agree when every class is present (all the full evaluation splits). On a
  subset that misses classes, an absent class has no samples and so no variance: dividing by K
  would count it as variance 0 and raise S with the number of missing classes, not with the model.
* `negative_log_likelihood(probs, targets)`: mean of -log max(p_y, 1e-12) (nats): a confidently
  wrong sample costs at most -log(1e-12) = 27.63.

`MetricAccumulator` (harness/metrics/accumulator.py) computes all of them from running sums over
batches (exactly equal to the functions on the concatenated outputs) so that evaluation streams,
and under DDP the sums are all-reduced: count-weighted, never an average of averages. Given a
teacher's logits for the same images, it also measures the student's fidelity to its teacher
(Stanton et al., NeurIPS 2021, "Does knowledge distillation really work?"), at T = 1:

* `fidelity_agreement`: 100 * mean 1[argmax_k p_s,k = argmax_k p_t,k] (percent; argmax takes
  the lowest class on a tie);
* `fidelity_kl`: mean KL(p_t || p_s) = mean sum_k p_t,k (log p_t,k - log p_s,k), nats (0 log 0 = 0).

A run computes every metric on the evaluation split and, with `data.holdout`, on the held-out
split of the training split (the `holdout_*` columns), after every evaluated epoch; the teacher's
logits are kept from its own pass over each split when the run starts.
"""

from __future__ import annotations

import torch

EPS = 1e-12


def label_rank(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Rank (0 = first) of each row's label among its K scores, equal scores ordered by class index.

    rank = #{j: s_j > s_y} + #{j < y: s_j = s_y}: the label is in the top k iff rank < k. One
    deterministic rule for top-1, top-k and ECE (torch's `topk` orders ties arbitrarily).
    """
    label_score = scores.gather(1, targets[:, None])
    before = torch.arange(scores.shape[1], device=scores.device)[None, :] < targets[:, None]
    return (scores > label_score).sum(dim=1) + ((scores == label_score) & before).sum(dim=1)


def topk_accuracy(logits: torch.Tensor, targets: torch.Tensor, k: int = 1) -> float:
    """Percent of rows whose label is among the k largest logits (ties: lower class index first)."""
    return float((label_rank(logits, targets) < k).double().mean() * 100.0)


def bin_index(confidence: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Bin b holds confidences in (b/n, (b+1)/n]; a confidence of 0 falls in bin 0."""
    return (torch.ceil(confidence.double() * n_bins).long() - 1).clamp(0, n_bins - 1)


def expected_calibration_error(probs: torch.Tensor, targets: torch.Tensor, n_bins: int = 15) -> float:
    """ECE with `n_bins` equal-width bins over the max probability (a fraction in [0, 1])."""
    conf = probs.double().max(dim=1).values
    correct = (label_rank(probs, targets) == 0).double()
    bins = bin_index(conf, n_bins)
    n = conf.numel()
    conf_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, bins, conf)
    acc_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, bins, correct)
    return float((acc_sum - conf_sum).abs().sum() / n)


def mean_entropy(probs: torch.Tensor) -> float:
    """Mean predictive entropy -sum_k p_k log p_k (nats); 0 log 0 = 0."""
    p = probs.double()
    return float(-(torch.xlogy(p, p)).sum(dim=1).mean())


def mean_max_prob(probs: torch.Tensor) -> float:
    """Mean of the largest class probability."""
    return float(probs.double().max(dim=1).values.mean())


def negative_log_likelihood(probs: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean -log p_y (nats), probabilities floored at 1e-12."""
    p = probs.double().gather(1, targets[:, None]).clamp_min(EPS)
    return float(-p.log().mean())


def stability(probs: torch.Tensor, targets: torch.Tensor) -> float:
    """Shen et al.'s S = 1 - mean over the classes present of the mean squared distance to the
    class mean (the paper's 1/K over all K classes: equal when every class is present)."""
    p = probs.double()
    variances = []
    for c in targets.unique():
        pc = p[targets == c]
        variances.append(((pc - pc.mean(dim=0)) ** 2).sum(dim=1).mean())
    return float(1.0 - torch.stack(variances).mean())
