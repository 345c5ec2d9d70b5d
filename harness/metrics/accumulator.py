"""`MetricAccumulator`: every metric of `harness.metrics.functions` from running sums over batches.

The sums are exact (equal to the functions on the concatenated outputs), so evaluation streams,
and under DDP they are all-reduced: count-weighted, never an average of averages. `compute()`
returns the values the runner copies into a row (`columns.METRIC_COLUMNS`).

May import: torch, `harness.metrics.functions` and `harness.metrics.columns`.
"""

from __future__ import annotations

import math

import torch

from harness.metrics.columns import COLUMNS, FLOAT
from harness.metrics.functions import EPS, bin_index, label_rank


class MetricAccumulator:
    """Running sums from which every metric of `harness.metrics.functions` is computed exactly.

    Sums are float64 tensors on `device`; `tensors()`/`load_tensors()` expose them so a caller
    can all-reduce them across ranks (SUM) before `compute()`.
    """

    FIELDS = ("n", "correct1", "correct5", "nll", "entropy", "max_prob", "n_ref", "agree", "kl_ref")

    def __init__(self, num_classes: int, n_bins: int = 15, device: torch.device | str = "cpu") -> None:
        self.num_classes = num_classes
        self.n_bins = n_bins
        f64 = {"dtype": torch.float64, "device": device}
        self.scalars = torch.zeros(len(self.FIELDS), **f64)
        self.bin_count = torch.zeros(n_bins, **f64)
        self.bin_conf = torch.zeros(n_bins, **f64)
        self.bin_correct = torch.zeros(n_bins, **f64)
        self.class_count = torch.zeros(num_classes, **f64)
        self.class_prob_sum = torch.zeros(num_classes, num_classes, **f64)
        self.class_sq_norm = torch.zeros(num_classes, **f64)

    @torch.no_grad()
    def update(
        self, logits: torch.Tensor, targets: torch.Tensor, reference: torch.Tensor | None = None
    ) -> None:
        """Add a batch of logits (N, K) and labels (N,); with a teacher's `reference` logits for
        the same images, the fidelity sums too (Stanton et al. 2021: top-1 agreement and
        KL(p_teacher || p_student) at T = 1)."""
        logp = torch.log_softmax(logits.double(), dim=1)
        p = logp.exp()
        conf = p.max(dim=1).values
        rank = label_rank(logits, targets)
        correct = (rank == 0).double()
        top5 = (rank < 5).double()
        # -log max(p_y, EPS), as negative_log_likelihood: the floor caps the loss at -log(EPS)
        nll = (-logp.gather(1, targets[:, None]).squeeze(1)).clamp_max(-math.log(EPS))
        entropy = -(p * logp).nan_to_num(0.0).sum(dim=1)
        self.scalars += torch.stack(
            [
                torch.tensor(float(len(targets)), dtype=torch.float64, device=p.device),
                correct.sum(),
                top5.sum(),
                nll.sum(),
                entropy.sum(),
                conf.sum(),
                *self._fidelity(logp, reference, len(targets)),
            ]
        )
        bins = bin_index(conf, self.n_bins)
        self.bin_count.index_add_(0, bins, torch.ones_like(conf))
        self.bin_conf.index_add_(0, bins, conf)
        self.bin_correct.index_add_(0, bins, correct)
        self.class_count.index_add_(0, targets, torch.ones_like(conf))
        self.class_prob_sum.index_add_(0, targets, p)
        self.class_sq_norm.index_add_(0, targets, (p * p).sum(dim=1))

    @staticmethod
    def _fidelity(logp: torch.Tensor, reference: torch.Tensor | None, n: int) -> list[torch.Tensor]:
        """(samples, agreeing samples, summed KL(teacher || student)) of a batch, zeros without
        a reference. Agreement compares the two argmaxes (the lowest class on a tie, as
        `torch.argmax`); KL = sum_k p_t (log p_t - log p_s), with 0 log 0 = 0."""
        if reference is None:
            return [logp.new_zeros(())] * 3
        if reference.shape != logp.shape:
            raise ValueError(
                f"teacher reference logits {tuple(reference.shape)} for a batch of {tuple(logp.shape)}"
            )
        ref_logp = torch.log_softmax(reference.double(), dim=1)
        agree = (ref_logp.argmax(dim=1) == logp.argmax(dim=1)).double().sum()
        kl = (ref_logp.exp() * (ref_logp - logp)).nan_to_num(0.0).sum()
        return [logp.new_tensor(float(n)), agree, kl]

    def tensors(self) -> list[torch.Tensor]:
        """The running sums, in a fixed order (for all-reduce)."""
        return [
            self.scalars,
            self.bin_count,
            self.bin_conf,
            self.bin_correct,
            self.class_count,
            self.class_prob_sum,
            self.class_sq_norm,
        ]

    def compute(self) -> dict[str, float]:
        """top1/top5 (percent), nll, ece, entropy, max_prob, stability, n, and the fidelity
        measures (None where no reference was given)."""
        s = dict(zip(self.FIELDS, self.scalars.tolist(), strict=True))
        n = s["n"]
        if n == 0:
            empty = {c.name: math.nan for c in COLUMNS if c.metric and c.kind == FLOAT}
            return empty | {"n": 0, "fidelity_agreement": None, "fidelity_kl": None}
        present = self.class_count > 0
        counts = self.class_count[present]
        mean_p = self.class_prob_sum[present] / counts[:, None]
        # mean ||p_i - m_c||^2 = E||p||^2 - ||m_c||^2 within each class
        variance = self.class_sq_norm[present] / counts - (mean_p * mean_p).sum(dim=1)
        return {
            "top1": 100.0 * s["correct1"] / n,
            "top5": 100.0 * s["correct5"] / n,
            "nll": s["nll"] / n,
            "ece": float((self.bin_correct - self.bin_conf).abs().sum() / n),
            "entropy": s["entropy"] / n,
            "max_prob": s["max_prob"] / n,
            "stability": float(1.0 - variance.clamp_min(0).mean()),
            "fidelity_agreement": 100.0 * s["agree"] / s["n_ref"] if s["n_ref"] else None,
            "fidelity_kl": s["kl_ref"] / s["n_ref"] if s["n_ref"] else None,
            "n": int(n),
            "reliability_count": self.bin_count.tolist(),
            "reliability_confidence": _safe_div(self.bin_conf, self.bin_count),
            "reliability_accuracy": _safe_div(self.bin_correct, self.bin_count),
        }


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> list[float | None]:
    """Per-bin means; None for empty bins."""
    return [None if d == 0 else n / d for n, d in zip(num.tolist(), den.tolist(), strict=True)]
