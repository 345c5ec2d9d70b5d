"""Experiment trackers (harness/training/trackers.py), read back with each tracker's own reader.

The runs are real and offline: TensorBoard event files read with tensorboard's EventAccumulator,
an MLflow folder store read with MlflowClient, a W&B offline run's `.wandb` files decoded with the
wandb package's protobuf (tests/support/wandb_log.py). A run is interrupted in-process by a real
SIGTERM (sent when it says its first epoch's line) and resumed from the checkpoint a kill -9 between
the epoch's log and its checkpoint leaves on disk, so that the epoch is trained and evaluated again.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.config import load_recipe
from harness.errors import InterruptedRun, RecipeError
from harness.store.metrics_file import read_metrics
from harness.sweeps.plan import plan_sweep
from harness.training.lifecycle import train
from harness.training.loop import RunOptions
from harness.training.trackers import wandb_mode
from tests.support import wandb_log
from tests.support.recipes import SMALL, tiny_recipe, write_recipe
from tests.support.runs import STEPS_PER_EPOCH

pytestmark = pytest.mark.fashion

LOG_EVERY = 4
STEPS = [LOG_EVERY * k for k in range(1, 2 * STEPS_PER_EPOCH // LOG_EVERY + 1)]  # 4, 8, 12, 16


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No W&B API key anywhere (a node without an account), no WANDB_MODE: `auto` goes offline."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("WANDB_API_KEY", "WANDB_MODE", "NETRC"):
        monkeypatch.delenv(name, raising=False)


def tracked_recipe(tmp_path: Path, trackers: list[str]) -> Path:
    recipe = tiny_recipe(
        data=SMALL,
        runtime={"device": "cpu", "log_every": LOG_EVERY},
        checkpoint={"every_steps": 1},
        tracking={"trackers": trackers, "mlflow": {"tracking_uri": str(tmp_path / "mlruns")}},
    )
    return write_recipe(tmp_path / "recipes" / "tracked.yaml", recipe)


class OnLine(logging.Handler):
    """Calls `act()` once, when the harness logger says a line starting with `prefix`."""

    def __init__(self, prefix: str, act: Callable[[], None]) -> None:
        super().__init__(logging.INFO)
        self.prefix, self.act, self.done = prefix, act, False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.done and record.getMessage().startswith(self.prefix):
            self.done = True
            self.act()


def on_line(prefix: str, act: Callable[[], None]) -> Callable[[], None]:
    """Install an `OnLine` handler on the harness logger; returns its removal."""
    logger = logging.getLogger("harness")
    handler, level = OnLine(prefix, act), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    def remove() -> None:
        logger.removeHandler(handler)
        logger.setLevel(level)

    return remove


def test_tracking_is_validated_strictly_and_leaves_the_run_id(recipe_file):
    path = recipe_file()
    plain = load_recipe(path)
    tracked = load_recipe(path, ["tracking.trackers=[tensorboard, wandb]", "tracking.wandb.tags=[a]"])
    assert tracked.tracking is not None and tracked.tracking.trackers == ["tensorboard", "wandb"]
    assert tracked.run_id == plain.run_id and tracked.config_hash() == plain.config_hash()
    assert "tracking" not in plain.to_yaml() and "tracking:" in tracked.to_yaml()
    for override, field in (
        ("tracking.wandb.projet=x", "tracking.wandb.projet"),
        ("tracking.trackers=[tensorbord]", "tracking.trackers"),
        ("tracking.trackers=[mlflow, mlflow]", "tracking.trackers"),
        ("tracking.wandb.mode=sometimes", "tracking.wandb.mode"),
    ):
        with pytest.raises(RecipeError, match=field.replace(".", r"\.")):
            load_recipe(path, [override])


def test_a_sweep_groups_its_runs_and_keeps_their_run_ids(recipe_file, tmp_path):
    path = recipe_file()
    sweep = tmp_path / "night.yaml"
    sweep.write_text(
        f"seeds: [0, 1]\nrecipes: [{path}]\ntracking: {{trackers: [mlflow], wandb: {{project: p}}}}\n"
    )
    planned = plan_sweep(sweep_file=sweep, track=["tensorboard"])
    plain = plan_sweep([str(path)], seeds=[0, 1])
    assert [r.run_id for r in planned] == [r.run_id for r in plain]
    for run in planned:
        assert run.recipe is not None and run.recipe.tracking is not None
        assert run.recipe.tracking.trackers == ["mlflow", "tensorboard"]
        assert run.recipe.tracking.group == "night" and run.recipe.tracking.wandb.project == "p"
    assert all(r.recipe.tracking is None for r in plain if r.recipe is not None)


@pytest.mark.slow  # a resume after an interrupt (docs/architecture.md: Markers)
def test_three_trackers_log_each_epoch_once_through_an_interrupt_and_resume(tmp_path, offline, caplog):
    path = tracked_recipe(tmp_path, ["tensorboard", "mlflow", "wandb"])
    runs_dir = tmp_path / "runs"
    recipe = load_recipe(path)
    run = runs_dir / recipe.run_id
    last, kept = run / "checkpoints" / "last.pt", tmp_path / "step7.pt"

    def strike() -> None:  # epoch 1 is logged; its step-7 checkpoint is the newest on disk
        shutil.copy(last, kept)
        os.kill(os.getpid(), signal.SIGTERM)

    remove = on_line("epoch 1/2", strike)
    try:
        with caplog.at_level(logging.INFO, "harness"), pytest.raises(InterruptedRun):
            train(recipe, runs_dir, RunOptions(progress=False))
    finally:
        remove()
    assert "wandb: no API key" in caplog.text and "offline" in caplog.text
    shutil.copy(kept, last)  # what a kill -9 before epoch 1's own checkpoint leaves
    result = train(recipe, runs_dir, RunOptions(resume=True, progress=False))
    rows = read_metrics(run / "metrics.parquet")
    assert [r["epoch"] for r in rows] == [1, 2] and result.status == "completed"
    assert "tracking:" not in caplog.text  # no tracker failed
    state = json.loads((run / "trackers.json").read_text())
    assert state["last_epoch"] == 2 and state["last_step"] == STEPS[-1]

    # TensorBoard: one folder in the run folder, two event files (two sessions), each epoch once
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    board.Reload()
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 2
    assert [e.step for e in board.Scalars("epoch/top1")] == [1, 2]
    assert [e.value for e in board.Scalars("epoch/top1")] == pytest.approx([r["top1"] for r in rows])
    assert [e.step for e in board.Scalars("step/loss")] == STEPS
    assert [e.step for e in board.Scalars("epoch/lr")] == [1, 2]
    assert board.Scalars("final/top1")[0].value == pytest.approx(rows[-1]["top1"])
    assert board.PluginTagToContent("hparams")  # the recipe's params

    # MLflow: one run, continued; params typed as the recipe has them, tags, the Parquet artifact
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=state["mlflow"]["tracking_uri"])
    mlrun = client.get_run(state["mlflow"]["run_id"])
    assert [m.step for m in client.get_metric_history(mlrun.info.run_id, "epoch/top1")] == [1, 2]
    assert [m.step for m in client.get_metric_history(mlrun.info.run_id, "step/loss")] == STEPS
    assert [m.step for m in client.get_metric_history(mlrun.info.run_id, "epoch/img_per_s")] == [1, 2]
    assert mlrun.data.params["optim.lr"] == "0.05" and mlrun.data.params["data.batch_size"] == "16"
    assert mlrun.data.tags["run_id"] == recipe.run_id and mlrun.data.tags["method"] == "ce"
    assert mlrun.data.tags["setting"] == recipe.setting()[0] and mlrun.info.status == "FINISHED"
    assert mlrun.data.metrics["final/top1"] == pytest.approx(rows[-1]["top1"])
    assert [a.path for a in client.list_artifacts(mlrun.info.run_id)] == ["metrics.parquet"]
    experiments = [e.name for e in client.search_experiments()]
    assert recipe.setting()[0] in experiments

    # W&B: two offline sessions of one run id under the run folder, each epoch in one of them
    files = sorted(run.glob("wandb/offline-run-*/*.wandb"))
    assert len(files) == 2
    assert set().union(*(wandb_log.run_ids(f) for f in files)) == {state["wandb"]["run_id"]}
    logged = [row for f in files for row in wandb_log.history(f)]
    assert [row["epoch"] for row in logged if "epoch/top1" in row] == [1, 2]
    assert [row["step"] for row in logged if "step/loss" in row] == STEPS
    config = wandb_log.config(files[0])
    assert config["optim.lr"] == 0.05 and config["data.batch_size"] == 16  # typed
    assert config["tag.run_id"] == recipe.run_id
    kinds = [r.WhichOneof("record_type") for r in wandb_log.records(files[1])]
    assert "artifact" in kinds and "artifact" not in [
        r.WhichOneof("record_type") for r in wandb_log.records(files[0])
    ]


def test_a_tracker_failing_mid_run_warns_once_and_the_run_completes(tmp_path, caplog):
    path = tracked_recipe(tmp_path, ["mlflow"])
    store = tmp_path / "mlruns"

    def break_store() -> None:  # the store goes away (a full or lost disk): a file where it was
        shutil.move(store, tmp_path / "mlruns.gone")
        store.write_text("not a folder")

    remove = on_line("epoch 1/2", break_store)
    try:
        with caplog.at_level(logging.INFO, "harness"):
            result = train(load_recipe(path), tmp_path / "runs", RunOptions(progress=False))
    finally:
        remove()
    assert result.status == "completed" and [r["epoch"] for r in result.rows] == [1, 2]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("tracking: mlflow failed")


def test_a_tracker_not_installed_exits_2_with_its_install_line_before_training(
    recipe_file, tmp_path, monkeypatch
):
    path = recipe_file()
    runs_dir = tmp_path / "runs"
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` fails as where it is not installed
    args = ["run", str(path), "--runs-dir", str(runs_dir), "--track", "tensorboard,wandb"]
    result = CliRunner().invoke(main, args)  # the real command, in-process
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        "error: tracking: wandb is not installed; pip install 'harness[wandb]' (or wandb)"
    ]
    assert not runs_dir.exists()
    sweep = CliRunner().invoke(main, ["sweep", str(path), "--runs-dir", str(runs_dir), "--track", "wandb"])
    assert sweep.exit_code == 2 and "pip install 'harness[wandb]'" in sweep.output
    assert not runs_dir.exists()


def test_wandb_goes_offline_without_a_key_or_a_server_and_follows_wandb_mode(offline, monkeypatch, caplog):
    with caplog.at_level(logging.INFO, "harness"):
        assert wandb_mode("auto") == "offline"
        assert caplog.messages[-1].startswith("wandb: no API key")
        monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
        monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens: refused at once
        assert wandb_mode("auto") == "offline"
        assert caplog.messages[-1].startswith("wandb: 127.0.0.1:9 does not answer")
    assert wandb_mode("offline") == "offline"
    monkeypatch.setenv("WANDB_MODE", "dryrun")
    assert wandb_mode("online") == "offline"  # the environment wins, as in wandb itself
