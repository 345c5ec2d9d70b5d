"""Every published figure belongs to one recipe of its exact setting (issue 26, item 6).

`leaderboard/reference/results.csv` names, for each figure, the recipe that reproduces it and its
epochs and teacher kind; the leaderboard attaches the figure only to runs of that setting
(`References.same_setting`). These tests read the real reference data and the real recipes:

* a figure whose recipe is missing, or whose recipe's data set, architecture, epochs, method,
  parameters or teacher differ from the figure's, attaches to nothing: it fails here;
* no other recipe of the suite is in the figure's setting (it would silently go without it);
* a figure of `pending.csv` (no recipe yet) is in no recipe's setting: once a recipe reproduces
  it, the figure must move to results.csv with that recipe's name.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from harness.config import load_recipe
from harness.leaderboard.reference import Ours, ReferenceResult, load_references, ours_from_recipe
from tests.support.recipes import REPO

RECIPES = REPO / "recipes"
REFS = load_references()
SUITE = {
    str(p.relative_to(RECIPES)): ours_from_recipe(load_recipe(p))
    for p in sorted(RECIPES.rglob("*.yaml"))
    if not p.is_symlink() and p.parent.name != "fashion_mnist"
}


def _id(ref: ReferenceResult) -> str:
    return f"{ref.recipe or ref.model}:{ref.method}:{ref.metric}:{ref.value}"


@pytest.mark.parametrize("ref", REFS.results, ids=_id)
def test_a_figure_attaches_to_its_recipe_and_no_other(ref):
    assert ref.recipe in SUITE, f"{ref.recipe}: no such recipe under recipes/"
    ours = SUITE[ref.recipe]
    assert REFS.same_setting(ref, ours), f"{ref.recipe}: its setting is not the figure's ({ours})"
    elsewhere = [
        path for path, other in SUITE.items() if path != ref.recipe and REFS.same_setting(ref, other)
    ]
    assert not elsewhere


def _in_setting_but_the_name(ref: ReferenceResult, ours: Ours) -> bool:
    """Whether `ours` is in the figure's setting, whatever its recipe's name (and epochs where
    the figure gives none)."""
    named = dataclasses.replace(ours, recipe_name=Path(ref.recipe or f"{ours.recipe_name}.yaml").stem)
    if ref.epochs is None:
        named = dataclasses.replace(named, epochs=0)
        ref = dataclasses.replace(ref, epochs=0)
    return REFS.same_setting(dataclasses.replace(ref, recipe=f"{named.recipe_name}.yaml"), named)


@pytest.mark.parametrize("ref", REFS.pending, ids=_id)
def test_a_pending_figure_has_no_recipe_yet(ref):
    found = [path for path, ours in SUITE.items() if _in_setting_but_the_name(ref, ours)]
    assert not found, f"{found} reproduce this figure: move it to results.csv with its recipe"


def test_the_issue_26_figures_stay_in_their_settings():
    by_value = {(ref.value, ref.recipe) for ref in REFS.results}
    assert (66.9, "imagenet/resnet18_ffcv_e16.yaml") in by_value  # ffcv README, 16 epochs
    assert (70.02, "imagenet/resnet18_label_smoothing.yaml") in by_value  # Yuan et al., 90 epochs
    assert (76.128, "imagenet/resnet50_label_smoothing_shen.yaml") in by_value  # Shen et al.'s teacher
    ffcv = SUITE["imagenet/resnet18_ffcv_e16.yaml"]
    assert [ref.value for ref in REFS.matches(ffcv)] == [66.9]
    pending = {(ref.source, ref.value) for ref in REFS.pending}
    assert ("torchdistill", 70.52) in pending  # another teacher, loss, T, batch and lr
    assert ("Yuan et al. 2020", 70.42) in pending  # torchvision's pretrained teacher (main.py line 179)


def test_a_suite_recipe_that_claims_a_figure_in_its_header_has_it():
    """The figure a recipe's header quotes (`# Target:`, or `# Reference:` in recipes/imagenet_kd/) is
    the one results.csv attaches to it."""
    for path, ours in SUITE.items():
        figures = [ref for ref in REFS.matches(ours) if ref.metric == "top1"]
        if not figures:
            continue
        target = next(
            line
            for line in (RECIPES / path).read_text().splitlines()
            if line.startswith(("# Target: ", "# Reference: "))
        )
        assert any(f"{ref.value:g}" in target for ref in figures), (path, target, [r.value for r in figures])
