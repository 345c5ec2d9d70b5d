"""The `harness data convert` command that writes a data file a recipe names but lacks.

`convert_command(dataset, key, path)`: the split from the recipe key, the format from the data
set, and, for ffcv-imagenet's file names (`<split>_<max resolution>_<JPEG share>_<quality>.beton`,
e.g. `train_500_0.50_90.beton`), the options the name encodes (docs/paper_suite.md). Used by the
preflight (`harness.data.preflight`) and the ffcv loader's own check.

May import: the standard library only.
"""

from __future__ import annotations

import re
from pathlib import Path

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
