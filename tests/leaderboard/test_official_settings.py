"""The paper recipes' training settings against `leaderboard/reference/official_settings.csv`.

Each line there is an official value (epochs, batch, lr, ...) with its source file and line; the
recipes are read as they are. A recipe that drifts from its source without a line of `note`
explaining why fails here, and the table of docs/paper_suite.md is regenerated from the same
comparison (tests/cli/test_docs.py).
"""

from __future__ import annotations

import shutil
from collections import Counter

import pytest
import yaml

from harness.config import load_recipe
from harness.data.pipeline import Plan
from harness.errors import HarnessError
from harness.leaderboard.official import (
    COLUMNS,
    SETTINGS,
    Official,
    compare,
    load_official,
    recipe_settings,
    recipes_of,
    render_table,
)
from tests.support.recipes import REPO

RECIPES = REPO / "recipes"
SUITE = sorted(
    str(p.relative_to(RECIPES)) for d in ("cifar100", "imagenet") for p in (RECIPES / d).glob("*.yaml")
)
OFFICIAL = load_official()
COMPARED = compare(OFFICIAL)
#: what every paper recipe is compared on (Shen et al. state no more; the code-backed suites all ten)
ALWAYS = ("epochs", "batch", "lr", "lr_decay", "momentum", "weight_decay")


def _id(c) -> str:
    return f"{c.official.line}:{c.official.setting}"


@pytest.mark.parametrize("comparison", COMPARED, ids=_id)
def test_every_official_value_names_recipes_and_explains_each_deviation(comparison):
    assert comparison.ours, (
        f"line {comparison.official.line}: its globs {comparison.official.recipes} name no recipe"
    )
    assert not comparison.unexplained, (
        f"line {comparison.official.line}: {comparison.deviating} differ from the official "
        f"{comparison.official.official!r} and the line has no note saying why"
    )


def test_every_paper_recipe_is_compared_once_per_setting():
    seen = Counter((path, c.official.setting) for c in COMPARED for path in c.ours)
    assert max(seen.values()) == 1, [k for k, n in seen.items() if n > 1]
    for path in SUITE:
        settings = {s for (p, s) in seen if p == path}
        assert set(ALWAYS) <= settings, f"{path}: no official {sorted(set(ALWAYS) - settings)}"
    code_backed = [p for p in SUITE if "_shen" not in p and "_kd_t" not in p]
    for path in code_backed:
        assert {s for (p, s) in seen if p == path} == set(SETTINGS), path


def test_the_issue_26_values_are_the_cited_configs():
    """ffcv-imagenet's configs at their global batch and lr, their own ramps; Shen et al.'s decay."""
    values = {
        (path, c.official.setting): (c.official.official, v) for c in COMPARED for path, v in c.ours.items()
    }
    assert values["imagenet/resnet18_ffcv_e16.yaml", "lr"] == ("0.5", "0.5")
    assert values["imagenet/resnet18_ffcv_e16.yaml", "batch"] == ("1024", "1024")
    assert values["imagenet/resnet50_ffcv_e40.yaml", "lr"] == ("1.7", "1.7")
    assert values["imagenet/resnet50_ffcv_e40.yaml", "batch"] == ("4096", "4096")
    ramp = values["imagenet/resnet18_ffcv_e88.yaml", "augmentation"]
    assert ramp[0] == ramp[1] and ramp[1].endswith("progressive 160->192 (epochs 65-76)")
    assert values["imagenet/resnet50_ffcv_e40.yaml", "augmentation"][1].endswith("(epochs 29-34)")
    assert values["imagenet/resnet18_ffcv_e16.yaml", "data"] == ("400 px side, 10% JPEG q90",) * 2
    assert values["imagenet/resnet18_kd_t1_resnet50_ls.yaml", "lr_decay"] == ("x0.1 at 30, 60",) * 2
    assert (
        values["cifar100/resnet18_ce.yaml", "augmentation"][1] == "pad-4 crop, flip, rotate 15 deg (nearest)"
    )


@pytest.mark.parametrize("path", SUITE)
def test_the_augmentation_words_are_the_pipelines(path):
    """official.py describes the views without importing the data package; it must say what
    `Plan.describe` (the loaders' own description) says."""
    recipe = load_recipe(RECIPES / path)
    assert recipe_settings(recipe)["augmentation"] == Plan.from_config(recipe.data).describe(True)


def test_a_recipe_that_drifts_from_its_source_is_caught(tmp_path):
    recipes = tmp_path / "recipes"
    (recipes / "imagenet").mkdir(parents=True)
    source = RECIPES / "imagenet" / "resnet18_ffcv_e16.yaml"
    data = yaml.safe_load(source.read_text())
    data["optim"]["lr_base_batch"] = 256  # the old recipe: lr 0.5 x 1024 / 256 = 2.0
    (recipes / "imagenet" / source.name).write_text(yaml.safe_dump(data))
    line = next(o for o in OFFICIAL if o.setting == "lr" and "imagenet/resnet18_ffcv_e16.yaml" in o.recipes)
    (drifted,) = compare([line], recipes_dir=recipes)
    assert drifted.deviating == {"imagenet/resnet18_ffcv_e16.yaml": "2"} and drifted.unexplained
    assert "**deviation**: 2 ()" in render_table([drifted])
    explained = Official(line.recipes, "lr", "0.5", line.source, "a reason", line.line)
    (ok,) = compare([explained], recipes_dir=recipes)
    assert not ok.unexplained and "**deviation**: 2 (a reason)" in render_table([ok])
    shutil.copy(source, recipes / "imagenet" / source.name)
    (same,) = compare([line], recipes_dir=recipes)
    assert not same.deviating and f"| {line.setting} | 0.5 | same |" in render_table([same])


def test_symlinks_and_unknown_settings(tmp_path):
    line = Official(("*.yaml",), "epochs", "90", "s", "", 2)
    assert "resnet50_tfkd_reg.yaml" not in recipes_of(line)  # the top-level link is the imagenet recipe
    bad = tmp_path / "official.csv"
    bad.write_text(",".join(COLUMNS) + "\nimagenet/x.yaml,colour,red,s,\n")
    with pytest.raises(HarnessError, match=r"official\.csv:2: setting 'colour'"):
        load_official(bad)
