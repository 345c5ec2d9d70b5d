"""docs/data.md's "Your own data": the recipe it types out, on an ImageFolder tree like its own.

The recipe is read from the page itself, so the page and the code cannot drift apart: the tree is
3 classes x 20 PNGs for training and 3 x 5 to evaluate; `harness validate` and `harness run`
(in-process, the real commands) take it as written, refuse a missing root or too small a
`num_classes` before making a run folder, and train it with timm's `test_resnet` for one epoch in
place of ResNet-18 for five (`--set`, as a user may).
"""

from __future__ import annotations

import re

import pyarrow.parquet as pq
from click.testing import CliRunner

from harness.cli import main
from tests.support.datagen import write_image_folder
from tests.support.recipes import REPO

FAST = ("--set", "model.arch=test_resnet", "--set", "schedule.epochs=1", "--no-progress")


def own_data_recipe() -> str:
    """The YAML block of docs/data.md's "Your own data" section."""
    page = (REPO / "docs" / "data.md").read_text()
    section = page[page.index("## Your own data") :].split("\n## ", 1)[0]
    return re.findall(r"```yaml\n(.*?)```", section, re.S)[0]


def test_the_documented_image_folder_recipe_validates_and_trains(tmp_path, monkeypatch):
    for split, per_class in (("train", 20), ("val", 5)):
        write_image_folder(tmp_path / "flowers" / split, ["cat", "dog", "emu"], per_class, [(48, 40)])
    (tmp_path / "flowers_resnet18_ce.yaml").write_text(own_data_recipe())
    monkeypatch.chdir(tmp_path)  # data.root is relative to where harness runs
    runner = CliRunner()
    checked = runner.invoke(main, ["validate", "flowers_resnet18_ce.yaml"])
    assert checked.exit_code == 0 and checked.output.startswith("ok: flowers_resnet18_ce.yaml ("), (
        checked.output
    )
    missing = runner.invoke(
        main, ["run", "flowers_resnet18_ce.yaml", "--runs-dir", "runs", "--set", "data.root=nowhere"]
    )
    assert missing.exit_code == 2 and "data.root: nowhere not found" in missing.output
    too_few = runner.invoke(
        main, ["run", "flowers_resnet18_ce.yaml", "--runs-dir", "runs", "--set", "data.num_classes=2"]
    )
    assert too_few.exit_code == 2
    assert too_few.output.strip().splitlines()[-1] == (
        "error: data.num_classes: labels in flowers/train go up to 2, num_classes is 2"
    )
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    trained = runner.invoke(main, ["run", "flowers_resnet18_ce.yaml", "--runs-dir", "runs", *FAST])
    assert trained.exit_code == 0, trained.output
    (metrics,) = (tmp_path / "runs").glob("*/metrics.parquet")
    (row,) = pq.read_table(metrics).to_pylist()
    assert (row["status"], row["dataset"], row["train_samples"], row["eval_samples"]) == (
        "completed",
        "imagenet",
        60,
        15,
    )
    assert '"num_classes": 3' in row["data_pipeline"]
