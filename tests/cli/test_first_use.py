"""What a new user meets first: where the leaderboard goes, the missing-data message, --smoke's
help, globs in `harness validate`."""

from __future__ import annotations

import subprocess

import pytest

from harness.config import from_mapping
from harness.errors import DataError
from harness.leaderboard import MARKER, LeaderboardError, generate
from tests.support.recipes import REPO, run_cli, tiny_recipe, write_recipe

#: run this checkout's harness from another folder
HERE = {"PYTHONPATH": str(REPO)}


@pytest.mark.slow
def test_leaderboard_defaults_to_the_runs_folder_and_keeps_foreign_files(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    proc = run_cli("leaderboard", "--runs-dir", str(runs), cwd=tmp_path, env=HERE, check=True)
    assert (runs / "leaderboard" / "index.html").is_file() and (runs / "leaderboard" / MARKER).is_file()
    assert not (tmp_path / "leaderboard").exists()
    assert f"{runs / 'leaderboard'}/" in proc.stdout

    study = tmp_path / "study"  # a folder whose leaderboard.md this command did not write
    study.mkdir()
    (study / "leaderboard.md").write_text("a committed study\n")
    with pytest.raises(LeaderboardError, match=r"holds leaderboard\.md that harness leaderboard did not"):
        generate(runs, study)
    assert (study / "leaderboard.md").read_text() == "a committed study\n"
    assert sorted(p.name for p in study.iterdir()) == ["leaderboard.md"]
    generate(runs, study, force=True)
    assert (study / MARKER).is_file() and (study / "leaderboard.md").read_text() != "a committed study\n"
    generate(runs, study)  # its own files, marked: replaced without --force
    (study / MARKER).unlink()  # written before markers existed: recognised by its leaderboard.md
    generate(runs, study)


@pytest.mark.slow
def test_missing_beton_says_the_whole_convert_command_and_makes_no_run_folder(tmp_path):
    recipe = tiny_recipe(
        model={"arch": "test_resnet"},
        data={
            "dataset": "imagenet",
            "backend": "ffcv",
            "train_path": "data/imagenet/train_500_0.50_90.beton",
            "val_path": "data/imagenet/val_500_0.50_90.beton",
            "train_subset": None,
            "val_subset": None,
            "augment": {"random_resized_crop": True, "hflip": True},
        },
    )
    path = write_recipe(tmp_path / "in1k.yaml", recipe)
    proc = run_cli("run", str(path), "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path, env=HERE)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (
        "error: data.train_path: data/imagenet/train_500_0.50_90.beton not found; write it with: "
        "harness data convert /path/to/imagenet/train data/imagenet/train_500_0.50_90.beton "
        "--format imagefolder --max-resolution 500 --write-mode proportion --compress-probability 0.50 "
        "--jpeg-quality 90 (docs/paper_suite.md)"
    )
    assert not (tmp_path / "runs").exists()  # the run never started: no `failed` folder


def test_missing_cifar_and_fashion_files_are_found_before_the_run(tmp_path):
    from harness.data.preflight import check_data_files

    cifar = tiny_recipe(data={"dataset": "cifar100", "root": str(tmp_path)})
    with pytest.raises(DataError, match=r"/train: CIFAR batch not found"):
        check_data_files(from_mapping(cifar, "c").data)
    fashion = tiny_recipe(data={"root": str(tmp_path)})
    with pytest.raises(DataError, match="Fashion-MNIST file not found"):
        check_data_files(from_mapping(fashion, "f").data)


def test_smoke_help_says_what_it_runs():
    proc = run_cli("run", "--help", check=True)
    text = " ".join(proc.stdout.split())
    assert "capped at 64 px" in text and "recipe's classes and channels" in text


@pytest.mark.slow
def test_validate_expands_quoted_globs_like_sweep(tmp_path):
    write_recipe(tmp_path / "recipes" / "top.yaml", tiny_recipe())
    write_recipe(tmp_path / "recipes" / "sub" / "nested.yaml", tiny_recipe(seed=1))
    proc = run_cli("validate", "recipes/**/*.yaml", cwd=tmp_path, env=HERE, check=True)
    assert sorted(line.split()[1] for line in proc.stdout.splitlines()) == [
        "recipes/sub/nested.yaml",
        "recipes/top.yaml",
    ]
    proc = run_cli("validate", "nothing/*.yaml", cwd=tmp_path, env=HERE)
    assert proc.returncode == 2 and "no recipe file matches this glob" in proc.stderr


def test_setup_script_refuses_an_unknown_argument_before_installing_anything():
    """`scripts/setup.sh --bogus` is one line and exit 2 (it used to set up as if plain, making a
    .venv); `--help` prints its three forms and exits 0. Both exit before any apt, venv or pip."""
    script = str(REPO / "scripts" / "setup.sh")
    bad = subprocess.run(["bash", script, "--bogus"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and bad.stdout == ""
    want = "setup: unknown argument '--bogus' (use --default, --test or nothing; --help)"
    assert bad.stderr.strip() == want
    usage = subprocess.run(["bash", script, "--help"], capture_output=True, text=True, timeout=30)
    assert usage.returncode == 0
    assert [line.split()[0:2] for line in usage.stdout.splitlines()[2:]] == [
        ["scripts/setup.sh", "set"],
        ["scripts/setup.sh", "--default"],
        ["scripts/setup.sh", "--test"],
    ]
