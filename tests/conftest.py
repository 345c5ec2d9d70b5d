"""Shared fixtures (fixtures only: the helpers the tests share live in tests/support)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.support.recipes import FASHION_MNIST, SMALL, tiny_recipe, write_recipe

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture
def recipe_file(tmp_path: Path):
    """Factory: write a tiny recipe (with section overrides) and return its path."""

    def make(name: str = "tiny_ce", **sections: Any) -> Path:
        return write_recipe(tmp_path / "recipes" / f"{name}.yaml", tiny_recipe(**sections))

    return make


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    return tmp_path / "runs"


@pytest.fixture(scope="session")
def teacher_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """final.pt of a one-epoch tiny teacher (test_resnet on the SMALL data), trained once a session."""
    from harness.config import load_recipe
    from harness.training.lifecycle import train
    from harness.training.loop import RunOptions

    root = tmp_path_factory.mktemp("teacher")
    path = write_recipe(root / "teacher.yaml", tiny_recipe(data=SMALL, schedule={"epochs": 1}))
    result = train(load_recipe(path), root / "runs", RunOptions(progress=False))
    return result.run_dir / "checkpoints" / "final.pt"


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
