"""Distillation pipelines end to end on a tiny subset: teachers from runs, epochs and files."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
import torch

from harness.config import load_recipe
from harness.models.build import build_model
from harness.store.metrics_file import read_metrics
from harness.store.rundir import RunDir
from harness.training.lifecycle import train
from harness.training.loop import RunOptions, Trainer
from tests.support.recipes import KD, REPO, run_cli, tiny_recipe, write_recipe

pytestmark = pytest.mark.fashion

QUIET = RunOptions(progress=False)


def save_weights(path, arch: str, num_classes: int, in_chans: int) -> None:
    torch.save(build_model(arch, num_classes, in_chans).state_dict(), path)


@pytest.fixture
def stage1(tmp_path):
    """A tiny CE run that other recipes use as teacher; keeps its epoch-1 checkpoint."""
    return write_recipe(tmp_path / "recipes" / "stage1.yaml", tiny_recipe(checkpoint={"save_epochs": [1]}))


@pytest.mark.slow
def test_tfkd_self_trains_stage1_first_then_reuses_it(tmp_path, stage1, runs_dir):
    stage2 = write_recipe(
        tmp_path / "recipes" / "stage2.yaml",
        tiny_recipe(method="tfkd_self", strategy=KD, teacher={"run": "stage1.yaml"}),
    )
    proc = run_cli("run", str(stage2), "--runs-dir", str(runs_dir), check=True)
    teacher_id = load_recipe(stage1).run_id
    assert f"teacher run {teacher_id} is missing: training it first" in proc.stderr
    teacher_rows = read_metrics(runs_dir / teacher_id / "metrics.parquet")
    student_rows = read_metrics(runs_dir / load_recipe(stage2).run_id / "metrics.parquet")
    assert [r["status"] for r in teacher_rows] == ["completed", "completed"]
    for row in student_rows:
        assert row["method"] == "tfkd_self" and row["teacher_arch"] == "test_resnet"
        assert row["teacher_source"] == teacher_id
        # the teacher is evaluated on the same split with the same code as its own run
        assert row["teacher_top1"] == pytest.approx(teacher_rows[-1]["top1"])
        assert row["teacher_nll"] == pytest.approx(teacher_rows[-1]["nll"])
        assert row["teacher_stability"] == pytest.approx(teacher_rows[-1]["stability"])
        assert set(row["train_parts"]) == {"ce", "kl"}

    again = run_cli(
        "run",
        str(stage2),
        "--runs-dir",
        str(runs_dir),
        "--set",
        "seed=0",
        "--set",
        "strategy.params.temperature=2",
        check=True,
    )
    assert "training it first" not in again.stderr  # stage 1 exists: reused


@pytest.mark.slow
def test_defective_teacher_uses_the_epoch_checkpoint(tmp_path, stage1, runs_dir):
    student = load_recipe(
        write_recipe(
            tmp_path / "recipes" / "defective.yaml",
            tiny_recipe(method="defective_kd", strategy=KD, teacher={"run": "stage1.yaml", "epoch": 1}),
        )
    )
    rows = train(student, runs_dir, QUIET).rows
    teacher_id = load_recipe(stage1).run_id
    teacher_rows = read_metrics(runs_dir / teacher_id / "metrics.parquet")
    assert rows[0]["teacher_source"] == f"{teacher_id}@epoch1"
    assert rows[0]["teacher_top1"] == pytest.approx(teacher_rows[0]["top1"])  # epoch 1, not the end
    assert rows[0]["teacher_nll"] == pytest.approx(teacher_rows[0]["nll"])


@pytest.mark.slow
def test_teacher_epoch_that_was_not_kept_is_a_clear_error(tmp_path, runs_dir):
    plain = write_recipe(tmp_path / "recipes" / "plain.yaml", tiny_recipe())
    train(load_recipe(plain), runs_dir, QUIET)  # completed without epoch checkpoints
    student = write_recipe(
        tmp_path / "recipes" / "s.yaml", tiny_recipe(strategy=KD, teacher={"run": "plain.yaml", "epoch": 1})
    )
    proc = run_cli("run", str(student), "--runs-dir", str(runs_dir))
    assert proc.returncode == 2
    assert "kept no checkpoint at epoch 1" in proc.stderr and "Traceback" not in proc.stderr


def test_teacher_not_trained_when_told_not_to(tmp_path, stage1, runs_dir):
    student = write_recipe(
        tmp_path / "recipes" / "s.yaml",
        tiny_recipe(strategy=KD, teacher={"run": "stage1.yaml", "train_if_missing": False}),
    )
    proc = run_cli("run", str(student), "--runs-dir", str(runs_dir))
    assert proc.returncode == 2
    assert "is not complete (it has not run)" in proc.stderr
    assert not any(p.name.startswith("stage1") for p in runs_dir.iterdir())


@pytest.mark.slow
def test_teacher_from_a_weights_file(tmp_path, runs_dir):
    torch.manual_seed(0)
    weights = tmp_path / "teacher.pt"
    torch.save(build_model("test_resnet", 10, 1).state_dict(), weights)
    student = load_recipe(
        write_recipe(
            tmp_path / "s.yaml",
            tiny_recipe(strategy=KD, teacher={"arch": "test_resnet", "weights": str(weights)}),
        )
    )
    rows = train(student, runs_dir, QUIET).rows
    assert rows[-1]["teacher_source"] == str(weights)
    assert 0 <= rows[-1]["teacher_top1"] <= 100


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "file not found"),
        (
            lambda p: torch.save(build_model("test_resnet", 5, 1).state_dict(), p),
            "has 5 classes, the student's",
        ),
        (lambda p: torch.save(build_model("test_resnet", 10, 3).state_dict(), p), "takes 3 input channels"),
        (lambda p: p.write_bytes(b"not a checkpoint"), "not a readable checkpoint"),
        (lambda p: torch.save(build_model("resnet10t", 10, 1).state_dict(), p), "do not match teacher arch"),
    ],
)
def test_bad_teacher_weights_are_one_line_errors(tmp_path, runs_dir, make, message):
    weights = tmp_path / "teacher.pt"
    make(weights)
    student = write_recipe(
        tmp_path / "s.yaml",
        tiny_recipe(strategy=KD, teacher={"arch": "test_resnet", "weights": str(weights)}),
    )
    proc = run_cli("run", str(student), "--runs-dir", str(runs_dir))
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last
    assert "Traceback" not in proc.stderr


def test_teacher_sees_the_students_exact_view_frozen(tmp_path, runs_dir):
    torch.manual_seed(0)
    weights = tmp_path / "teacher.pt"
    torch.save(build_model("test_resnet", 10, 1).state_dict(), weights)
    recipe = load_recipe(
        write_recipe(
            tmp_path / "s.yaml",
            tiny_recipe(
                strategy=KD,
                teacher={"arch": "test_resnet", "weights": str(weights)},
                data={"augment": {"crop_padding": 4, "hflip": True, "rotation_degrees": 15}},
            ),
        )
    )
    trainer = Trainer(recipe, runs_dir, QUIET)
    trainer.build()
    seen: dict[str, list[torch.Tensor]] = {"student": [], "teacher": []}
    trainer.model.register_forward_pre_hook(lambda m, a: seen["student"].append(a[0].clone()))
    trainer.teacher.model.register_forward_pre_hook(lambda m, a: seen["teacher"].append(a[0].clone()))
    before = {k: v.clone() for k, v in trainer.teacher.model.state_dict().items()}
    from harness.training.tracking import LossTracker

    tracker = LossTracker(trainer.device)
    trainer.train_model.train()
    for (_, batch), _ in zip(trainer.batches(0), range(2), strict=False):
        trainer.train_step(batch, tracker)
    assert len(seen["student"]) == len(seen["teacher"]) == 2
    for s, t in zip(seen["student"], seen["teacher"], strict=True):
        assert torch.equal(s, t)
    assert not trainer.teacher.model.training
    assert all(not p.requires_grad for p in trainer.teacher.model.parameters())
    after = trainer.teacher.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN stats untouched too


def test_kd_recipe_needs_a_teacher_run_that_exists(tmp_path, runs_dir):
    student = write_recipe(tmp_path / "s.yaml", tiny_recipe(strategy=KD, teacher={"run": "nowhere.yaml"}))
    proc = run_cli("run", str(student), "--runs-dir", str(runs_dir))
    assert proc.returncode == 2
    assert "teacher.run:" in proc.stderr and "recipe file not found" in proc.stderr


@pytest.mark.slow
def test_student_waits_for_a_teacher_run_another_process_holds(tmp_path, stage1, runs_dir):
    """Two students of one teacher started together (sweep slots, two sweeps): the one that finds
    the teacher run locked waits for the lock, then takes the teacher over, instead of failing."""
    recipe = tiny_recipe(strategy=KD, teacher={"run": "stage1.yaml"})
    student = write_recipe(tmp_path / "recipes" / "s.yaml", recipe)
    teacher = RunDir(runs_dir, load_recipe(stage1).run_id)
    teacher.acquire()  # this process stands for the other student, training the teacher
    cmd = [sys.executable, "-m", "harness", "run", str(student), "--runs-dir", str(runs_dir)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, text=True, **out)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while not any("waiting for it" in line for line in lines):
            assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)
            time.sleep(0.2)
        time.sleep(2.5)  # past the next look at the lock: still waiting, the teacher untouched
        assert proc.poll() is None, "".join(lines)
        assert not teacher.metrics.exists()
    finally:
        teacher.release()
    proc.wait(timeout=300)
    reader.join(timeout=10)
    assert proc.returncode == 0, "".join(lines)
    assert teacher.read_status()["status"] == "completed"
    rows = read_metrics(runs_dir / load_recipe(student).run_id / "metrics.parquet")
    assert rows[-1]["status"] == "completed" and rows[-1]["teacher_source"] == teacher.run_id
