"""Strict recipe validation: one line naming the dotted path, non-zero exit, close matches."""

from __future__ import annotations

import pytest
import yaml

from harness.config import load_recipe
from harness.errors import RecipeError
from tests.support.recipes import REPO, repo_files, repo_id, run_cli, tiny_recipe, write_recipe


def load(tmp_path, overrides=(), **sections):
    return load_recipe(write_recipe(tmp_path / "r.yaml", tiny_recipe(**sections)), overrides)


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"optim": {"lr": -1}}, "optim.lr: must be > 0, got -1"),
        ({"optim": {"lr": "fast"}}, "optim.lr: must be a number, got 'fast'"),
        ({"model": {"arhc": "resnet18"}}, "model.arhc: unknown key; did you mean 'arch'?"),
        ({"model": {"arch": "resnet181"}}, "model.arch: unknown timm architecture 'resnet181'; did you mean"),
        (
            {"strategy": {"name": "labelsmoothing"}},
            "strategy.name: unknown strategy 'labelsmoothing'; "
            "did you mean 'label_smoothing' or 'online_label_smoothing'?",
        ),
        (
            {"strategy": {"name": "label_smoothing", "params": {"epsilon": 1.5}}},
            "strategy.params.epsilon: must be in [0, 1), got 1.5",
        ),
        (
            {"strategy": {"name": "label_smoothing", "params": {"convention": "torch"}}},
            "strategy.params.convention: must be one of 'uniform', 'others', got 'torch'",
        ),
        ({"strategy": {"name": "kd", "params": {"alpha": 0.5}}}, "strategy.params.temperature: required"),
        ({"schedule": {"epochs": 0}}, "schedule.epochs: must be >= 1, got 0"),
        ({"schedule": {"epochs": 2.5}}, "schedule.epochs: must be an integer, got 2.5"),
        ({"schedule": {"name": "multistep"}}, "schedule.milestones: required for the multistep schedule"),
        ({"data": {"augment": {"hflip": "yes"}}}, "data.augment.hflip: must be true or false, got 'yes'"),
        ({"data": {"dataset": "mnist"}}, "data.dataset: must be one of"),
        ({"seed": -3}, "seed: must be >= 0, got -3"),
        ({"runtime": {"device": "tpu"}}, "runtime.device: must be one of 'auto', 'cpu', 'cuda', got 'tpu'"),
        ({"optim": {"name": "sgdd"}}, "optim.name: unknown timm optimizer 'sgdd'; did you mean 'sgd'"),
        (
            {"model": {"arch": "test_resnet", "kwargs": {"num_classes": 3}}},
            "model.kwargs.num_classes: set by harness from the data",
        ),
        ({"teacher": {"run": "x.yaml"}}, "teacher: strategy 'ce' uses no teacher; remove it"),
        (
            {"strategy": {"name": "kd", "params": {"alpha": 0.5, "temperature": 4}}},
            "teacher: required: strategy 'kd' distils from a teacher",
        ),
        ({"bogus": 1}, "bogus: unknown key"),
    ],
)
def test_bad_recipes_name_the_dotted_path(tmp_path, sections, message):
    with pytest.raises(RecipeError) as info:
        load(tmp_path, **sections)
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_set_overrides_are_type_checked(tmp_path):
    r = load(tmp_path, ["optim.lr=0.2", "schedule.epochs=3", "data.augment.hflip=false"])
    assert (r.optim.lr, r.schedule.epochs, r.data.augment.hflip) == (0.2, 3, False)
    with pytest.raises(RecipeError, match=r"optim\.lr: must be > 0, got -1"):
        load(tmp_path, ["optim.lr=-1"])
    with pytest.raises(RecipeError, match=r"optim\.lrr: unknown key; did you mean 'lr'"):
        load(tmp_path, ["optim.lrr=0.1"])
    with pytest.raises(RecipeError, match="expected KEY=VALUE"):
        load(tmp_path, ["optim.lr"])


def test_on_off_choices_take_yaml_booleans_in_files_and_sets(tmp_path):
    # YAML reads unquoted on/off as true/false: the fields whose choices hold 'on' or 'off' take them
    r = load(tmp_path, runtime={"device": "cpu", "channels_last": True, "amp": False})
    assert (r.runtime.channels_last, r.runtime.amp) == ("on", "off")
    r = load(tmp_path, ["runtime.channels_last=off", "runtime.amp=off"])
    assert (r.runtime.channels_last, r.runtime.amp) == ("off", "off")
    with pytest.raises(RecipeError, match=r"--set runtime.amp=on: runtime.amp: must be one of .*, got True"):
        load(tmp_path, ["runtime.amp=on"])  # amp has no 'on'


def test_a_float_is_refused_for_an_integer_and_gpu_suggests_cuda(tmp_path):
    with pytest.raises(RecipeError) as info:
        load(tmp_path, ["seed=1.0"])
    assert str(info.value) == "--set seed=1.0: seed: must be an integer, got 1.0"
    with pytest.raises(RecipeError) as info:
        load(tmp_path, ["runtime.device=gpu"])
    assert str(info.value).endswith("got 'gpu'; did you mean 'cuda' or 'cpu'?")


