"""`harness sweep`: the sweep file, planning, failures, skips, signals and concurrent sweeps.

Runs are real tiny trainings through real worker processes; two concurrent sweeps are two real
`harness sweep` processes on one runs folder.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from harness.config import load_recipe
from harness.errors import RecipeError
from harness.store.metrics_file import read_metrics
from harness.sweeps.executor import SweepOptions
from harness.sweeps.plan import plan_sweep
from harness.sweeps.spec import SweepEntry, SweepFile, parse_seeds
from harness.sweeps.sweep import run_sweep
from tests.support.recipes import REPO, repo_files, repo_id, run_cli, tiny_recipe, write_recipe

QUICK = {"schedule": {"epochs": 1}, "data": {"train_subset": 128, "val_subset": 64, "batch_size": 32}}


def quick_recipe(**sections) -> dict:
    """One epoch of 4 steps: the cheapest real run."""
    recipe = tiny_recipe(**QUICK)
    for key, value in sections.items():
        recipe[key] = {**recipe.get(key, {}), **value} if isinstance(value, dict) else value
    return recipe


def summary_of(runs_dir: Path) -> list[dict]:
    """Every sweep summary in `runs_dir`, oldest first."""
    return [json.loads(p.read_text()) for p in sorted((runs_dir / "sweeps").glob("sweep-*.json"))]


def by_run(summary: dict) -> dict[str, dict]:
    return {r["run_id"]: r for r in summary["runs"]}


# ------------------------------------------------------------------------------ the sweep file
def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("recipse: [a.yaml]", "recipse: unknown key; did you mean 'recipes'?"),
        ("recipes: [{pth: a.yaml}]", "recipes[0].pth: unknown key; did you mean 'path'?"),
        ("recipes: [{path: a.yaml, seed: [1]}]", "recipes[0].seed: unknown key; did you mean 'seeds'?"),
        ("seeds: [0, -1]\nrecipes: [a.yaml]", "seeds: item 1 must be >= 0, got -1"),
        ("seeds: []\nrecipes: [a.yaml]", "seeds: must list at least one seed"),
        ("seeds: 3\nrecipes: [a.yaml]", "seeds: must be a list, got 3"),
        ("overrides: optim.lr=1\nrecipes: [a.yaml]", "overrides: must be a list, got 'optim.lr=1'"),
        ("recipes: []", "recipes: must list at least one recipe"),
        ("seeds: [0]", "recipes: required"),
        ("recipes: [3]", "recipes[0]: must be a mapping, got 3"),
        ("- a.yaml", "a sweep file must be a mapping with a `recipes` list"),
        ("recipes: [a.yaml", "invalid YAML"),
        ("recipes: ['nothing/*.yaml']", "recipes[0]: nothing/*.yaml: no recipe file matches this glob"),
    ],
)
def test_sweep_file_is_strict(tmp_path, text, message):
    path = write(tmp_path / "sweep.yaml", text)
    write_recipe(tmp_path / "a.yaml", quick_recipe())
    with pytest.raises(RecipeError) as info:
        plan_sweep(sweep_file=path)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith(f"{path}: ")


def test_sweep_schema_fields_are_documented():
    doc = (REPO / "docs" / "sweeps.md").read_text()
    for cls in (SweepFile, SweepEntry):
        for name in cls.__dataclass_fields__:
            assert f"{name}`" in doc, f"docs/sweeps.md does not describe `{name}`"


def test_plan_expands_entries_seeds_globs_and_overrides(tmp_path, monkeypatch):
    for name in ("a", "b", "c"):
        write_recipe(tmp_path / "recipes" / f"{name}.yaml", quick_recipe(seed=7))
    write(
        tmp_path / "sweeps" / "night.yaml",
        "seeds: [0, 1]\n"
        "overrides: ['optim.lr=0.2']\n"
        "recipes:\n"
        "  - ../recipes/a.yaml\n"  # relative to the sweep file, not to the current folder
        "  - path: ../recipes/[bc].yaml\n"
        "    seeds: [5]\n"
        "    overrides: ['optim.lr=0.3', 'optim.momentum=0.5']\n"
        "  - ../recipes/a.yaml\n",  # listed twice: run once
    )
    monkeypatch.chdir(tmp_path / "sweeps")
    recipes = tmp_path / "sweeps" / ".." / "recipes"
    runs = plan_sweep(sweep_file=Path("night.yaml"))
    expect = [
        load_recipe(recipes / "a.yaml", ["optim.lr=0.2", "seed=0"]),
        load_recipe(recipes / "a.yaml", ["optim.lr=0.2", "seed=1"]),
        load_recipe(recipes / "b.yaml", ["optim.lr=0.2", "optim.lr=0.3", "optim.momentum=0.5", "seed=5"]),
        load_recipe(recipes / "c.yaml", ["optim.lr=0.2", "optim.lr=0.3", "optim.momentum=0.5", "seed=5"]),
    ]
    assert [r.run_id for r in runs] == [e.run_id for e in expect]
    assert [r.recipe.optim.lr for r in runs] == [0.2, 0.2, 0.3, 0.3]  # the entry's override wins
    assert runs[0].recipe.group_key() == runs[1].recipe.group_key() != runs[2].recipe.group_key()

    # --seeds replaces every seed list; --set comes after the file's overrides; paths add runs
    runs = plan_sweep(["../recipes/c.yaml"], Path("night.yaml"), seeds=[3], overrides=["optim.lr=0.4"])
    assert [(r.recipe.name, r.seed, r.recipe.optim.lr, r.recipe.optim.momentum) for r in runs] == [
        ("a", 3, 0.4, 0.9),
        ("b", 3, 0.4, 0.5),
        ("c", 3, 0.4, 0.5),
        ("c", 3, 0.4, 0.9),  # the positional path has no entry overrides: another run
    ]
    # without any seed list each recipe keeps its own seed
    assert [r.recipe.seed for r in plan_sweep(["../recipes/a.yaml"])] == [7]
    # a recipe that does not load is planned as a failure, not a crash
    [bad] = plan_sweep(["../recipes/a.yaml"], overrides=["optim.lr=-1"])
    assert bad.recipe is None and "optim.lr: must be > 0, got -1" in bad.error


def test_cli_bad_sweep_input_is_one_line(tmp_path):
    write_recipe(tmp_path / "a.yaml", quick_recipe())
    bad = write(tmp_path / "sweep.yaml", "recipes: [a.yaml]\nseed: [1]\n")
    runs_dir = tmp_path / "runs"
    proc = run_cli("sweep", "--file", str(bad), "--runs-dir", str(runs_dir))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: {bad}: seed: unknown key; did you mean 'seeds'?")
    assert not runs_dir.exists()  # nothing ran, nothing written
    assert parse_seeds("0, 1,2") == [0, 1, 2]
    with pytest.raises(RecipeError, match="--seeds 0,x: expected comma-separated"):
        parse_seeds("0,x")


# ------------------------------------------------------------------------------ a sweep with failures
@pytest.fixture(scope="module")
def failing_sweep(tmp_path_factory):
    """good, missing-data, diverging: one sweep (in-process; its runs in real worker processes)."""
    root = tmp_path_factory.mktemp("failing")
    write_recipe(root / "good.yaml", quick_recipe())
    write_recipe(root / "nodata.yaml", quick_recipe(data={"root": str(root / "nowhere")}))
    write_recipe(root / "diverge.yaml", quick_recipe(optim={"lr": 1e6}, schedule={"name": "constant"}))
    sweep = write(root / "sweep.yaml", "recipes: [nodata.yaml, diverge.yaml, good.yaml]\n")
    result = run_sweep(plan_sweep(sweep_file=sweep), root / "runs", SweepOptions(device="cpu"))
    ids = {name: load_recipe(root / f"{name}.yaml").run_id for name in ("good", "nodata", "diverge")}
    return root, result, ids


@pytest.mark.fashion
@pytest.mark.slow
def test_sweep_finishes_the_others_after_a_failure(failing_sweep):
    root, result, ids = failing_sweep
    assert result.exit_code == 1
    [summary] = summary_of(root / "runs")
    runs = by_run(summary)
    assert [r["run_id"] for r in summary["runs"]] == [ids["nodata"], ids["diverge"], ids["good"]]
    assert runs[ids["good"]]["outcome"] == "ran" and runs[ids["good"]]["status"] == "completed"
    assert runs[ids["nodata"]]["outcome"] == "failed"
    assert "Fashion-MNIST file not found" in runs[ids["nodata"]]["error"]
    assert runs[ids["diverge"]]["outcome"] == "diverged" and runs[ids["diverge"]]["diverged_step"] >= 1
    assert [runs[ids[n]]["exit_code"] for n in ("good", "nodata", "diverge")] == [0, 2, 3]
    assert summary["counts"] == {
        "ran": 1,
        "skipped": 0,
        "failed": 1,
        "diverged": 1,
        "busy": 0,
        "interrupted": 0,
        "pending": 0,
    }
    assert summary["exit_code"] == 1
    # missing data is found before the run starts: no run folder, the error is in the summary
    assert not (root / "runs" / ids["nodata"]).exists()
    text = result.render()
    assert f"failed      {ids['nodata']}" in text and "Fashion-MNIST file not found" in text
    assert f"diverged    {ids['diverge']}" in text and "non-finite loss at step" in text
    assert text.splitlines()[0].endswith("3 runs: 1 ran, 1 failed, 1 diverged")
    rows = read_metrics(root / "runs" / ids["good"] / "metrics.parquet")
    assert [r["status"] for r in rows] == ["completed"]


@pytest.mark.fashion
@pytest.mark.slow
def test_sweep_again_skips_done_runs_and_retries_failed_ones(failing_sweep):
    root, _, ids = failing_sweep
    good_metrics = (root / "runs" / ids["good"] / "metrics.parquet").read_bytes()
    runs = plan_sweep(sweep_file=root / "sweep.yaml")
    summary = run_sweep(runs, root / "runs", SweepOptions(device="cpu", leaderboard=False))
    records = {r.run_id: r for r in summary.runs}
    assert (records[ids["good"]].outcome, records[ids["good"]].earlier) == ("skipped", True)
    assert (
        records[ids["good"]].top1 == read_metrics(root / "runs" / ids["good"] / "metrics.parquet")[0]["top1"]
    )
    assert (records[ids["diverge"]].outcome, records[ids["diverge"]].earlier) == ("diverged", True)
    assert records[ids["nodata"]].outcome == "failed" and records[ids["nodata"]].exit_code == 2  # retried
    assert summary.exit_code == 1
    assert (root / "runs" / ids["good"] / "metrics.parquet").read_bytes() == good_metrics  # untouched
    assert len(summary_of(root / "runs")) == 2  # one summary file per invocation


@pytest.mark.fashion
@pytest.mark.slow
def test_sweep_regenerates_the_leaderboard(failing_sweep):
    pytest.importorskip("harness.leaderboard")
    root, _, _ = failing_sweep
    [first, *_] = summary_of(root / "runs")
    assert first["leaderboard"]["status"] == "written"
    out = Path(first["leaderboard"]["out"])
    assert out == root / "runs" / "leaderboard" and any(out.iterdir())


# ------------------------------------------------------------------------------ signals
def wait_for(condition, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, "the sweep ended too early"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.fashion
@pytest.mark.slow
def test_sigterm_to_a_sweep_checkpoints_the_run_and_a_new_sweep_resumes_it(tmp_path):
    # 64 steps of 16 images, a checkpoint after each: long enough for the signal to land mid-run
    slow = write_recipe(
        tmp_path / "slow.yaml",
        quick_recipe(data={"batch_size": 16, "train_subset": 1024}, checkpoint={"every_steps": 1}),
    )
    invalid = write_recipe(tmp_path / "invalid.yaml", quick_recipe(optim={"lr": -1}))
    slow_id = load_recipe(slow).run_id
    runs_dir = tmp_path / "runs"
    last = runs_dir / slow_id / "checkpoints" / "last.pt"
    args = [sys.executable, "-m", "harness", "sweep", str(slow), str(invalid), "--runs-dir", str(runs_dir)]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def checkpointed() -> bool:
        try:
            return torch.load(last, weights_only=True)["step"] >= 2
        except Exception:
            return False

    wait_for(checkpointed, proc)
    proc.send_signal(signal.SIGTERM)  # to the sweep only: it must pass the signal on to its worker
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    [summary] = summary_of(runs_dir)
    assert summary["interrupted"] == "SIGTERM"
    assert [(r["run_id"], r["outcome"]) for r in summary["runs"]] == [
        (slow_id, "interrupted"),
        ("invalid-s?-invalid", "pending"),  # never reached
    ]
    status = json.loads((runs_dir / slow_id / "status.json").read_text())
    assert status["status"] == "interrupted" and status["signal"] == "SIGTERM"
    stopped_at = torch.load(last, weights_only=True)["step"]
    assert stopped_at == status["step"] >= 2

    again = run_sweep(plan_sweep([str(slow), str(invalid)]), runs_dir, SweepOptions(leaderboard=False))
    assert [(r.outcome, r.resumed) for r in again.runs] == [("ran", True), ("failed", False)]
    assert "optim.lr: must be > 0" in again.runs[1].error and again.exit_code == 1
    assert f"resuming at epoch 1, step {stopped_at}" in (runs_dir / slow_id / "log.txt").read_text()


# ------------------------------------------------------------------------------ concurrency
@pytest.mark.fashion
@pytest.mark.slow
def test_two_concurrent_sweeps_train_each_run_exactly_once(tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", quick_recipe())
    runs_dir = tmp_path / "runs"
    args = [
        sys.executable,
        "-m",
        "harness",
        "sweep",
        str(recipe),
        "--seeds",
        "0,1",
        "--runs-dir",
        str(runs_dir),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [
        subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [p.communicate(timeout=600) for p in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert "Traceback" not in err
    summaries = summary_of(runs_dir)
    assert len(summaries) == 2 and summaries[0]["sweep_id"] != summaries[1]["sweep_id"]
    run_ids = {load_recipe(recipe, [f"seed={s}"]).run_id: s for s in (0, 1)}
    for run_id, seed in run_ids.items():
        outcomes = sorted(by_run(s)[run_id]["outcome"] for s in summaries)
        # trained by exactly one sweep; the other found it complete or busy
        assert outcomes.count("ran") == 1 and set(outcomes) <= {"ran", "skipped", "busy"}, outcomes
        log = (runs_dir / run_id / "log.txt").read_text()
        assert log.count("epoch 1/1 loss") == 1 and log.count("test_resnet (") == 1, log
        rows = read_metrics(runs_dir / run_id / "metrics.parquet")
        assert [(r["epoch"], r["status"], r["seed"]) for r in rows] == [(1, "completed", seed)]
    leftovers = [p.name for p in runs_dir.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []  # every write was atomic and completed


def test_the_repo_has_sweep_files():
    assert repo_files("sweeps", "*.yaml")


@pytest.mark.parametrize("path", repo_files("sweeps", "*.yaml"), ids=repo_id)
def test_every_sweep_file_in_the_repo_plans(path):
    runs = plan_sweep(sweep_file=path)
    assert runs and not [r.error for r in runs if r.error], path
