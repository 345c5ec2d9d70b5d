"""Check that a recipe's data can be read before a run folder is made, and say how to make it.

`check_data_files(cfg)` raises a one-line `DataError` for a missing `.beton` file (ffcv backend,
after checking that ffcv imports), Fashion-MNIST file or CIFAR batch, or `data.root` folder, an
ImageFolder tree whose class folders the run cannot train on (`check_class_folders`), and
for a `data.holdout` the training split cannot give (not smaller than the split, a class left
without a training or a held-out sample), before `harness run` or `harness sweep` creates the
run's folder. For a `.beton` file the message is the whole `harness data convert` command that
writes it (`harness.data.hints`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.config.recipe import DataConfig
from harness.data.datasets import (
    INFOS,
    cifar_files,
    class_folders,
    fashion_mnist_files,
    list_image_folder,
    load_configured_split,
)
from harness.data.hints import convert_command
from harness.data.holdout import carve
from harness.errors import DataError


def check_data_files(cfg: DataConfig) -> None:
    """Fail with one line if a file or folder the recipe's data needs is missing."""
    if cfg.backend != "ffcv":
        for split in ("train", "test"):
            if cfg.dataset == "fashion_mnist":
                fashion_mnist_files(cfg.root, split)
            elif cfg.dataset in ("cifar10", "cifar100"):
                cifar_files(cfg.root, split, 10 if cfg.dataset == "cifar10" else 100)
    if cfg.backend == "ffcv":
        from harness.data.ffcv_env import require_ffcv

        require_ffcv()  # without ffcv, how to install it comes first
        for key in ("data.train_path", "data.val_path"):
            value = getattr(cfg, key.split(".")[1])
            path = Path(value)
            if not path.is_file():
                raise DataError(
                    f"{key}: {path} not found; write it with: {convert_command(cfg.dataset, key, path)} "
                    "(docs/paper_suite.md)"
                )
    if cfg.root is not None and not Path(cfg.root).expanduser().exists():
        raise DataError(f"data.root: {cfg.root} not found")
    if cfg.dataset == "imagenet" and cfg.backend == "torch" and cfg.root is not None:
        check_class_folders(Path(cfg.root).expanduser(), cfg.num_classes or INFOS["imagenet"].num_classes)
    if cfg.holdout is not None:
        carve(cfg.holdout, train_labels(cfg))  # a held-out split the data cannot give fails here


def check_class_folders(root: Path, num_classes: int) -> None:
    """An ImageFolder tree's train/ and val/ exist with the same class folders, no more than
    `num_classes` of them (labels are their positions): what the torch loader would refuse at the
    start of training, found from the folder names alone (no image is listed)."""
    found = {}
    for split in ("train", "val"):
        folder = root / split
        if not folder.is_dir():
            raise DataError(f"data.root: {folder} not found (a folder holding train/ and val/)")
        found[split] = class_folders(folder)
        if not found[split]:
            raise DataError(f"{folder}: no class sub-folders (expected {folder}/<class>/<image>)")
    if found["val"] != found["train"]:
        raise DataError(f"{root / 'val'}: its class folders differ from those of {root / 'train'}")
    if len(found["train"]) > num_classes:
        raise DataError(
            f"data.num_classes: labels in {root / 'train'} go up to {len(found['train']) - 1}, "
            f"num_classes is {num_classes}"
        )


def train_labels(cfg: DataConfig) -> np.ndarray:
    """The labels of the whole training split (what `data.holdout` is stratified on)."""
    if cfg.backend == "ffcv":
        from harness.data.ffcv_loader import inspect_beton

        assert cfg.train_path is not None
        return inspect_beton(Path(cfg.train_path), "data.train_path", cfg.dataset).labels
    if cfg.dataset == "imagenet":
        assert cfg.root is not None
        return np.asarray(list_image_folder(Path(cfg.root).expanduser() / "train").labels)
    return load_configured_split(cfg, "train")[1].numpy()