def test_yaml_exponent_without_dot_is_a_number(tmp_path):
    # PyYAML reads 5e-4 as a string; numeric fields accept it
    r = load(tmp_path, optim={"weight_decay": "5e-4"})
    assert r.optim.weight_decay == pytest.approx(5e-4)


def test_identity_hash(tmp_path):
    a = load(tmp_path)
    b = load(tmp_path, ["runtime.device=auto", "checkpoint.save_epochs=[1]", "description=x"])
    c = load(tmp_path, ["optim.lr=0.07"])
    assert a.run_id == b.run_id  # runtime, checkpoints and text do not change a run's identity
    assert a.run_id != c.run_id
    assert a.run_id.startswith("r-s0-")


def test_file_errors(tmp_path):
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(RecipeError, match="invalid YAML"):
        load_recipe(bad)
    bad.write_text("- a list")
    with pytest.raises(RecipeError, match="a recipe must be a mapping"):
        load_recipe(bad)


@pytest.mark.slow
def test_cli_validate_exit_codes(tmp_path):
    good = write_recipe(tmp_path / "good.yaml", tiny_recipe())
    bad = write_recipe(tmp_path / "bad.yaml", tiny_recipe(optim={"lr": -1}))
    ok = run_cli("validate", str(good))
    assert ok.returncode == 0 and "ok:" in ok.stdout
    proc = run_cli("validate", str(good), str(bad))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {bad}: optim.lr: must be > 0, got -1"]
    proc = run_cli("run", str(good), "--set", "optim.momentum=2")
    assert proc.returncode == 2
    assert "optim.momentum: must be in [0, 1), got 2" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_repo_has_recipes():
    assert repo_files("recipes")


@pytest.mark.parametrize("path", repo_files("recipes"), ids=repo_id)
def test_every_recipe_in_the_repo_validates(path):
    load_recipe(path)
    assert yaml.safe_load(path.read_text())


def test_extends_merges_a_base_recipe(tmp_path):
    base = write_recipe(tmp_path / "base_ce.yaml", tiny_recipe(method="ce", description="the base"))
    (tmp_path / "variant").mkdir()
    child = tmp_path / "variant" / "ls.yaml"
    child.write_text(
        "extends: ../base_ce.yaml\n"
        "strategy: {name: label_smoothing, params: {epsilon: 0.2}}\n"
        "optim: {lr: 0.2}\n"
    )
    r = load_recipe(child)
    b = load_recipe(base)
    assert r.name == "ls" and r.method is None and r.description == ""  # never inherited
    assert r.strategy.name == "label_smoothing" and r.optim.lr == 0.2
    assert r.optim.momentum == b.optim.momentum and r.data == b.data  # the rest comes from the base
    loop = tmp_path / "loop.yaml"
    loop.write_text("extends: loop.yaml\n")
    with pytest.raises(RecipeError, match="makes a cycle"):
        load_recipe(loop)
    orphan = tmp_path / "orphan.yaml"
    orphan.write_text("extends: missing.yaml\n")
    with pytest.raises(RecipeError, match=r"extends: .*missing.yaml: recipe file not found"):
        load_recipe(orphan)


def test_recipe_identities_match_the_committed_runs():
    """The run id (the folder), config hash, sweep group and leaderboard setting of each committed
    study run are what its recipe computes today: changing how a recipe hashes itself would orphan
    them."""
    import dataclasses

    import pyarrow.parquet as pq

    runs = sorted((REPO / "leaderboard" / "runs").glob("*/metrics.parquet"))
    assert runs
    for path in runs:
        row = pq.read_table(path).to_pylist()[-1]
        recipe = load_recipe(REPO / "recipes" / row["dataset"] / f"{row['recipe_name']}.yaml")
        recipe = dataclasses.replace(recipe, seed=row["seed"])
        assert recipe.run_id == row["run_id"] == path.parent.name
        assert recipe.config_hash() == row["config_hash"]
        assert recipe.group_key() == f"{row['recipe_name']}-{row['config_hash'][:8]}"
        assert recipe.setting() == (row["setting_key"], row["data_pipeline"])


def test_validation_builds_no_strategy(tmp_path, monkeypatch):
    """Validating a recipe checks the strategy's parameters and the feature stages it declares
    (USKD: a student stage, checked against the architecture) without building the strategy: the
    run that trains it builds it, once (tests/training/test_run.py)."""
    from harness import strategies

    cls = strategies.get("uskd")

    def refuse(self, params):
        raise AssertionError("validation built the strategy")

    monkeypatch.setattr(cls, "__init__", refuse)
    recipe = load(tmp_path, strategy={"name": "uskd", "params": {"stage": -2}})
    assert recipe.strategy.name == "uskd"
    with pytest.raises(RecipeError, match="stage"):
        load(tmp_path, strategy={"name": "uskd", "params": {"stage": 9}})
