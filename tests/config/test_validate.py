"""`validate_recipes`: the outcomes of `harness validate`, in order, without the command line."""

from __future__ import annotations

from harness.config.recipe import Recipe
from harness.config.validate import validate_recipes
from harness.errors import RecipeError
from tests.conftest import tiny_recipe, write_recipe

KD = {"name": "kd", "params": {"alpha": 0.9, "temperature": 4.0}}


def test_pattern_problems_come_first_then_every_file_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_recipe(tmp_path / "recipes" / "a.yaml", tiny_recipe())
    write_recipe(tmp_path / "recipes" / "sub" / "b.yaml", tiny_recipe(optim={"lr": -1}))
    checked = validate_recipes(["missing.yaml", "recipes/**/*.yaml", "nothing/*.yaml"], ["seed=3"])
    assert [(c.path and str(c.path), c.problem) for c in checked] == [
        (None, "nothing/*.yaml: no recipe file matches this glob (looked in .)"),
        ("missing.yaml", "missing.yaml: recipe file not found"),
        ("recipes/a.yaml", None),
        ("recipes/sub/b.yaml", "recipes/sub/b.yaml: optim.lr: must be > 0, got -1"),
    ]
    assert checked[2].recipe is not None and checked[2].recipe.seed == 3  # the overrides apply


def test_a_teacher_run_is_resolved_only_where_the_recipe_names_one(tmp_path):
    plain = write_recipe(tmp_path / "plain.yaml", tiny_recipe())
    student = write_recipe(
        tmp_path / "student.yaml", tiny_recipe(strategy=KD, teacher={"run": "teacher.yaml"})
    )
    asked: list[str] = []

    def teacher_recipe(recipe: Recipe) -> None:
        asked.append(recipe.name)
        raise RecipeError("teacher.run: teacher.yaml: recipe file not found")

    checked = validate_recipes([str(plain), str(student)], teacher_recipe=teacher_recipe)
    assert asked == ["student"]
    assert [c.problem for c in checked] == [None, "teacher.run: teacher.yaml: recipe file not found"]
    assert validate_recipes([str(student)])[0].problem is None  # no resolver: the recipe alone


def test_every_independent_problem_of_a_recipe_is_reported_in_order(tmp_path):
    bad = tiny_recipe(
        seed=-1,
        model={"arch": "test_resnet", "arhc": "resnet18"},
        strategy={"name": "label_smoothing", "params": {"epsilon": 2, "bogus": 1}},
        optim={"lr": -1},
    )
    path = write_recipe(tmp_path / "bad.yaml", bad)
    (checked,) = validate_recipes([str(path)], ["schedule.epochs=0"])
    assert checked.recipe is None
    assert checked.problems == (
        f"{path}: seed: must be >= 0, got -1",
        f"{path}: model.arhc: unknown key; did you mean 'arch'? "
        "(known: arch, kwargs, sync_bn, pretrained, pretrained_file)",
        f"{path}: strategy.params.bogus: unknown key (known: epsilon, convention)",
        f"{path}: strategy.params.epsilon: must be in [0, 1), got 2",
        f"{path}: optim.lr: must be > 0, got -1",
        "--set schedule.epochs=0: schedule.epochs: must be >= 1, got 0",
    )
    assert checked.problem == checked.problems[0]
