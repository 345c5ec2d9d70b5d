"""Data loading: choose a backend from the recipe and build train/validation loaders.

Backends (`data.backend`):
* `memory`: the split as a uint8 tensor on the device, augmented there (small data sets);
* `torch`: torchvision Dataset + DataLoader (the fallback for machines without ffcv);
* `ffcv`: FFCV `.beton` files (ImageNet, CIFAR), see `harness.data.ffcv_loader`.
"""

from __future__ import annotations

import importlib

import torch
import torch.nn.functional as F

from harness.config.recipe import DataConfig
from harness.data.augment import AugmentSpec
from harness.data.base import Batch, DataBundle, Loader
from harness.data.datasets import INFOS, load_configured_split
from harness.data.memory import MemoryLoader
from harness.data.pipeline import normalization, split_positions
from harness.errors import DataError

__all__ = ["Batch", "DataBundle", "Loader", "augment_spec", "build_data"]


def augment_spec(cfg: DataConfig) -> AugmentSpec:
    """The device-side augmentation described by `data.augment`."""
    a = cfg.augment
    return AugmentSpec(a.crop_padding, a.hflip, a.rotation_degrees, a.rotation_interpolation or "bilinear")


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a uint8 (N, C, H, W) tensor once, in chunks (bilinear, antialiased)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = []
    for chunk in images.split(4096):
        x = F.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True)
        out.append(x.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out)


def build_memory(
    cfg: DataConfig, *, device: torch.device, seed: int, rank: int, world_size: int
) -> DataBundle:
    """Load both splits into device memory and wrap them in MemoryLoaders."""
    info = INFOS[cfg.dataset]
    loaded = {split: load_configured_split(cfg, split) for split in ("train", "val")}
    positions = split_positions(cfg, loaded["train"][1].numpy(), len(loaded["val"][1]))
    chosen = {"train": ("train", positions.train), "holdout": ("train", positions.held_out)}
    chosen["val"] = ("val", positions.val)
    splits = {}
    for name, (split, keep) in chosen.items():
        if name == "holdout" and positions.holdout_digest is None:
            continue
        images, targets = loaded[split]
        if len(keep) != len(targets):
            index = torch.from_numpy(keep)
            images, targets = images[index], targets[index]
        res = cfg.image_size if name == "train" else (cfg.val_image_size or cfg.image_size)
        if res is not None:
            images = _resize(images, res)
        splits[name] = (images, targets)
    num_classes = cfg.num_classes or info.num_classes
    for split, (_, targets) in splits.items():
        if len(targets) == 0:
            raise DataError(f"data: the {split} split is empty")
        if int(targets.max()) >= num_classes:
            raise DataError(
                f"data.num_classes: labels go up to {int(targets.max())} but num_classes is {num_classes}"
            )
    mean, std = normalization(cfg)
    common = {"mean": mean, "std": std, "device": device, "rank": rank, "world_size": world_size}
    train = MemoryLoader(
        *splits["train"],
        batch_size=cfg.batch_size,
        train=True,
        augment=augment_spec(cfg),
        seed=seed,
        view_seed=cfg.view_seed,
        drop_last=cfg.drop_last,
        **common,
    )
    evaluated = {
        name: MemoryLoader(
            *split, batch_size=cfg.eval_batch_size, train=False, augment=AugmentSpec(), **common
        )
        for name, split in splits.items()
        if name != "train"
    }
    val, held_out = evaluated["val"], evaluated.get("holdout")
    images = splits["train"][0]
    return DataBundle(
        train=train,
        val=val,
        num_classes=num_classes,
        channels=int(images.shape[1]),
        image_size=int(images.shape[-1]),
        train_size=len(splits["train"][1]),
        val_size=len(splits["val"][1]),
        eval_split=info.eval_split,
        holdout=held_out,
        holdout_size=len(positions.held_out),
        holdout_digest=positions.holdout_digest,
        describe=(
            f"{cfg.dataset} (memory): {len(splits['train'][1])} train / {len(positions.held_out)} held out / "
            f"{len(splits['val'][1])} val, {images.shape[1]}x{images.shape[2]}x{images.shape[3]}"
        ),
    )


# Backends living in their own modules, imported only when used (ffcv is an optional extra).
_BACKEND_MODULES = {"torch": "harness.data.torch_loader", "ffcv": "harness.data.ffcv_loader"}


def build_data(
    cfg: DataConfig, *, device: torch.device, seed: int, rank: int = 0, world_size: int = 1
) -> DataBundle:
    """Train and validation loaders for `cfg`, sharded for `rank` of `world_size`."""
    if cfg.backend == "memory":
        return build_memory(cfg, device=device, seed=seed, rank=rank, world_size=world_size)
    try:
        module = importlib.import_module(_BACKEND_MODULES[cfg.backend])
    except ModuleNotFoundError as exc:
        raise DataError(f"data.backend: the {cfg.backend!r} backend is not available ({exc})") from None
    return module.build(cfg, device=device, seed=seed, rank=rank, world_size=world_size)
