"""Reading recipes: duplicate keys, `extends:` and `--set` naming another strategy, optimizer or
teacher, null free mappings, and which `--set` an error names."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import load_recipe
from harness.errors import RecipeError
from harness.sweeps.spec import load_sweep_file
from tests.support.recipes import KD, tiny_recipe, write_recipe

LS = {"name": "label_smoothing", "params": {"epsilon": 0.1}}


def line_of(path: Path, text: str) -> int:
    """The (1-based) number of the first line of `path` that is `text`."""
    return path.read_text().splitlines().index(text) + 1


@pytest.mark.parametrize(
    ("twice", "first"),
    [("model: {arch: resnet18}", "model:"), ("  device: cuda", "  device: cpu")],  # top level, nested
    ids=["top", "nested"],
)
def test_a_recipe_key_written_twice_is_refused_with_both_lines(tmp_path, twice, first):
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe())  # runtime: {device: cpu} comes last
    path.write_text(path.read_text() + twice + "\n")
    lines = (line_of(path, first), line_of(path, twice))
    key = twice.split(":")[0].strip()
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert (
        str(info.value) == f"{path}: invalid YAML (duplicate key {key!r} at lines {lines[0]} and {lines[1]})"
    )


def test_a_sweep_file_key_written_twice_is_refused(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text("seeds: [0]\nrecipes:\n  - {path: a.yaml, path: b.yaml}\n")
    with pytest.raises(
        RecipeError, match=r"sweep.yaml: invalid YAML \(duplicate key 'path' at lines 3 and 3\)"
    ):
        load_sweep_file(path)


def test_merge_keys_are_not_duplicates(tmp_path):
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe())
    path.write_text(path.read_text() + "checkpoint: {<<: {every_steps: 0}, every_steps: 4}\n")
    assert load_recipe(path).checkpoint.every_steps == 4


def child_of(tmp_path: Path, base: dict, child: str) -> Path:
    """A recipe `child.yaml` (text) that extends `base.yaml` (the tiny recipe with `base`'s sections)."""
    write_recipe(tmp_path / "base.yaml", tiny_recipe(**base))
    path = tmp_path / "child.yaml"
    path.write_text("extends: base.yaml\n" + child)
    return path


@pytest.mark.parametrize("params", ["", ", params: {}", ", params: null"], ids=["absent", "empty", "null"])
def test_a_child_naming_another_strategy_leaves_the_base_params_behind(tmp_path, params):
    recipe = load_recipe(child_of(tmp_path, {"strategy": LS}, f"strategy: {{name: ce{params}}}\n"))
    assert (recipe.strategy.name, recipe.strategy.params) == ("ce", {})


def test_a_child_naming_another_strategy_brings_its_own_params(tmp_path):
    child = "strategy: {name: kd, params: {alpha: 0.5, temperature: 2}}\nteacher: {run: teacher.yaml}\n"
    recipe = load_recipe(child_of(tmp_path, {"strategy": LS}, child))
    assert recipe.strategy.params == {"alpha": 0.5, "temperature": 2}
    same = load_recipe(child_of(tmp_path, {"strategy": LS}, "strategy: {name: label_smoothing}\n"))
    assert same.strategy.params == {"epsilon": 0.1}  # the same strategy keeps the base's params
    tuned = load_recipe(child_of(tmp_path, {"strategy": LS}, "strategy: {params: {convention: others}}\n"))
    assert tuned.strategy.params == {"epsilon": 0.1, "convention": "others"}


def test_a_child_naming_another_optimizer_or_teacher_leaves_the_base_ones_behind(tmp_path):
    base = {"optim": {"name": "sgd", "lr": 0.05, "kwargs": {"dampening": 0.1}}, "strategy": KD}
    base["teacher"] = {"run": "teacher.yaml", "epoch": 1, "cache": True}
    child = "optim: {name: adamw}\nteacher: {weights: t.pt, arch: test_resnet}\n"
    recipe = load_recipe(child_of(tmp_path, base, child))
    assert (recipe.optim.name, recipe.optim.kwargs, recipe.optim.lr) == ("adamw", {}, 0.05)
    teacher = recipe.teacher
    assert teacher is not None and (teacher.weights, teacher.run, teacher.epoch) == ("t.pt", None, None)
    assert teacher.cache  # not specific to the teacher named


def test_a_set_naming_another_strategy_leaves_the_file_params_behind(tmp_path):
    path = write_recipe(tmp_path / "ls.yaml", tiny_recipe(strategy=LS))
    assert load_recipe(path, ["strategy.name=ce"]).strategy.params == {}
    kd = [
        "strategy.params.alpha=0.5",
        "strategy.name=kd",
        "strategy.params.temperature=2",
        "teacher.run=t.yaml",
    ]
    assert load_recipe(path, kd).strategy.params == {"alpha": 0.5, "temperature": 2}  # a --set's params stay
    assert load_recipe(path, ["strategy.params=null"]).strategy.params == {"epsilon": 0.1}  # as if absent


def test_an_error_a_set_caused_names_the_set(tmp_path):
    path = write_recipe(tmp_path / "ls.yaml", tiny_recipe(strategy=LS))
    with pytest.raises(RecipeError) as info:
        load_recipe(path, ["strategy.name=kd", "teacher.run=t.yaml"])
    assert str(info.value) == "--set strategy.name=kd: strategy.params.alpha: required"
