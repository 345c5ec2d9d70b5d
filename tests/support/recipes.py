"""Tiny real recipes on the embedded Fashion-MNIST, the repository's recipe files, and the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
SMALL = {"train_subset": 128, "val_subset": 64, "batch_size": 16}  # a data section: 8 steps an epoch


def tiny_recipe(**sections: Any) -> dict[str, Any]:
    """A real recipe small enough for CPU tests: timm's test_resnet on 256 Fashion-MNIST images."""
    recipe: dict[str, Any] = {
        "seed": 0,
        "model": {"arch": "test_resnet"},
        "data": {
            "dataset": "fashion_mnist",
            "train_subset": 256,
            "val_subset": 128,
            "batch_size": 64,
            "eval_batch_size": 128,
            "augment": {"crop_padding": 2, "hflip": True},
        },
        "strategy": {"name": "ce"},
        "optim": {"name": "sgd", "lr": 0.05},
        "schedule": {"epochs": 2, "name": "cosine"},
        "runtime": {"device": "cpu"},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(recipe.get(key), dict):
            recipe[key] = {**recipe[key], **value}
        else:
            recipe[key] = value
    return recipe


def kd_strategy(alpha: float = 0.9, temperature: float = 4.0) -> dict[str, Any]:
    """The `strategy:` section of a plain KD recipe (Hinton et al.'s loss)."""
    return {"name": "kd", "params": {"alpha": alpha, "temperature": temperature}}


KD = kd_strategy()


def write_recipe(path: Path, recipe: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def repo_files(folder: str, pattern: str = "**/*.yaml") -> list[Path]:
    """The repository's files under `folder` matching `pattern`, sorted (to parametrise tests over)."""
    return sorted((REPO / folder).glob(pattern))


def repo_id(path: Path) -> str:
    """A repository file's path relative to the repository: a test id that names the file."""
    return str(path.relative_to(REPO))


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 600, env: dict | None = None, check: bool = False
) -> subprocess.CompletedProcess:
    """Invoke the real `harness` entry point in a subprocess."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"harness {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc
