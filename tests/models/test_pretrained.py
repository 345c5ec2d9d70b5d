"""timm pretrained weights: local files through timm's overlay, origins, tags, offline errors."""

from __future__ import annotations

import json

import pytest
import timm
import torch

from harness.config import load_recipe, recipe_dir
from harness.errors import RecipeError, TeacherError
from harness.models import pretrained
from harness.models.build import build_student
from harness.teachers.teacher import load_teacher, pretrained_weights
from tests.support.recipes import kd_strategy, run_cli, tiny_recipe, write_recipe

pytestmark = pytest.mark.fashion

KD = kd_strategy(alpha=0.5, temperature=2.0)


@pytest.fixture
def weights(tmp_path):
    """A test_resnet state_dict for Fashion-MNIST's shape (1 channel, 10 classes)."""
    torch.manual_seed(123)
    model = timm.create_model("test_resnet", num_classes=10, in_chans=1)
    path = tmp_path / "test_resnet_fm.pth"
    torch.save(model.state_dict(), path)
    return path, model.state_dict()


def test_student_from_local_file_through_timm_overlay(tmp_path, weights):
    path, state = weights
    recipe_path = write_recipe(
        tmp_path / "r.yaml", tiny_recipe(model={"arch": "test_resnet", "pretrained_file": str(path)})
    )
    recipe = load_recipe(recipe_path)
    model, origin = build_student(recipe, 10, 1, recipe_dir(recipe))
    got = model.state_dict()
    # the backbone is the file's; the classifier is new: the tag's weights predict 1000 classes
    assert all(torch.equal(got[k], v) for k, v in state.items() if not k.startswith("fc."))
    assert not torch.equal(got["fc.weight"], state["fc.weight"])
    assert origin == {
        "tag": "test_resnet.r160_in1k",
        "file": str(path),
        "sha256": pretrained.file_sha256(path),
        "from": "file",
    }


def test_pretrained_file_hash_is_in_the_run_identity(tmp_path, weights):
    path, _ = weights
    plain = load_recipe(write_recipe(tmp_path / "a.yaml", tiny_recipe()))
    with_file = tiny_recipe(model={"arch": "test_resnet", "pretrained_file": str(path)})
    first = load_recipe(write_recipe(tmp_path / "a.yaml", with_file))
    assert first.hash() != plain.hash()
    assert "pretrained" not in plain.identity()["model"]  # earlier runs keep their identity
    moved = tmp_path / "elsewhere.pth"
    moved.write_bytes(path.read_bytes())
    same = load_recipe(
        write_recipe(
            tmp_path / "a.yaml", {**with_file, "model": {**with_file["model"], "pretrained_file": str(moved)}}
        )
    )
    assert same.hash() == first.hash()  # the file's content, not its path
    torch.save({"fc.weight": torch.zeros(1)}, moved)
    assert load_recipe(tmp_path / "a.yaml").hash() != first.hash()


@pytest.mark.slow
def test_pretrained_teacher_run_records_origin(tmp_path, weights, runs_dir):
    path, _ = weights
    recipe = write_recipe(
        tmp_path / "kd.yaml",
        tiny_recipe(
            strategy=KD,
            teacher={"arch": "test_resnet", "pretrained": "r160_in1k", "pretrained_file": str(path)},
            schedule={"epochs": 1},
        ),
    )
    proc = run_cli("run", str(recipe), "--runs-dir", str(runs_dir))
    assert proc.returncode == 0, proc.stderr
    (run,) = [p for p in runs_dir.iterdir() if (p / "provenance.json").exists()]
    record = json.loads((run / "provenance.json").read_text())["pretrained"]
    assert record["teacher"]["sha256"] == pretrained.file_sha256(path)
    assert record["teacher"]["tag"] == "test_resnet.r160_in1k"


def test_pretrained_teacher_keeps_the_files_classifier(tmp_path, weights):
    path, state = weights
    recipe = load_recipe(
        write_recipe(
            tmp_path / "kd.yaml",
            tiny_recipe(strategy=KD, teacher={"arch": "test_resnet", "pretrained_file": str(path)}),
        )
    )
    tag, file = pretrained_weights(recipe)
    common = {"kwargs": {}, "weights": file, "source": tag, "in_chans": 1, "device": torch.device("cpu")}
    teacher = load_teacher(tag, num_classes=10, **common)
    assert all(torch.equal(teacher.model.state_dict()[k], v) for k, v in state.items())
    with pytest.raises(TeacherError, match=r"do not fit test_resnet\.r160_in1k .*fc"):
        load_teacher(tag, num_classes=7, **common)


@pytest.mark.slow
def test_unknown_tag_is_one_line_with_close_matches(recipe_file):
    path = recipe_file(model={"arch": "resnet50", "pretrained": "a1_in1kk"})
    proc = run_cli("validate", str(path))
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert "model.pretrained" in line and "resnet50.a1_in1kk" in line and "'resnet50.a1_in1k'" in line
    with pytest.raises(RecipeError, match="another architecture"):
        pretrained.resolve_tag("resnet50", "resnet18.a1_in1k", "model.pretrained")
    assert pretrained.resolve_tag("resnet50", True, "p") == "resnet50.a1_in1k"


@pytest.mark.slow
def test_offline_missing_cache_entry_is_one_line(recipe_file, runs_dir, tmp_path):
    path = recipe_file(model={"arch": "test_resnet", "pretrained": True}, schedule={"epochs": 1})
    env = {
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"),
    }
    proc = run_cli("run", str(path), "--runs-dir", str(runs_dir), env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert "test_resnet.r160_in1k" in line and "not in the Hugging Face cache" in line
    assert "timm.create_model('test_resnet.r160_in1k', pretrained=True)" in line
