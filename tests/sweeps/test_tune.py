"""`harness tune`: equal-budget tuning with Optuna, trials as ordinary runs, through the real CLI.

A tests-sized tuning file: timm's test_resnet on 128 embedded Fashion-MNIST images with 64 held
out, one epoch, CE and label smoothing, 3 trials each, `--jobs 2`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from harness.cli import main
from harness.store.metrics_file import read_metrics
from tests.support.recipes import REPO, SMALL, repo_files, repo_id, run_cli, tiny_recipe, write_recipe

pytestmark = pytest.mark.fashion

DATA = {**SMALL, "holdout": {"size": 64}}


def tuning_file(folder: Path, **fields: Any) -> Path:
    """Two tiny base recipes (ce, label_smoothing) with a held-out split and a tuning file over them."""
    write_recipe(folder / "recipes" / "tiny_ce.yaml", tiny_recipe(data=DATA, schedule={"epochs": 1}))
    ls = tiny_recipe(data=DATA, schedule={"epochs": 1}, strategy={"name": "label_smoothing"})
    write_recipe(folder / "recipes" / "tiny_ls.yaml", ls)
    spec = {"recipes": ["recipes/tiny_*.yaml"], "trials": 3, "sampler": {"name": "tpe", "seed": 0}}
    path = folder / "tune.yaml"
    path.write_text(yaml.safe_dump({**spec, **fields}, sort_keys=False))
    return path


def trials(runs: Path, study: str = "tune") -> list[dict[str, Any]]:
    return pq.read_table(runs / "tuning" / study / "trials.parquet").to_pylist()


def run_folders(runs: Path) -> list[str]:
    return sorted(p.parent.name for p in runs.glob("*/metrics.parquet"))


# ------------------------------------------------------------------------------ bad input
BAD = [
    ({"space": {"optim.nope": {"log": [0.01, 0.1]}}}, "optim.nope", 2),
    ({"space": {"optim.lr": {"choice": ["fast", "slow"]}}}, "space.optim.lr", 2),
    ({"space": {"optim.lr": {"float": [0.1, 0.1]}}}, "space.optim.lr.float: empty or inverted", 2),
    ({"space": {"optim.lr": {"float": [0.3, 0.1]}}}, "empty or inverted range", 2),
    ({"space": {"optim.lr": {"log": [0, 0.1]}}}, "space.optim.lr.log: a log range must stay above 0", 2),
    ({"space": {"optim.lr": {"choice": [0.1]}}}, "at least two values", 2),
    ({"space": {"optim.lr": {"uniform": [0.1, 0.2]}}}, "space.optim.lr.uniform: unknown kind", 2),
    ({"trials": 0}, "trials", 2),
    ({"objective": "top1_last"}, "never reads the test split", 2),
    ({"sampler": {"name": "cmaes"}}, "sampler.name", 2),
    ({"extra": 1}, "extra: unknown key", 2),
]


@pytest.mark.parametrize(("fields", "message", "code"), BAD, ids=[b[1][:30] for b in BAD])
def test_bad_tuning_file_is_one_line_and_writes_nothing(tmp_path, fields, message, code):
    path = tuning_file(tmp_path, **fields)
    runs = tmp_path / "runs"
    result = CliRunner().invoke(main, ["tune", "--file", str(path), "--runs-dir", str(runs)])
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and str(path) in lines[0]
    assert not runs.exists()


def test_storage_that_cannot_open_exits_74_and_a_recipe_without_holdout_is_refused(tmp_path):
    path = tuning_file(tmp_path)
    runs = tmp_path / "runs"
    url = f"sqlite:///{tmp_path}/no/such/folder/t.db"
    args = ["tune", "--file", str(path), "--runs-dir", str(runs)]
    result = CliRunner().invoke(main, [*args, "--storage", url])
    assert result.exit_code == 74 and "cannot be opened" in result.output and not runs.exists()
    write_recipe(tmp_path / "recipes" / "tiny_ce.yaml", tiny_recipe(data=SMALL))
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "data.holdout: required by tuning" in result.output
    assert not runs.exists()


def test_default_space_of_every_strategy_fits_its_params():
    """Every registered strategy's SPACE names fields of its Params with valid distributions."""
    import dataclasses

    from harness.strategies import available, get
    from harness.sweeps.tuning import default_space, parse_dist

    for name in available():
        params = get(name).Params
        fields = {f.name for f in dataclasses.fields(params)} if params else set()
        for key, value in default_space(name).items():
            assert key.removeprefix("strategy.params.") in fields, (name, key)
            parse_dist(value, key)


