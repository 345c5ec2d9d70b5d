"""The paper suite: every recipe validates and runs (smoke), the CIFAR variants, the nightly sweep.

Smoke runs train each recipe in-process for two steps on generated data of its shape (see
`harness.training.smoke`); teacher runs are smoke-transformed too and shared through one runs folder, as
the nightly sweep shares them. One test goes through the real `harness run --smoke` command.
"""

from __future__ import annotations

import glob
import math
import re
from pathlib import Path

import pytest
import timm
import torch
import yaml
from click.testing import CliRunner

from harness.cli import main
from harness.config import load_recipe
from harness.models.build import CIFAR_ARCHS, build_model
from harness.teachers.teacher import teacher_recipe
from harness.training.lifecycle import train
from harness.training.loop import RunOptions
from harness.training.smoke import one_thread, run_smoke, smoke, smoke_image_size
from tests.support.recipes import REPO, run_cli

RECIPES_DIR = REPO / "recipes"
SUITE_DIRS = ("cifar100", "imagenet")  # the paper suite; recipes/fashion_mnist is the CPU suite
ALL_RECIPES = sorted(RECIPES_DIR.rglob("*.yaml"))
SUITE_RECIPES = sorted(p for d in SUITE_DIRS for p in (RECIPES_DIR / d).glob("*.yaml"))
NIGHTLY = REPO / "sweeps" / "weekly_gpu.yaml"  # the whole suite (sweeps/nightly_gpu.yaml: a night's part)


def _id(path: Path) -> str:
    return str(path.relative_to(RECIPES_DIR))


# ------------------------------------------------------------------------------ recipes
def test_the_suite_is_there():
    names = {_id(p) for p in SUITE_RECIPES}
    for expected in (
        "cifar100/resnet18_ce.yaml",
        "cifar100/resnet18_label_smoothing.yaml",
        "cifar100/mobilenetv2_kd_resnet18.yaml",
        "cifar100/resnet18_tfkd_self.yaml",
        "cifar100/resnet18_tfkd_reg.yaml",
        "cifar100/resnet18_reversed_kd_mobilenetv2.yaml",
        "cifar100/mobilenetv2_defective_kd_resnet18_e1.yaml",
        "imagenet/resnet50_ce.yaml",
        "imagenet/resnet50_label_smoothing.yaml",
        "imagenet/resnet50_tfkd_reg.yaml",
        "imagenet/resnet18_kd_t1_resnet50.yaml",
        "imagenet/resnet18_kd_t1_resnet50_ls.yaml",
    ):
        assert expected in names


@pytest.mark.parametrize("path", ALL_RECIPES, ids=_id)
def test_recipe_validates(path):
    recipe = load_recipe(path)
    assert recipe.name == path.stem
    if recipe.teacher is not None and recipe.teacher.run is not None:
        teacher = teacher_recipe(recipe)  # the teacher recipe exists, validates, has the epoch asked for
        assert teacher.seed == recipe.seed
        if recipe.teacher.epoch is not None:
            assert recipe.teacher.epoch in teacher.checkpoint.save_epochs


@pytest.mark.parametrize("path", SUITE_RECIPES, ids=_id)
def test_recipe_names_its_source_and_target(path):
    comments = [line[1:].strip() for line in path.read_text().splitlines() if line.startswith("#")]
    assert any(c.startswith("Source: ") for c in comments), f"{path}: no '# Source:' line"
    assert any(c.startswith("Target: ") for c in comments), f"{path}: no '# Target:' line"
    recipe = load_recipe(path)
    assert recipe.method in METHODS, f"{path}: method {recipe.method!r} is not in docs/paper_suite.md"
    # the official Tf-KD code reduces every KL by N*K; Shen et al.'s KD is a per-sample KL
    params = recipe.strategy.params
    if recipe.strategy.name == "tfkd_reg":
        assert params["variant"] == "code" and params["kl_reduction"] == "legacy_mean"
    if recipe.strategy.name == "kd":
        shen = recipe.method.startswith("kd_t")
        assert params["kl_reduction"] == ("batchmean" if shen else "legacy_mean")


METHODS = (
    "ce",
    "label_smoothing",
    "kd",
    "tfkd_self",
    "tfkd_reg",
    "reversed_kd",
    "defective_kd",
    "kd_t1",
    "kd_t1_ls_teacher",
    "kd_t2",
    "kd_t2_ls_teacher",
    "kd_t64",
    "kd_t64_ls_teacher",
)


def test_method_vocabulary_is_documented():
    doc = (REPO / "docs" / "paper_suite.md").read_text()
    for method in METHODS:
        assert f"`{method}`" in doc


@pytest.mark.parametrize("path", SUITE_RECIPES, ids=_id)
def test_every_suite_recipe_is_in_the_docs_table(path):
    doc = (REPO / "docs" / "paper_suite.md").read_text()
    assert f"`{_id(path)}`" in doc, f"{_id(path)} missing from docs/paper_suite.md"


