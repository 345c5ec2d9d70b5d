"""Real tiny runs through the CLI: Parquet schema, status, determinism, reruns, bad input."""

from __future__ import annotations

import json
import math

import pyarrow.parquet as pq
import pytest
import yaml

from harness.config import load_recipe
from harness.metrics.columns import SCHEMA
from harness.store.metrics_file import read_metrics
from harness.training.lifecycle import train
from harness.training.loop import RunOptions
from tests.support.recipes import run_cli

pytestmark = pytest.mark.fashion


@pytest.mark.slow
def test_cli_run_writes_parquet_and_run_files(recipe_file, runs_dir):
    path = recipe_file()
    proc = run_cli("run", str(path), "--runs-dir", str(runs_dir), check=True)
    recipe = load_recipe(path)
    run = runs_dir / recipe.run_id
    assert f"completed: {recipe.run_id}" in proc.stdout
    table = pq.read_table(run / "metrics.parquet")
    assert table.schema.equals(SCHEMA, check_metadata=False)
    rows = table.to_pylist()
    assert [r["epoch"] for r in rows] == [1, 2]
    for row in rows:
        assert row["status"] == "completed"
        assert row["run_id"] == recipe.run_id and row["dataset"] == "fashion_mnist"
        assert row["config_hash"] == recipe.config_hash() != recipe.hash()
        assert row["arch"] == "test_resnet" and row["strategy"] == "ce" and row["seed"] == 0
        assert 0 <= row["top1"] <= row["top5"] <= 100
        assert 0 <= row["ece"] <= 1 and 0 < row["max_prob"] <= 1
        assert 0 <= row["entropy"] <= math.log(10) + 1e-9
        assert row["stability"] <= 1 and row["nll"] > 0
        assert row["img_per_s"] > 0 and row["epoch_time_s"] > 0 and row["train_loss"] > 0
        assert row["eval_samples"] == 128 and row["train_samples"] == 256
        assert row["teacher_arch"] is None
    assert rows[-1]["step"] == 8  # 2 epochs x 256/64 batches
    saved = yaml.safe_load((run / "recipe.yaml").read_text())
    assert saved["data"]["train_subset"] == 256 and saved["optim"]["momentum"] == 0.9  # resolved
    prov = json.loads((run / "provenance.json").read_text())
    assert {"torch_version", "timm_version", "harness_version", "git_commit", "device"} <= set(prov)
    assert prov["recipe_hash"] == recipe.hash()
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    assert (run / "checkpoints" / "final.pt").exists()
    assert not (run / "checkpoints" / "last.pt").exists()

    before = read_metrics(run / "metrics.parquet")
    kept = [run / "metrics.parquet", run / "status.json", run / "checkpoints" / "final.pt"]
    stamps = [p.stat().st_mtime_ns for p in kept]
    again = run_cli("run", str(path), "--runs-dir", str(runs_dir), check=True)
    assert "already completed" in again.stderr
    assert read_metrics(run / "metrics.parquet") == before  # the rerun trained nothing
    assert [p.stat().st_mtime_ns for p in kept] == stamps  # and rewrote nothing


@pytest.mark.slow
def test_runs_are_deterministic_on_cpu(recipe_file, tmp_path):
    recipe = load_recipe(recipe_file())
    a = train(recipe, tmp_path / "a", RunOptions(progress=False)).rows
    b = train(recipe, tmp_path / "b", RunOptions(progress=False)).rows
    keys = ("top1", "top5", "nll", "ece", "entropy", "max_prob", "stability", "train_loss")
    assert [[r[k] for k in keys] for r in a] == [[r[k] for k in keys] for r in b]
    other = load_recipe(recipe_file(), ["seed=1"])
    c = train(other, tmp_path / "c", RunOptions(progress=False)).rows
    assert [r["train_loss"] for r in c] != [r["train_loss"] for r in a]


@pytest.mark.slow
def test_label_smoothing_run_and_training_learns(recipe_file, runs_dir, monkeypatch):
    """A label-smoothing run learns, logs its loss parts, and builds its strategy once."""
    from harness import strategies

    cls, built = strategies.get("label_smoothing"), []
    init = cls.__init__
    monkeypatch.setattr(cls, "__init__", lambda self, params: (built.append(params), init(self, params))[1])
    path = recipe_file(
        "tiny_ls",
        strategy={"name": "label_smoothing", "params": {"epsilon": 0.1, "convention": "others"}},
        schedule={"epochs": 3},
        data={"train_subset": 1024, "val_subset": 512},
    )
    result = train(load_recipe(path), runs_dir, RunOptions(progress=False))
    rows = result.rows
    assert json.loads(rows[0]["strategy_params"]) == {"epsilon": 0.1, "convention": "others"}
    assert set(rows[0]["train_parts"]) == {"ce", "smooth"}
    assert rows[-1]["top1"] > 40  # 10 classes: chance is 10%
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert len(built) == 1


@pytest.mark.slow
def test_existing_unfinished_run_is_not_overwritten(recipe_file, runs_dir):
    path = recipe_file()
    recipe = load_recipe(path)
    run = runs_dir / recipe.run_id
    run.mkdir(parents=True)
    (run / "status.json").write_text(json.dumps({"status": "interrupted", "run_id": recipe.run_id}))
    (run / "metrics.parquet").write_bytes(b"precious")
    proc = run_cli("run", str(path), "--runs-dir", str(runs_dir))
    assert proc.returncode == 2
    assert "pass --resume to continue it or --restart" in proc.stderr
    assert (run / "metrics.parquet").read_bytes() == b"precious"
    proc = run_cli("run", str(path), "--runs-dir", str(runs_dir), "--restart", check=True)
    aside = [p for p in runs_dir.iterdir() if p.name.startswith(recipe.run_id + ".old-")]
    assert len(aside) == 1 and (aside[0] / "metrics.parquet").read_bytes() == b"precious"


def test_missing_data_is_one_line(recipe_file, runs_dir, tmp_path):
    path = recipe_file(data={"root": str(tmp_path / "nowhere")})
    proc = run_cli("run", str(path), "--runs-dir", str(runs_dir))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Fashion-MNIST file not found" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_model_kwargs_timm_rejects_are_one_line(recipe_file, runs_dir):
    path = recipe_file(model={"arch": "test_resnet", "kwargs": {"drop_rat": 0.1}})
    proc = run_cli("run", str(path), "--runs-dir", str(runs_dir))
    assert proc.returncode == 2
    assert (
        proc.stderr.strip().splitlines()[-1].startswith("error: model.kwargs: timm cannot build test_resnet")
    )
    assert "Traceback" not in proc.stderr