def test_a_recipe_entry_overrides_the_budget_and_the_summary_says_so(tmp_path):
    from harness.sweeps.tune import TuneResult, plan_tuning

    path = tuning_file(
        tmp_path, recipes=["recipes/tiny_ce.yaml", {"path": "recipes/tiny_ls.yaml", "trials": 5}]
    )
    _, tuned, name = plan_tuning(path, None)
    assert name == "tune" and [(t.method, t.trials) for t in tuned] == [("ce", 3), ("label_smoothing", 5)]
    assert set(tuned[1].space) == {"strategy.params.epsilon", "optim.lr"} and set(tuned[0].space) == {
        "optim.lr"
    }
    budgets = {t.method: t.trials for t in tuned}
    text = TuneResult(tmp_path, {}, {}, {}, budgets=budgets).render()
    assert "unequal budgets (a recipe entry's trials): ce 3, label_smoothing 5" in text
    assert "unequal" not in TuneResult(tmp_path, {}, {}, {}, budgets={"ce": 3, "kd": 3}).render()


def test_plan_lists_every_trial_and_final_seed_and_writes_nothing(tmp_path):
    path = tuning_file(tmp_path, final_seeds=2)
    runs = tmp_path / "runs"
    result = CliRunner().invoke(main, ["tune", "--file", str(path), "--runs-dir", str(runs), "--plan"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for name in ("tiny_ce", "tiny_ls"):
        assert sum(line.startswith(f"{name} trial ") for line in lines) == 3
        assert sum(line.startswith(f"{name} final seed ") for line in lines) == 2
    assert lines[-1].startswith("total: ") and "over 10 runs" in lines[-1] and not runs.exists()


# ------------------------------------------------------------------------------ a study
@pytest.mark.slow
def test_tune_jobs_2_kill_9_rerun_then_the_same_seed_and_final_seeds(tmp_path):
    """One tests-sized study (2 methods x 3 trials, 1 epoch, `--jobs 2`, `--track tensorboard`):
    the driver is killed (-9) once a trial completed and rerun: nothing lost, nothing doubled; a
    new study of the same seed asks the same parameters, so finds the same runs complete; a changed
    space is refused; final seeds retrain each method's best."""
    path = tuning_file(tmp_path)
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "harness", "tune", "--file", str(path), "--runs-dir", str(runs)]
    cmd += ["--jobs", "2", "--device", "cpu", "--no-leaderboard"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    driver = subprocess.Popen(
        [*cmd, "--track", "tensorboard"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    table = runs / "tuning" / "tune" / "trials.parquet"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and driver.poll() is None:
        if table.exists() and any(r["state"] == "complete" for r in trials(runs)):
            break
        time.sleep(0.2)
    assert driver.poll() is None, "the driver ended before a trial completed"
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    assert any(r["state"] == "running" for r in trials(runs))
    subprocess.run(
        [*cmd, "--track", "tensorboard"], cwd=tmp_path, env=env, check=True, capture_output=True, timeout=600
    )
    first = trials(runs)
    assert len(first) == 6 and {r["state"] for r in first} == {"complete"}
    assert {r["method"] for r in first} == {"ce", "label_smoothing"} and {r["budget"] for r in first} == {3}
    assert len({r["run_id"] for r in first}) == 6 and run_folders(runs) == sorted(r["run_id"] for r in first)
    for r in first:
        rows = read_metrics(runs / r["run_id"] / "metrics.parquet")
        assert len(rows) == 1  # each run trained its epoch once (a resumed run continues, never restarts)
        # the objective is the run's last held-out top-1, never the test split's
        assert r["objective"] == rows[-1]["holdout_top1"] and r["epochs_trained"] == 1
        assert r["device_seconds"] == pytest.approx(sum(x["epoch_time_s"] for x in rows))
        assert "optim.lr" in json.loads(r["params"])
        # --track: every trial logged to TensorBoard too (not part of its run id: below)
        assert list((runs / r["run_id"] / "tensorboard").glob("events.out.tfevents.*")), r["run_id"]
    mtimes = {p: p.stat().st_mtime_ns for p in runs.glob("*/metrics.parquet")}

    # the same seed in a new study, without --track: the same parameters, so the same runs, found complete
    args = ["tune", "--file", str(path), "--runs-dir", str(runs), "--jobs", "2", "--device", "cpu"]
    result = CliRunner().invoke(main, [*args, "--study-name", "again", "--no-leaderboard"])
    assert result.exit_code == 0, result.output
    again = trials(runs, "again")
    key = [(r["method"], r["trial"], r["params"], r["run_id"], r["objective"]) for r in first]
    assert [(r["method"], r["trial"], r["params"], r["run_id"], r["objective"]) for r in again] == key
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items())
    best = {r["method"]: r for r in sorted(first, key=lambda r: (r["objective"], -r["trial"]))}
    for method, row in best.items():
        assert f"{method:<20} best {row['objective']:.2f}" in result.output

    # once more with final seeds: no trial asked; each method's best retrained on a new seed
    subprocess.run([*cmd, "--final-seeds", "1"], cwd=tmp_path, env=env, check=True, capture_output=True)
    assert trials(runs) == first
    final = json.loads((runs / "tuning" / "tune" / "final.json").read_text())
    assert sorted(final) == ["ce", "label_smoothing"]
    for method, entry in final.items():
        assert entry["params"] == json.loads(best[method]["params"]) and entry["budget"] == 3
        (run_id,) = entry["run_ids"]
        last = read_metrics(runs / run_id / "metrics.parquet")[-1]
        assert last["recipe_name"].endswith("_tuned") and last["seed"] != 0

    # a changed space is refused unless the study gets a new name
    tuning_file(tmp_path, space={"optim.lr": {"log": [0.02, 0.2]}})
    result = CliRunner().invoke(main, [*args, "--no-leaderboard"])
    assert result.exit_code == 2 and "--study-name" in result.output and len(trials(runs)) == 6


@pytest.mark.slow
def test_a_teacher_run_the_trials_read_trains_once_before_them(tmp_path):
    """A KD trial reads a teacher run nobody trained yet: the driver trains it first, once, through
    the sweep, then the trials (with several in flight, each would otherwise meet it missing)."""
    tuning_file(tmp_path)  # writes recipes/tiny_ce.yaml, the teacher's recipe
    strategy = {"name": "kd", "params": {"alpha": 0.5, "temperature": 4.0}}
    kd = tiny_recipe(data=DATA, schedule={"epochs": 1}, strategy=strategy)
    kd["teacher"] = {"run": "tiny_ce.yaml", "seed": 0}
    write_recipe(tmp_path / "recipes" / "tiny_kd.yaml", kd)
    path = tmp_path / "kd.yaml"
    spec = {"recipes": ["recipes/tiny_kd.yaml"], "trials": 1, "sampler": {"name": "random", "seed": 0}}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    runs = tmp_path / "runs"
    args = ["tune", "--file", str(path), "--runs-dir", str(runs), "--jobs", "2", "--device", "cpu"]
    run_cli(*args, "--no-leaderboard", cwd=tmp_path, check=True)
    rows = trials(runs, "kd")
    assert [r["state"] for r in rows] == ["complete"]
    teachers = [f for f in run_folders(runs) if f.startswith("tiny_ce")]
    assert len(teachers) == 1, run_folders(runs)
    teacher_log = (runs / teachers[0] / "log.txt").read_text()
    assert teacher_log.count("epoch 1/1") == 1  # trained once
    done = (runs / teachers[0] / "metrics.parquet").stat().st_mtime_ns
    for r in rows:  # each trial distilled from that run, whose folder was made after it completed
        source = read_metrics(runs / r["run_id"] / "metrics.parquet")[-1]["teacher_source"]
        assert source.startswith(teachers[0])
        assert (runs / r["run_id"] / "recipe.yaml").stat().st_mtime_ns > done


@pytest.mark.parametrize("path", repo_files("sweeps/tuning", "*.yaml"), ids=repo_id)
def test_every_tuning_file_in_the_repo_plans(path):
    from harness.sweeps.tune import plan_tuning

    _, tuned, _ = plan_tuning(path, None)
    assert tuned and all(t.trials >= 1 and "optim.lr" in t.space for t in tuned), path
