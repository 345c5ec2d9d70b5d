"""Model construction through timm (plus any architecture harness registers with timm).

Weights are never fetched from a hub: every model is built with `pretrained=False`; teachers get
their weights from local files only (see `harness.teacher`).
"""

from __future__ import annotations

from typing import Any

import timm
import torch


def build_model(
    arch: str, num_classes: int, in_chans: int, kwargs: dict[str, Any] | None = None
) -> torch.nn.Module:
    """`timm.create_model(arch, num_classes=..., in_chans=..., pretrained=False, **kwargs)`."""
    return timm.create_model(
        arch, pretrained=False, num_classes=num_classes, in_chans=in_chans, **(kwargs or {})
    )


def count_parameters(model: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
