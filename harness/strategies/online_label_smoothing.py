"""Online label smoothing (Zhang et al., "Delving deep into label smoothing", IEEE TIP 2021).

A per-class soft-label table S (K x K) replaces label smoothing's fixed uniform mass. During
epoch e the model's own softmax outputs on the training samples it classifies correctly are
summed per class; at the epoch's end S^e[c] = mean of those outputs for class c (1/K for a class
with no correct prediction), and epoch e + 1 trains against it:

    L = alpha * CE(z, y) + (1 - alpha) * ( -(1/N) sum_i sum_k S^{e-1}[y_i, k] log softmax(z_i)_k )

Checked against zhangchbin/OnlineLabelSmoothing, cifar/scripts/train_cifar_all_methods.py
(`update_loss_lams`, `soft_cross_entropy`, the table update after each epoch): alpha 0.5, a table
of zeros before the first update (the first epoch trains on alpha * CE alone). The fine-grained
code (fine-grained/solver.py) starts from a uniform table instead: `initial: uniform`.

State: the table and this epoch's sums and counts are buffers, saved in checkpoints; the sums
and counts are summed across DDP ranks at the epoch's end, so every rank gets the same table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from harness.schema import between, field
from harness.strategies.functional import cross_entropy
from harness.strategies.registry import LossDict, Reduce, SetupInfo, StepInputs, Strategy, register

Initial = Literal["zeros", "uniform"]


@dataclass(kw_only=True)
class OnlineLabelSmoothingParams:
    """Weight of the hard label and the table before the first epoch's update."""

    alpha: float = field(0.5, check=between(0, 1), doc="weight of CE; (1-alpha) on the soft table term")
    initial: Initial = field(
        "zeros", doc="table before epoch 1's update: zeros (CIFAR code) or uniform 1/K (fine-grained code)"
    )


def table_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """-(1/N) sum_i sum_k S[y_i, k] log softmax(z_i)_k."""
    return -(table[targets] * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()


def correct_sums(
    logits: torch.Tensor, targets: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class sums of softmax outputs over the correctly classified samples, and their counts."""
    probs = F.softmax(logits.detach().float(), dim=1)
    correct = (probs.argmax(dim=1) == targets).float()
    onehot = F.one_hot(targets, num_classes).float() * correct[:, None]
    return onehot.t() @ probs, onehot.sum(dim=0)


#: Default search space of `harness tune` (docs/tuning.md): fields of Params -> distribution; the
#: learning rate is added by the tuner.
SPACE: dict[str, dict[str, list[float]]] = {"alpha": {"float": [0.1, 0.9]}}


@register
class OnlineLabelSmoothing(Strategy):
    """Label smoothing with per-class soft labels from the model's previous-epoch predictions."""

    name = "online_label_smoothing"
    Params = OnlineLabelSmoothingParams
    partial_sums = ("epoch_sums", "epoch_counts")

    def setup(self, info: SetupInfo) -> None:
        k = info.num_classes
        start = 0.0 if self.params.initial == "zeros" else 1.0 / k
        self.register_buffer("table", torch.full((k, k), start))
        self.register_buffer("epoch_sums", torch.zeros(k, k))
        self.register_buffer("epoch_counts", torch.zeros(k))

    def forward(self, step: StepInputs) -> LossDict:
        if not hasattr(self, "table"):
            self.setup(SetupInfo(num_classes=step.num_classes))
            self.to(step.student_logits.device)
        z, y = step.student_logits, step.targets
        sums, counts = correct_sums(z, y, step.num_classes)
        self.epoch_sums += sums
        self.epoch_counts += counts
        ce = cross_entropy(z, y)
        soft = table_cross_entropy(z, y, self.table)
        loss = self.params.alpha * ce + (1.0 - self.params.alpha) * soft
        return {"loss": loss, "ce": ce.detach(), "soft": soft.detach()}

    def end_epoch(self, reduce: Reduce) -> None:
        reduce([self.epoch_sums, self.epoch_counts])
        k = self.table.shape[0]
        seen = self.epoch_counts > 0
        mean = self.epoch_sums / self.epoch_counts.clamp(min=1)[:, None]
        self.table.copy_(torch.where(seen[:, None], mean, torch.full_like(mean, 1.0 / k)))
        self.epoch_sums.zero_()
        self.epoch_counts.zero_()
