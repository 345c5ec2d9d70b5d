"""Check that a recipe's data files exist before a run folder is made, and say how to make them.

`check_data_files(cfg)` raises a one-line `DataError` for a missing `.beton` file (ffcv backend,
after checking that ffcv imports), Fashion-MNIST file or CIFAR batch, or `data.root` folder,
before `harness run` or `harness sweep` creates the run's folder; a `data.holdout` the training
split cannot give (too large, a class left without a training or held-out sample) too. For a `.beton` file the
message is the whole `harness data convert` command that writes it: the split from the recipe
key, the format from the data set, and, for ffcv-imagenet's file names
(`<split>_<max resolution>_<JPEG share>_<quality>.beton`, e.g. `train_500_0.50_90.beton`), the
options the name encodes (docs/paper_suite.md).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from harness.config.recipe import DataConfig
from harness.data.datasets import cifar_files, fashion_mnist_files, list_image_folder, load_configured_split
from harness.data.holdout import carve
from harness.errors import DataError

#: ffcv-imagenet's naming: <split>_<max resolution>_<compress probability>_<jpeg quality>.beton
FFCV_IMAGENET_NAME = re.compile(r"^[A-Za-z]+_(?P<res>\d+)_(?P<prob>\d+(?:\.\d+)?)_(?P<quality>\d+)$")

_SOURCES = {
    "cifar10": "/path/to/cifar-10-batches-py",
    "cifar100": "/path/to/cifar-100-python",
    "fashion_mnist": "/usr/share/datasets/fashion-mnist",
}


def convert_command(dataset: str, key: str, path: Path) -> str:
    """The `harness data convert` command that writes `path` for the recipe field `key`."""
    train = key.endswith("train_path")
    if dataset in ("cifar10", "cifar100"):
        split = "train" if train else "test"
        return f"harness data convert {_SOURCES[dataset]} {path} --split {split} --write-mode raw"
    if dataset == "fashion_mnist":
        split = "train" if train else "test"
        return f"harness data convert {_SOURCES[dataset]} {path} --format fashion-mnist --split {split}"
    source = f"/path/to/{dataset}/{'train' if train else 'val'}"
    command = f"harness data convert {source} {path} --format imagefolder"
    named = FFCV_IMAGENET_NAME.match(path.stem)
    if named:
        command += (
            f" --max-resolution {named['res']} --write-mode proportion"
            f" --compress-probability {named['prob']} --jpeg-quality {named['quality']}"
        )
    return command


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
    if cfg.holdout is not None:
        carve(cfg.holdout, train_labels(cfg))  # a held-out split the data cannot give fails here


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
