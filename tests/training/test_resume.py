"""Exact resume after kill -9 and SIGTERM, divergence, and safe loading of checkpoints and YAML.

The runs are real: the tiny recipe trains through the real CLI in a subprocess, which the test
kills at a seeded-random step (it watches the run's last.pt and strikes once the chosen step is
checkpointed); the resumed run must end with exactly the metrics of an uninterrupted one.
"""

from __future__ import annotations

import ast
import json
import math
import random
import signal

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from harness.config import load_recipe
from harness.errors import DivergedError, RunStateError
from harness.metrics.columns import SCHEMA
from harness.store import checkpoint
from harness.store.metrics_file import read_metrics
from harness.training.lifecycle import train
from harness.training.loop import RunOptions
from tests.support.recipes import REPO, SMALL, tiny_recipe, write_recipe
from tests.support.runs import STEPS_PER_EPOCH, exact, start_run, strike_when

pytestmark = pytest.mark.fashion

TOTAL_STEPS = 2 * STEPS_PER_EPOCH


def resume_recipe() -> dict:
    """2 epochs of 8 steps; dropout so that the RNG state matters; a checkpoint every step."""
    return tiny_recipe(
        model={"arch": "test_resnet", "kwargs": {"drop_rate": 0.3}},
        data=SMALL,
        checkpoint={"every_steps": 1},
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(recipe path, rows of an uninterrupted run of it)."""
    root = tmp_path_factory.mktemp("resume")
    path = write_recipe(root / "recipes" / "resume.yaml", resume_recipe())
    rows = train(load_recipe(path), root / "reference", RunOptions(progress=False)).rows
    assert [r["step"] for r in rows] == [STEPS_PER_EPOCH, TOTAL_STEPS]
    return path, rows


@pytest.mark.slow
def test_kill_9_mid_epoch_and_between_epochs_then_resume_is_exact(reference, tmp_path):
    path, expected = reference
    runs_dir = tmp_path / "runs"
    run = runs_dir / load_recipe(path).run_id
    last = run / "checkpoints" / "last.pt"
    k = random.Random(6).randint(1, STEPS_PER_EPOCH // 2)  # a seeded-random step early in epoch 1

    # 1. checkpoint every step; kill -9 once step k is on disk: the kill lands mid-epoch 1
    proc = start_run(path, runs_dir)
    seen = strike_when(proc, last, lambda s: s["step"] >= k, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert json.loads((run / "status.json").read_text())["status"] == "running"  # no chance to say more
    assert seen["step"] < TOTAL_STEPS

    # 2. resume with epoch-end checkpoints only; kill -9 once epoch 1's is written: the kill lands
    #    in epoch 2 and the next resume starts exactly at the epoch boundary
    proc = start_run(path, runs_dir, "--resume", "--set", "checkpoint.every_steps=0")
    seen = strike_when(proc, last, lambda s: s["epoch"] == 1, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert seen["step_in_epoch"] == 0 and seen["step"] == STEPS_PER_EPOCH
    kept = read_metrics(run / "metrics.parquet")  # the finished epoch's metrics survived the kill
    assert exact(kept) == exact(expected[:1])

    # 3. resume to the end (here, in-process): exactly the uninterrupted run's metrics
    train(load_recipe(path), runs_dir, RunOptions(resume=True, progress=False))
    rows = read_metrics(run / "metrics.parquet")
    assert exact(rows) == exact(expected)
    assert all(r["status"] == "completed" for r in rows)
    log = (run / "log.txt").read_text()
    resumes = [line.split("resuming at ")[1] for line in log.splitlines() if "resuming at" in line]
    first_epoch, first_step = resumes[0].replace(",", "").split()[1::2]
    assert first_epoch == "1" and 0 < int(first_step) < STEPS_PER_EPOCH  # mid-epoch 1
    assert resumes[1:] == [f"epoch 2, step {STEPS_PER_EPOCH}"]  # exactly at the epoch boundary
    assert not last.exists() and (run / "checkpoints" / "final.pt").exists()


@pytest.mark.slow
def test_sigterm_stops_at_a_step_checkpoints_and_resumes_exactly(reference, tmp_path):
    path, expected = reference
    runs_dir = tmp_path / "runs"
    run = runs_dir / load_recipe(path).run_id
    last = run / "checkpoints" / "last.pt"
    k = random.Random(7).randint(STEPS_PER_EPOCH + 1, TOTAL_STEPS - 3)  # a seeded-random step of epoch 2

    proc = start_run(path, runs_dir)
    strike_when(proc, last, lambda s: s["step"] >= k, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("error: run ") and "interrupted by SIGTERM" in stderr
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "interrupted" and status["signal"] == "SIGTERM"
    state = checkpoint.load(last)  # the stop's own checkpoint, at the step boundary it stopped on
    assert state["step"] == status["step"] >= k
    rows = read_metrics(run / "metrics.parquet")
    assert [r["status"] for r in rows] == ["interrupted"]
    assert exact(rows) == exact(expected[:1])

    with pytest.raises(RunStateError, match="pass --resume"):  # not without --resume: nothing lost
        train(load_recipe(path), runs_dir, RunOptions(progress=False))
    train(load_recipe(path), runs_dir, RunOptions(resume=True, progress=False))
    assert exact(read_metrics(run / "metrics.parquet")) == exact(expected)


@pytest.mark.slow
def test_non_finite_loss_ends_diverged_with_valid_files(recipe_file, runs_dir):
    # epoch 1 trains at lr 0.05; the step schedule then multiplies it by 1e8 at step 9
    path = recipe_file(
        "diverge",
        data=SMALL,
        schedule={"epochs": 2, "name": "step", "decay_epochs": 1, "decay_rate": 1e8},
    )
    with pytest.raises(DivergedError, match="non-finite loss at step") as info:
        train(load_recipe(path), runs_dir, RunOptions(progress=False))
    assert info.value.exit_code == 3  # what `harness run` exits with
    run = runs_dir / load_recipe(path).run_id
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "diverged"
    step = status["diverged_step"]
    assert STEPS_PER_EPOCH < step <= TOTAL_STEPS  # in epoch 2, after the learning-rate jump
    table = pq.read_table(run / "metrics.parquet")  # still a valid Parquet file with epoch 1 intact
    assert table.schema.equals(SCHEMA, check_metadata=False)
    rows = table.to_pylist()
    assert [r["epoch"] for r in rows] == [1]
    assert rows[0]["status"] == "diverged" and rows[0]["diverged_step"] == step
    assert math.isfinite(rows[0]["train_loss"]) and math.isfinite(rows[0]["nll"])
    state = checkpoint.load(run / "checkpoints" / "last.pt")  # the last good state: epoch 1's end
    assert state["epoch"] == 1 and state["step"] == STEPS_PER_EPOCH
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_checkpoint_restores_every_generator(tmp_path):
    torch.manual_seed(1)
    random.seed(2)
    np.random.seed(3)
    checkpoint.save(tmp_path / "c.pt", {"rng": checkpoint.rng_state()})
    first = (torch.rand(3).tolist(), random.random(), np.random.rand())
    checkpoint.set_rng_state(checkpoint.load(tmp_path / "c.pt")["rng"])  # weights_only=True inside
    assert (torch.rand(3).tolist(), random.random(), np.random.rand()) == first


def _calls(tree: ast.AST, module: str, names: set[str]) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in names
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == module
    ]


def _safe_loaders(tree: ast.AST) -> set[str]:
    """Classes of the file that derive from `yaml.SafeLoader` (plain data only, as safe_load)."""
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        and any(isinstance(b, ast.Attribute) and b.attr == "SafeLoader" for b in node.bases)
    }


def _with_safe_loader(call: ast.Call, safe: set[str]) -> bool:
    """`yaml.load(text, Loader=L)` where L is one of the file's SafeLoader subclasses."""
    loader = next((kw.value for kw in call.keywords if kw.arg == "Loader"), None)
    return call.func.attr == "load" and isinstance(loader, ast.Name) and loader.id in safe  # type: ignore[attr-defined]


def test_checkpoints_and_yaml_are_only_loaded_safely():
    """Every torch.load passes weights_only=True; YAML is only read with safe_load or with a
    `yaml.SafeLoader` subclass of the same file (the recipe loader's duplicate-key check)."""
    torch_loads = 0
    for source in sorted((REPO / "harness").rglob("*.py")):
        tree = ast.parse(source.read_text())
        for call in _calls(tree, "torch", {"load"}):
            torch_loads += 1
            flags = {kw.arg: kw.value for kw in call.keywords}
            where = f"{source.relative_to(REPO)}:{call.lineno}"
            assert isinstance(flags.get("weights_only"), ast.Constant), where
            assert flags["weights_only"].value is True, where
        safe = _safe_loaders(tree)
        loads = _calls(tree, "yaml", {"load", "load_all", "full_load", "full_load_all", "unsafe_load"})
        unsafe = [call for call in loads if not _with_safe_loader(call, safe)]
        assert not unsafe, f"{source.relative_to(REPO)}:{unsafe[0].lineno} reads YAML unsafely"
    assert torch_loads >= 1  # checkpoint.load: the one place checkpoints and teacher weights are read
