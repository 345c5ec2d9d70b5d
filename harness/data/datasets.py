"""Data sets as uint8 arrays: the embedded Fashion-MNIST, CIFAR python batches, generated data.

Each loader returns `(images, targets)`: a uint8 tensor (N, C, H, W) and an int64 tensor (N,).
Nothing here downloads: Fashion-MNIST comes from Debian's `dataset-fashion-mnist` package, CIFAR
from a folder the user brings, `synthetic` is generated from a seed. Image folders (the ImageNet
layout, `ROOT/<class>/<image>`) are listed here and decoded by the loaders that read them.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from harness.errors import DataError

if TYPE_CHECKING:
    from harness.config.recipe import DataConfig

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_HINT = "install it with: apt-get install dataset-fashion-mnist"


@dataclass(frozen=True)
class DatasetInfo:
    """Shape and normalisation statistics of a data set."""

    name: str
    num_classes: int
    channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    in_memory: bool  # small enough for the `memory` backend
    eval_split: str  # the split evaluated on: "test" where the set has one, else its "val"


INFOS: dict[str, DatasetInfo] = {
    "fashion_mnist": DatasetInfo("fashion_mnist", 10, 1, 28, (0.2860,), (0.3530,), True, "test"),
    "cifar10": DatasetInfo(
        "cifar10", 10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), True, "test"
    ),
    "cifar100": DatasetInfo(
        "cifar100", 100, 3, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), True, "test"
    ),
    "imagenet": DatasetInfo(
        "imagenet", 1000, 3, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), False, "val"
    ),
    "synthetic": DatasetInfo("synthetic", 10, 3, 32, (0.5,), (0.25,), True, "val"),
}


# ---------------------------------------------------------------------------- Fashion-MNIST
def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): unsigned-byte data of any rank."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read IDX file ({exc})") from None
    if len(raw) < 4:
        raise DataError(f"{path}: not an IDX file (too short)")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path}: truncated IDX file ({data.size} of {int(np.prod(dims))} bytes)")
    return data.reshape(dims)


def fashion_mnist_files(root: str | None, split: str) -> list[Path]:
    """The IDX files (images, labels) of a split, .gz or not; a missing one is a DataError."""
    base = Path(root or FASHION_MNIST_ROOT)
    prefix = "train" if split == "train" else "t10k"
    files = [base / f"{prefix}-images-idx3-ubyte.gz", base / f"{prefix}-labels-idx1-ubyte.gz"]
    for f in files:
        if not f.exists() and not f.with_suffix("").exists():
            hint = f"; {FASHION_MNIST_HINT}" if root is None else ""
            raise DataError(f"{f}: Fashion-MNIST file not found{hint}")
    return [f if f.exists() else f.with_suffix("") for f in files]


def cifar_files(root: str | None, split: str, num_classes: int) -> list[Path]:
    """The python batches of a CIFAR split; a missing one is a DataError."""
    if root is None:
        raise DataError("data.root: CIFAR needs the folder of its python batches")
    if num_classes == 10:
        names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    else:
        names = ["train"] if split == "train" else ["test"]
    for path in (Path(root) / name for name in names):
        if not path.is_file():
            raise DataError(f"{path}: CIFAR batch not found")
    return [Path(root) / name for name in names]


def load_fashion_mnist(root: str | None, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST from the IDX .gz files (60k train / 10k test, 28x28 grey)."""
    base = Path(root or FASHION_MNIST_ROOT)
    images, labels = (read_idx(f) for f in fashion_mnist_files(root, split))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{base}: images {images.shape} and labels {labels.shape} do not pair")
    return torch.from_numpy(images.copy())[:, None], torch.from_numpy(labels.astype(np.int64))