def test_resnet50_tfkd_reg_at_the_top_level_is_the_imagenet_recipe():
    link = RECIPES_DIR / "resnet50_tfkd_reg.yaml"
    assert link.is_symlink() and link.resolve() == (RECIPES_DIR / "imagenet" / "resnet50_tfkd_reg.yaml")
    top, real = load_recipe(link), load_recipe(RECIPES_DIR / "imagenet" / "resnet50_tfkd_reg.yaml")
    assert top.name == "resnet50_tfkd_reg" and top.run_id == real.run_id
    assert top.data.dataset == "imagenet" and top.model.arch == "resnet50"
    assert top.strategy.name == "tfkd_reg" and top.schedule.epochs == 90
    p = top.strategy.params
    assert (p["temperature"], p["alpha"], p["correct_prob"]) == (20, 0.1, 0.99)
    result = CliRunner().invoke(main, ["validate", str(link)])  # the real command, in-process
    assert result.exit_code == 0 and f"ok: {link} ({real.run_id})" in result.output


# ------------------------------------------------------------------------------ CIFAR variants
@pytest.mark.parametrize("arch", CIFAR_ARCHS)
def test_cifar_variant_keeps_32px_in_its_stem(arch):
    assert timm.is_model(arch)
    model = build_model(arch, num_classes=100, in_chans=3).eval()
    sizes: dict[str, int] = {}
    for info in model.feature_info:
        module = model.get_submodule(info["module"])
        module.register_forward_hook(lambda m, i, out, k=info["module"]: sizes.__setitem__(k, out.shape[-1]))
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 100)
    first = model.feature_info[0]["module"]
    assert sizes[first] == 32, f"{arch}: the stem output is {sizes[first]}x{sizes[first]}, not 32x32"
    for info in model.feature_info:  # timm's metadata stays true: reduction = input / feature size
        assert info["reduction"] == 32 // sizes[info["module"]], info
    assert model.pretrained_cfg["input_size"] == (3, 32, 32)


def test_cifar_variants_refuse_pretrained_weights():
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model("resnet18_cifar", pretrained=True)


def test_resnext29_8x64d_has_the_paper_widths():
    model = build_model("resnext29_8x64d_cifar", num_classes=100, in_chans=3)
    stages = [model.layer1, model.layer2, model.layer3]
    assert [len(s) for s in stages] == [3, 3, 3]  # 9 blocks x 3 layers + stem + classifier = 29
    assert [s[0].conv2.groups for s in stages] == [8, 8, 8]
    assert [s[0].conv2.out_channels for s in stages] == [512, 1024, 2048]  # 8 groups x 64, 128, 256
    assert [s[-1].conv3.out_channels for s in stages] == [256, 512, 1024]


# ------------------------------------------------------------------------------ smoke transform
def test_smoke_transform_shrinks_data_and_schedule_only():
    recipe = load_recipe(RECIPES_DIR / "cifar100" / "resnet18_tfkd_self.yaml")
    s = smoke(recipe)
    assert s.name == "resnet18_tfkd_self_smoke" and s.run_id != recipe.run_id
    assert smoke(s).run_id == s.run_id  # idempotent
    d = s.data
    assert (d.dataset, d.backend, d.num_classes, d.channels) == ("synthetic", "memory", 100, 3)
    assert s.data.image_size == 16  # CIFAR variants only
    assert s.data.batch_size == 2 and s.data.synthetic_size == 4  # 2 steps of 2
    assert s.schedule.epochs == 1 and s.schedule.warmup_epochs == 0
    assert s.schedule.milestones == [60, 120, 160] and s.schedule.name == "multistep"
    for section in ("model", "strategy", "optim", "teacher"):  # what the recipe is about stays as it is
        assert getattr(s, section) == getattr(recipe, section)
    assert s.data.augment.crop_padding == 4 and s.data.augment.rotation_degrees == 15
    assert s.runtime.device == "cpu" and s.source == recipe.source


def test_smoke_image_size_follows_the_networks():
    imagenet = load_recipe(RECIPES_DIR / "imagenet" / "resnet18_kd_t1_resnet50.yaml")
    assert smoke_image_size(imagenet) == 64 and smoke(imagenet).data.num_classes == 1000
    fashion = load_recipe(RECIPES_DIR / "fashion_mnist" / "resnet18_ce.yaml")
    assert smoke_image_size(fashion) == 28 and smoke(fashion).data.channels == 1


def test_smoke_keeps_a_defective_teacher_epoch_that_exists():
    recipe = load_recipe(RECIPES_DIR / "cifar100" / "resnet18_defective_kd_resnext29_e50.yaml")
    assert recipe.teacher.epoch == 50
    s = smoke(recipe)
    assert s.teacher.epoch == 1
    teacher = teacher_recipe(s, transform=smoke)
    assert teacher.name == "resnext29_ce_smoke" and teacher.schedule.epochs == 1
    assert teacher.checkpoint.save_epochs == [1]


