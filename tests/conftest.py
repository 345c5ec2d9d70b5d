"""Shared fixtures: tiny real recipes on the embedded Fashion-MNIST, and the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")

os.environ.setdefault("OMP_NUM_THREADS", "2")


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


def write_recipe(path: Path, recipe: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


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


@pytest.fixture
def recipe_file(tmp_path: Path):
    """Factory: write a tiny recipe (with section overrides) and return its path."""

    def make(name: str = "tiny_ce", **sections: Any) -> Path:
        return write_recipe(tmp_path / "recipes" / f"{name}.yaml", tiny_recipe(**sections))

    return make


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    return tmp_path / "runs"


def pytest_collection_modifyitems(config, items):
    if not FASHION_MNIST.exists():
        skip = pytest.mark.skip(reason="dataset-fashion-mnist is not installed (scripts/setup.sh)")
        for item in items:
            if "fashion" in item.keywords:
                item.add_marker(skip)
    needs_ffcv = [item for item in items if "ffcv" in item.keywords]
    if needs_ffcv:
        from harness.data.ffcv_env import require_ffcv
        from harness.errors import HarnessError

        try:
            require_ffcv()  # imports it: a broken install (a missing system library) skips too
        except HarnessError as exc:
            skip = pytest.mark.skip(reason=str(exc))
            for item in needs_ffcv:
                item.add_marker(skip)
