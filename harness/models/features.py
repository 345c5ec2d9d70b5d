"""Intermediate features of any timm model, from the same forward pass as its logits.

A strategy declares feature stages (`FeatureSpec`): indices into the model's timm
`feature_info` (negative from the end, as timm's `forward_intermediates` takes them) or
`"pre_logits"`, the pooled embedding the classifier reads. `forward_with_features` runs the
model once through timm's `forward_intermediates`, then its head, and returns the logits with a
dict stage -> tensor: for the student, the logits and the features belong to one autograd graph
(no second forward). `WithFeatures` wraps a student so that DDP and `torch.compile` see that
single forward as the module's `forward`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from harness.errors import RecipeError
from harness.strategies.registry import Stage

PRE_LOGITS = "pre_logits"


def num_stages(model: torch.nn.Module) -> int:
    """How many feature stages timm reports for `model` (0 when it has no `feature_info`)."""
    info = getattr(model, "feature_info", None)
    return len(info) if info else 0


def resolve_stages(
    model: torch.nn.Module, stages: Sequence[Stage], arch: str, path: str, role: str
) -> list[int]:
    """The non-negative `feature_info` indices of `stages` (pre_logits aside), checked against
    the architecture: a stage it does not have is a RecipeError naming `path` and the role."""
    n = num_stages(model)
    wanted = [s for s in stages if s != PRE_LOGITS]
    if wanted and (n == 0 or not hasattr(model, "forward_intermediates")):
        raise RecipeError(f"{path}: {role} {arch} exposes no feature stages (timm forward_intermediates)")
    out = []
    for s in wanted:
        assert isinstance(s, int)
        if not -n <= s < n:
            raise RecipeError(
                f"{path}: {role} stage {s} is out of range for {arch} ({n} stages: {-n}..{n - 1})"
            )
        out.append(s % n)
    if PRE_LOGITS in stages and not hasattr(model, "forward_head"):
        raise RecipeError(f"{path}: {role} {arch} has no forward_head, so no pre_logits embedding")
    return out


def check_arch_stages(arch: str, kwargs: dict[str, Any], stages: Sequence[Stage], role: str) -> None:
    """Check `stages` against `arch` without weights or data (the model is built on the meta
    device): a stage it does not have is a RecipeError naming `strategy.params`."""
    from harness.models.build import build_model

    with torch.device("meta"):
        model = build_model(arch, 10, 3, kwargs)
    resolve_stages(model, stages, arch, "strategy.params", role)


def forward_with_features(
    model: torch.nn.Module, x: torch.Tensor, stages: Sequence[Stage]
) -> tuple[torch.Tensor, dict[Stage, torch.Tensor]]:
    """(logits, {stage: features}) from one forward pass of a timm model.

    Stage features are timm's intermediates (N, C, H, W for CNNs); `"pre_logits"` is the
    classifier's input (N, D), from which the logits are computed, so nothing runs twice.
    """
    n = num_stages(model)
    index = {s: s % n for s in stages if s != PRE_LOGITS}
    take = sorted(set(index.values()))
    if take:
        final, inter = model.forward_intermediates(x, indices=take)
        by_index = dict(zip(take, inter, strict=True))
    else:
        final, by_index = model.forward_features(x), {}
    feats: dict[Stage, torch.Tensor] = {s: by_index[i] for s, i in index.items()}
    if PRE_LOGITS in stages:
        pre = model.forward_head(final, pre_logits=True)
        feats[PRE_LOGITS] = pre
        logits = model.get_classifier()(pre)
    else:
        logits = model.forward_head(final)
    return logits, feats


class WithFeatures(torch.nn.Module):
    """A student whose forward returns (logits, features) in one pass (what DDP wraps)."""

    def __init__(self, model: torch.nn.Module, stages: Sequence[Stage]) -> None:
        super().__init__()
        self.model = model
        self.stages = tuple(stages)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[Stage, torch.Tensor]]:
        return forward_with_features(self.model, x, self.stages)


def split_output(out: torch.Tensor | tuple) -> tuple[torch.Tensor, dict[Stage, torch.Tensor]]:
    """(logits, features) from a plain model's logits or a `WithFeatures` output."""
    if isinstance(out, tuple):
        return out
    return out, {}


@torch.no_grad()
def feature_shapes(
    model: torch.nn.Module, stages: Sequence[Stage], sample: torch.Tensor
) -> dict[Stage, tuple[int, ...]]:
    """Per-sample shapes of the requested features, from one eval-mode pass on `sample` (N >= 1)."""
    if not stages:
        return {}
    was_training = model.training
    model.eval()
    try:
        _, feats = forward_with_features(model, sample, stages)
    finally:
        model.train(was_training)
    return {s: tuple(f.shape[1:]) for s, f in feats.items()}
