"""Input that validates must be input that runs: integer ranges, folder-safe names, NUL bytes,
alias bombs and the source named in an error (the recipe file or the `--set` that wrote it)."""

from __future__ import annotations

import time

import pytest

from harness.config import load_recipe
from harness.errors import RecipeError
from tests.support.recipes import run_cli, tiny_recipe, write_recipe


def load(tmp_path, overrides=(), file="r", **sections):
    return load_recipe(write_recipe(tmp_path / f"{file}.yaml", tiny_recipe(**sections)), overrides)


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"seed": 2**64}, "seed: must be <= 4294967295, got 18446744073709551616"),
        ({"seed": 2**32}, "seed: must be <= 4294967295"),
        ({"data": {"subset_seed": -1}}, "data.subset_seed: must be >= 0"),
        ({"data": {"view_seed": 2**40}}, "data.view_seed: must be <= 4294967295"),
        ({"data": {"batch_size": 2**63}}, "data.batch_size: must be <= 2147483647"),
        ({"schedule": {"epochs": 10**30}}, "schedule.epochs: must be <= 2147483647"),
        ({"checkpoint": {"save_epochs": [1, 2**40]}}, "checkpoint.save_epochs: must be <= 2147483647"),
        ({"name": "漢" * 120}, "name: must be 1 to 150 bytes of UTF-8"),
        ({"name": "a:b"}, "name: must not contain path separators"),
        ({"name": "x\x00y"}, "name: must not contain a NUL byte"),
        ({"data": {"root": "/data\x00/x"}}, "data.root: must not contain a NUL byte"),
    ],
)
def test_values_the_code_cannot_use_are_refused(tmp_path, sections, message):
    with pytest.raises(RecipeError) as info:
        load(tmp_path, **sections)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_the_largest_accepted_values_load(tmp_path):
    r = load(tmp_path, seed=2**32 - 1, name="漢" * 50)  # 150 bytes
    assert r.seed == 2**32 - 1 and r.run_id.startswith("漢" * 50 + "-s4294967295-")


def test_a_file_name_that_cannot_name_a_run_folder_needs_a_name(tmp_path):
    stem = "漢" * 60  # 180 bytes: a valid file name, too long for `<name>-s<seed>-<hash>.old-<stamp>`
    with pytest.raises(RecipeError, match="name: not given, and the file name cannot name a run folder"):
        load(tmp_path, file=stem)
    assert load(tmp_path, file=stem, name="short").name == "short"


def test_nul_in_extends_is_one_line(tmp_path):
    path = tmp_path / "child.yaml"
    path.write_text('extends: "base\\0.yaml"\nseed: 1\n')
    with pytest.raises(RecipeError, match=r"extends: a path cannot contain a NUL byte"):
        load_recipe(path)


@pytest.mark.slow
def test_yaml_alias_bomb_is_refused_fast(tmp_path):
    levels = ['    l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 9):
        levels.append(f"    l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    path = tmp_path / "bomb.yaml"
    path.write_text(
        "model:\n  arch: test_resnet\n  kwargs:\n" + "\n".join(levels) + "\n"
        "data: {dataset: fashion_mnist}\nstrategy: {name: ce}\n"
    )
    t0 = time.monotonic()
    proc = run_cli("validate", str(path), timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {path}: invalid YAML (aliases expand to more than 100000 values)"
    assert time.monotonic() - t0 < 60
    cycle = tmp_path / "cycle.yaml"
    cycle.write_text("model: &m {arch: test_resnet, kwargs: {self: *m}}\n")
    with pytest.raises(RecipeError, match=r"invalid YAML .*cycle"):
        load_recipe(cycle)


def test_set_errors_name_the_set_option(tmp_path):
    with pytest.raises(RecipeError) as info:
        load(tmp_path, ["optim.lr=abc"])
    assert str(info.value) == "--set optim.lr=abc: optim.lr: must be a number, got 'abc'"
    with pytest.raises(RecipeError, match=r"^--set optim=\{lr: -1\}: optim\.lr: must be > 0"):
        load(tmp_path, ["optim={lr: -1}"])
    with pytest.raises(RecipeError, match=r"r\.yaml: optim\.lr: must be > 0"):  # the file's own value
        load(tmp_path, ["seed=2"], optim={"lr": -1})