# ------------------------------------------------------------------------------ smoke runs
@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory) -> Path:
    """One runs folder for every smoke run of this module, so teacher runs are trained once."""
    return tmp_path_factory.mktemp("smoke-runs")


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny steps run fastest on one thread, as `harness run --smoke` runs them."""
    with one_thread():
        yield


@pytest.mark.parametrize("path", ALL_RECIPES, ids=_id)
@pytest.mark.slow
def test_recipe_smoke_run(path, smoke_runs):
    recipe = load_recipe(path)
    result = train(smoke(recipe), smoke_runs, RunOptions(transform=smoke, progress=False))
    assert result.status == "completed" and result.run_id.startswith(f"{recipe.name}_smoke-s{recipe.seed}-")
    (row,) = result.rows
    assert row["step"] == 2 and row["epoch"] == 1 and row["eval_samples"] == 1
    assert row["method"] == recipe.label and row["strategy"] == recipe.strategy.name
    assert math.isfinite(row["train_loss"]) and math.isfinite(row["nll"])
    assert row["stability"] is not None  # Shen et al.'s metric, on every row
    if recipe.teacher is None:
        assert row.get("teacher_arch") is None
        return
    if recipe.teacher.run is None:  # timm pretrained weights: random ones of the same arch in a smoke run
        assert row["teacher_arch"] == recipe.teacher.arch and row["teacher_source"].startswith(
            recipe.teacher.arch
        )
        return
    assert row["teacher_arch"] == teacher_recipe(recipe).model.arch
    assert math.isfinite(row["teacher_nll"]) and row["teacher_stability"] is not None
    if recipe.teacher.epoch is not None:  # a defective teacher: the smoke teacher run's epoch 1
        assert row["teacher_source"].endswith("@epoch1")
    else:
        assert "_smoke-" in row["teacher_source"]


def test_run_smoke_without_runs_dir_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_smoke(load_recipe(RECIPES_DIR / "cifar100" / "mobilenetv3_small_ce.yaml"))
    assert result.status == "completed" and result.rows[0]["step"] == 2
    assert not result.run_dir.exists() and not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_cli_run_smoke(tmp_path):
    recipe = RECIPES_DIR / "cifar100" / "mobilenetv2_defective_kd_resnet18_e1.yaml"
    runs = tmp_path / "kept"
    env = {"PYTHONPATH": str(REPO)}  # this checkout's harness, whatever the current folder
    proc = run_cli("run", str(recipe), "--smoke", "--runs-dir", str(runs), cwd=tmp_path, env=env, check=True)
    run_id = smoke(load_recipe(recipe)).run_id
    assert f"smoke completed: {run_id}" in proc.stdout
    assert "teacher run resnet18_ce_smoke-s230-" in proc.stderr  # stage 1 trained first, and said so
    folders = sorted(p.name for p in runs.iterdir())
    assert len(folders) == 2 and all("_smoke-s230-" in name for name in folders)
    teacher = next(runs.glob("resnet18_ce_smoke-*"))
    assert (teacher / "checkpoints" / "epoch_1.pt").exists()
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------------------ nightly sweep
def _sweep_entries() -> list[tuple[list[Path], list[int]]]:
    spec = yaml.safe_load(NIGHTLY.read_text())
    assert set(spec) <= {"seeds", "overrides", "recipes", "slurm"}
    default_seeds = spec["seeds"]
    entries = []
    for item in spec["recipes"]:
        pattern, seeds = (item, default_seeds) if isinstance(item, str) else (item["path"], item["seeds"])
        matches = [Path(p).resolve() for p in sorted(glob.glob(str(NIGHTLY.parent / pattern)))]
        assert matches, f"{NIGHTLY}: {pattern} matches no recipe"
        assert seeds and all(isinstance(s, int) for s in seeds)
        entries.append((matches, seeds))
    return entries


def test_nightly_sweep_lists_the_suite_cifar_first():
    listed = [p for matches, _ in _sweep_entries() for p in matches]
    assert len(listed) == len(set(listed)), "a recipe is listed twice"
    assert sorted(listed) == sorted(p.resolve() for p in SUITE_RECIPES)
    datasets = [load_recipe(p).data.dataset for p in listed]
    first_imagenet = datasets.index("imagenet")
    assert set(datasets[:first_imagenet]) == {"cifar100"} and set(datasets[first_imagenet:]) == {"imagenet"}
    position = {p: i for i, p in enumerate(listed)}
    for path in listed:  # teacher runs are queued before their students
        recipe = load_recipe(path)
        if recipe.teacher is not None:
            assert position[Path(teacher_recipe(recipe).source).resolve()] < position[path]


def test_nightly_sweep_overrides_name_real_fields():
    spec = yaml.safe_load(NIGHTLY.read_text())
    recipe = load_recipe(SUITE_RECIPES[0], spec.get("overrides", []))
    assert recipe.runtime.device == "cuda"
    assert all(re.fullmatch(r"[a-z_.]+=\S+", o) for o in spec.get("overrides", []))
