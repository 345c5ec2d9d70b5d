"""Contrastive representation distillation (Tian et al., "Contrastive representation distillation",
ICLR 2020).

The penultimate embeddings of student and teacher go through linear heads to `feat_dim` and are
L2-normalised (v_s, v_t). Two memory banks hold one vector per training sample (by its index in
the training split): m_s of student embeddings, m_t of teacher ones. For a batch sample i with
index y_i, the positive is its own slot and `negatives` K slots are drawn uniformly at random from
all n samples; each embedding is scored against the other model's bank,

    h(v, m_j) = exp(<v, m_j> / tau) / Z           (Z fixed at the first step: mean score x n)

and each side is a noise-contrastive estimate with noise probability Pn = 1 / n:

    NCE(h) = -(1/B) sum_i [ log(h_i0 / (h_i0 + K Pn + 1e-7)) + sum_{j>0} log(K Pn / (h_ij + K Pn + 1e-7)) ]

    L = ce_weight * CE(z, y) + weight * (NCE(h(v_s, m_t)) + NCE(h(v_t, m_s)))

After the scores, each batch slot of the banks moves toward the new embedding with `momentum`
0.5 and is renormalised. Defaults are the paper's CIFAR-100 setting and RepDistiller's / mdistiller's
(feat_dim 128, K 16384, tau 0.07, momentum 0.5, weight 0.8, no KD term).

Checked against megvii-research/mdistiller, mdistiller/distillers/CRD.py (`Embed`,
`ContrastMemory`, `ContrastLoss`; the same as RepDistiller's crd/). Deviation: RepDistiller's
`--mode exact` data set draws the K negatives from samples of other classes; here, as
`ContrastMemory` does when given no contrast indices, they are drawn uniformly over all samples
(with replacement), from torch's global generator, so a resumed run draws the same ones. Under
DDP every rank updates its banks with the embeddings and indices of all ranks (gathered through
the all-reduce-sum the runner hands in `SetupInfo.reduce`), so the banks stay identical, and Z is
the ranks' mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import RecipeError
from harness.schema import between, field, ge, gt
from harness.strategies.functional import cross_entropy
from harness.strategies.registry import (
    FeatureSpec,
    LossDict,
    Reduce,
    SetupInfo,
    StepInputs,
    Strategy,
    alone,
    register,
)

PRE_LOGITS = "pre_logits"


@dataclass(kw_only=True)
class CRDParams:
    """Heads, memory and NCE settings of CRD."""

    feat_dim: int = field(128, check=ge(1), doc="dimension of the projection heads' output")
    negatives: int = field(16384, check=ge(1), doc="negatives K drawn from the memory per sample")
    nce_temperature: float = field(0.07, check=gt(0), doc="temperature tau of the scores")
    momentum: float = field(0.5, check=between(0, 1), doc="memory update: m <- momentum m + (1 - momentum) v")
    weight: float = field(0.8, check=ge(0), doc="weight of the two NCE terms (RepDistiller -b 0.8)")
    ce_weight: float = field(1.0, check=ge(0), doc="weight of CE")


class Embed(nn.Module):
    """Linear head to feat_dim, then L2 normalisation (mdistiller's `Embed`)."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x.reshape(len(x), -1))
        return x / x.pow(2).sum(1, keepdim=True).sqrt()


def nce_loss(scores: torch.Tensor, train_size: int) -> torch.Tensor:
    """mdistiller's ContrastLoss on (B, K+1) scores, the positive in column 0."""
    eps = 1e-7
    m = scores.shape[1] - 1
    noise = m / float(train_size)
    log_d1 = torch.log(scores[:, 0] / (scores[:, 0] + noise + eps))
    log_d0 = torch.log(noise / (scores[:, 1:] + noise + eps))
    return -(log_d1.sum() + log_d0.sum()) / scores.shape[0]


def contrast_scores(v: torch.Tensor, memory: torch.Tensor, idx: torch.Tensor, tau: float) -> torch.Tensor:
    """exp(<v_i, memory[idx_ij]> / tau), shape (B, K+1); the memory carries no gradient."""
    weights = memory[idx.reshape(-1)].detach().reshape(idx.shape[0], idx.shape[1], -1)
    return torch.exp(torch.bmm(weights, v.unsqueeze(2)).squeeze(2) / tau)


def gather(x: torch.Tensor, rank: int, world_size: int, reduce: Reduce) -> torch.Tensor:
    """`x` of every rank, concatenated on dim 0 in rank order (ranks may hold different batch
    sizes), through the all-reduce-sum `reduce`: each rank fills its own rows of a zero tensor."""
    if world_size == 1:
        return x
    sizes = torch.zeros(world_size, dtype=torch.int64, device=x.device)
    sizes[rank] = len(x)
    reduce([sizes])
    start = int(sizes[:rank].sum())
    out = torch.zeros((int(sizes.sum()), *x.shape[1:]), device=x.device, dtype=x.dtype)
    out[start : start + len(x)] = x
    reduce([out])
    return out


def mean_over_ranks(x: torch.Tensor, world_size: int, reduce: Reduce) -> torch.Tensor:
    """The ranks' mean of `x` (a copy; `x` itself alone)."""
    if world_size > 1:
        x = x.clone()
        reduce([x])
        x /= world_size
    return x


#: Default search space of `harness tune` (docs/tuning.md): fields of Params -> distribution; the
#: learning rate is added by the tuner.
SPACE: dict[str, dict[str, list[float]]] = {
    "weight": {"log": [0.1, 2.0]},
    "nce_temperature": {"log": [0.03, 0.3]},
}


@register
class ContrastiveRepresentationDistillation(Strategy):
    """CRD with projection heads and memory banks over the training samples."""

    name = "crd"
    Params = CRDParams
    needs_teacher = True
    example: ClassVar[dict[str, Any]] = {"negatives": 16}  # a small bank for the contract test

    @classmethod
    def declared_features(cls, params: CRDParams) -> FeatureSpec:
        return FeatureSpec(student=(PRE_LOGITS,), teacher=(PRE_LOGITS,))

    def __init__(self, params: CRDParams) -> None:
        super().__init__(params)
        self.rank, self.world_size, self.reduce = 0, 1, alone

    def setup(self, info: SetupInfo) -> None:
        if info.train_size < 1:
            raise RecipeError("strategy: crd needs the size of the training split for its memory banks")
        d = self.params.feat_dim
        self.train_size = info.train_size
        self.rank, self.world_size, self.reduce = info.rank, info.world_size, info.reduce
        self.embed_s = Embed(math.prod(info.student_shapes[PRE_LOGITS]), d)
        self.embed_t = Embed(math.prod(info.teacher_shapes[PRE_LOGITS]), d)
        stdv = 1.0 / math.sqrt(d / 3)
        self.register_buffer("memory_s", torch.rand(info.train_size, d).mul_(2 * stdv).add_(-stdv))
        self.register_buffer("memory_t", torch.rand(info.train_size, d).mul_(2 * stdv).add_(-stdv))
        self.register_buffer("z", torch.full((2,), -1.0))  # normalisation constants (student, teacher side)

    def contrast_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, K+1) memory slots: each sample's own index, then K uniform draws (global generator)."""
        idx = torch.randint(
            0, self.train_size, (len(indices), self.params.negatives + 1), device=indices.device
        )
        idx[:, 0] = indices
        return idx

    def forward(self, step: StepInputs) -> LossDict:
        step.teacher(self.name)
        if step.indices is None:
            raise RecipeError(
                "strategy: crd needs the batch's sample indices, which this data loader does not give"
            )
        p = self.params
        indices = step.indices.long()
        v_s = self.embed_s(step.student_features[PRE_LOGITS].float())
        v_t = self.embed_t(step.teacher_features[PRE_LOGITS].detach().float())
        idx = self.contrast_indices(indices)
        h_s = contrast_scores(v_s, self.memory_t, idx, p.nce_temperature)  # student vs teacher memory
        h_t = contrast_scores(v_t, self.memory_s, idx, p.nce_temperature)  # teacher vs student memory
        if self.z[0] < 0:  # set once, at the first step (mdistiller: mean score x n)
            z = torch.stack([h_s.detach().mean(), h_t.detach().mean()]) * self.train_size
            self.z.copy_(mean_over_ranks(z, self.world_size, self.reduce))
        h_s, h_t = h_s / self.z[0], h_t / self.z[1]
        nce_s, nce_t = nce_loss(h_s, self.train_size), nce_loss(h_t, self.train_size)
        self._update_memory(v_s.detach(), v_t.detach(), indices)
        ce = cross_entropy(step.student_logits, step.targets)
        loss = p.ce_weight * ce + p.weight * (nce_s + nce_t)
        return {"loss": loss, "ce": ce.detach(), "nce_student": nce_s.detach(), "nce_teacher": nce_t.detach()}

    @torch.no_grad()
    def _update_memory(self, v_s: torch.Tensor, v_t: torch.Tensor, indices: torch.Tensor) -> None:
        v_s, v_t, indices = (gather(x, self.rank, self.world_size, self.reduce) for x in (v_s, v_t, indices))
        m = self.params.momentum
        for memory, v in ((self.memory_s, v_s), (self.memory_t, v_t)):
            slot = memory[indices] * m + v * (1 - m)
            memory.index_copy_(0, indices, F.normalize(slot, dim=1, eps=0.0))
