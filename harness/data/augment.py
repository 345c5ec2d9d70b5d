"""Batched, replayable augmentation on the device.

An augmented view of an image is fully described by a small parameter vector (a "view"):
`(dy, dx, flip, angle)`: a translation of the random crop with zero padding, a horizontal flip
and a rotation in degrees. Views are sampled from a generator seeded by (seed, epoch), so any
view can be replayed exactly: a teacher cache keys soft targets by view, not by sample index.

The order follows the CIFAR recipe of the Tf-KD code: RandomCrop(pad) -> HorizontalFlip ->
RandomRotation, applied to [0, 1] pixels (padding is black), then normalised. The rotation
resamples bilinearly unless the spec asks for `nearest`, torchvision RandomRotation's default
interpolation (the Tf-KD code's `transforms.RandomRotation(15)`, data_loader.py line 23).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

VIEW_DIM = 4  # dy, dx, flip, angle


@dataclass(frozen=True)
class AugmentSpec:
    """What augmentation to apply (from the recipe's `data.augment`)."""

    crop_padding: int = 0
    hflip: bool = False
    rotation_degrees: float = 0.0
    rotation_mode: str = "bilinear"  # grid_sample mode of the rotation: bilinear or nearest

    @property
    def active(self) -> bool:
        return self.crop_padding > 0 or self.hflip or self.rotation_degrees > 0


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """A CPU generator determined by (seed, epoch, stream) alone."""
    state = np.random.SeedSequence([seed, epoch, stream]).generate_state(2, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


def sample_views(spec: AugmentSpec, n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 4) float32 views; every field is drawn (so the stream never depends on the spec)."""
    p = spec.crop_padding
    shifts = torch.randint(-p, p + 1, (n, 2), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    angles = (torch.rand(n, generator=generator) * 2 - 1) * spec.rotation_degrees
    views = torch.zeros(n, VIEW_DIM)
    views[:, :2] = shifts.float()
    views[:, 2] = (flips & spec.hflip).float()
    views[:, 3] = angles
    return views


def translate(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, pad: int) -> torch.Tensor:
    """Per-sample shift by (dy, dx) with zero fill: a random crop of the zero-padded image."""
    b, c, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    rows = (dy.long() + pad)[:, None] + torch.arange(h, device=x.device)
    cols = (dx.long() + pad)[:, None] + torch.arange(w, device=x.device)
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return xp[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]


def rotate(x: torch.Tensor, degrees: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Per-sample rotation about the centre with zero fill, resampled by `mode` (bilinear or nearest)."""
    rad = degrees.to(x.dtype) * (math.pi / 180.0)
    cos, sin = torch.cos(rad), torch.sin(rad)
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)


def apply_views(x: torch.Tensor, views: torch.Tensor, spec: AugmentSpec) -> torch.Tensor:
    """Apply `views` (n, 4) to float images `x` (n, C, H, W) in [0, 1]."""
    views = views.to(x.device)
    if spec.crop_padding > 0:
        x = translate(x, views[:, 0], views[:, 1], spec.crop_padding)
    if spec.hflip:
        x = torch.where(views[:, 2, None, None, None] > 0.5, x.flip(-1), x)
    if spec.rotation_degrees > 0:
        x = rotate(x, views[:, 3], spec.rotation_mode)
    return x


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(x - mean) / std with per-channel statistics shaped (C,)."""
    return (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