# ---------------------------------------------------------------------------- CIFAR
class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a CIFAR batch, never arbitrary code."""

    ALLOWED = frozenset(
        {
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
        }
    )

    def find_class(self, module: str, name: str) -> type:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (not a CIFAR batch)")


def load_cifar(root: str | None, split: str, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10/100 from the python-pickle batches (`cifar-10-batches-py`, `cifar-100-python`)."""
    if root is None:
        raise DataError("data.root: CIFAR needs the folder of its python batches")
    base = Path(root)
    if num_classes == 10:
        names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        label_key = b"labels"
    else:
        names = ["train"] if split == "train" else ["test"]
        label_key = b"fine_labels"
    images, labels = [], []
    for name in names:
        path = base / name
        try:
            with open(path, "rb") as fh:
                batch = RestrictedUnpickler(fh, encoding="bytes").load()
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch[label_key], dtype=np.int64))
        except FileNotFoundError:
            raise DataError(f"{path}: CIFAR batch not found") from None
        except (KeyError, ValueError, pickle.UnpicklingError, EOFError) as exc:
            raise DataError(f"{path}: not a CIFAR python batch ({exc})") from None
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


# ---------------------------------------------------------------------------- image folders
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class ImageFolderIndex:
    """The images of an ImageFolder tree: class `labels[i]` is `classes[labels[i]]`."""

    root: Path
    files: list[Path]
    labels: np.ndarray  # int64, one per file
    classes: list[str]


def class_folders(root: Path) -> list[str]:
    """Sorted names of the visible sub-folders of `root`."""
    return sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def list_image_folder(root: str | Path) -> ImageFolderIndex:
    """Images under `root/<class>/` (any depth), classes and files sorted as torchvision does."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: image folder not found")
    classes = class_folders(root)
    if not classes:
        raise DataError(f"{root}: no class sub-folders (expected {root}/<class>/<image>)")
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        for dirpath, _, filenames in sorted(os.walk(root / name, followlinks=True)):
            for filename in sorted(filenames):
                if filename.lower().endswith(IMAGE_EXTENSIONS):
                    files.append(Path(dirpath) / filename)
                    labels.append(label)
    if not files:
        raise DataError(f"{root}: no images ({', '.join(IMAGE_EXTENSIONS)}) in its class folders")
    return ImageFolderIndex(root, files, np.asarray(labels, dtype=np.int64), classes)


# ---------------------------------------------------------------------------- generated
def make_synthetic(
    num_samples: int, num_classes: int, channels: int, size: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """A learnable generated set: each class is a smooth random prototype plus noise.

    Used by smoke runs and tests (data of a recipe's shape without the real data set).
    """
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(num_classes, channels, 4, 4, generator=g)
    protos = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")
    targets = torch.arange(num_samples) % num_classes
    targets = targets[torch.randperm(num_samples, generator=g)]
    noise = torch.randn(num_samples, channels, size, size, generator=g) * 0.15
    images = (protos[targets] + noise).clamp(0, 1).mul(255).round().to(torch.uint8)
    return images, targets.to(torch.int64)


Loader = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def load_split(
    dataset: str,
    split: str,
    *,
    root: str | None = None,
    num_classes: int | None = None,
    channels: int | None = None,
    image_size: int | None = None,
    synthetic_size: int = 512,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, C, H, W) uint8 and labels (N,) int64 of `split` ('train' or 'val')."""
    if dataset == "fashion_mnist":
        return load_fashion_mnist(root, split)
    if dataset in ("cifar10", "cifar100"):
        return load_cifar(root, split, INFOS[dataset].num_classes)
    if dataset == "synthetic":
        info = INFOS["synthetic"]
        n = synthetic_size if split == "train" else max(synthetic_size // 4, 1)
        return make_synthetic(
            n,
            num_classes or info.num_classes,
            channels or info.channels,
            image_size or info.image_size,
            seed + (0 if split == "train" else 1),
        )
    raise DataError(f"data.dataset: {dataset!r} cannot be held in memory; use another backend")


def load_configured_split(cfg: DataConfig, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """`load_split` for the data set, root and generated-data settings a recipe's `data` names."""
    return load_split(
        cfg.dataset,
        split,
        root=cfg.root,
        num_classes=cfg.num_classes,
        channels=cfg.channels,
        image_size=cfg.image_size,
        synthetic_size=cfg.synthetic_size,
        seed=cfg.subset_seed,
    )


def subset_indices(n: int, size: int | None, seed: int) -> torch.Tensor | None:
    """A fixed random subset of `size` of `n` indices (same for every run with the same seed)."""
    if size is None or size >= n:
        return None
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=g)[:size].sort().values
