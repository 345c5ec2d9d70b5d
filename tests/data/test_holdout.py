"""The held-out validation split (`data.holdout`, `harness.data.holdout`): seeded and
class-stratified, disjoint from what a run trains on on every backend and under a 2-rank torchrun,
the same images whatever the backend, in the run's identity, provenance and metrics, and refused
with one line naming the field when the data cannot give it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from harness.config import from_mapping, load_recipe
from harness.config.recipe import HoldoutConfig
from harness.data import build_data
from harness.data.convert import ConvertOptions, convert
from harness.data.datasets import load_configured_split
from harness.data.holdout import carve, positions_digest
from harness.data.pipeline import split_positions
from harness.errors import DataError
from harness.store.metrics_file import read_metrics
from tests.support.datagen import fashion_subset
from tests.support.recipes import REPO, SMALL, run_cli, tiny_recipe, write_recipe

LABELS = np.repeat(np.arange(10), [30, 30, 30, 30, 30, 30, 30, 30, 30, 12])  # 282 samples, one small class


def test_each_class_holds_out_its_share_seeded_and_disjoint():
    spec = HoldoutConfig(fraction=0.25, seed=3)
    split = carve(spec, LABELS)
    counts = Counter(LABELS[split.held_out].tolist())
    assert counts == {**{c: 8 for c in range(9)}, 9: 3}  # round(30 * 0.25) = 8 (7.5 up), round(12 * 0.25) = 3
    assert np.intersect1d(split.train, split.held_out).size == 0
    assert np.array_equal(np.union1d(split.train, split.held_out), np.arange(len(LABELS)))
    again = carve(HoldoutConfig(fraction=0.25, seed=3), LABELS)
    assert np.array_equal(again.held_out, split.held_out) and again.digest == split.digest
    other = carve(HoldoutConfig(fraction=0.25, seed=4), LABELS)
    assert not np.array_equal(other.held_out, split.held_out) and other.digest != split.digest


def test_a_size_is_shared_by_largest_remainder_and_exact():
    split = carve(HoldoutConfig(size=50), LABELS)
    counts = Counter(LABELS[split.held_out].tolist())
    assert len(split.held_out) == 50
    # 50 * 30 / 282 = 5.32 each, 50 * 12 / 282 = 2.13: floors 5 x 9 + 2 = 47, the 3 largest
    # remainders (0.32, classes 0-2 first on the tie) get one more
    assert counts == {0: 6, 1: 6, 2: 6, **{c: 5 for c in range(3, 9)}, 9: 2}


def test_the_digest_is_of_the_set():
    assert positions_digest(np.array([3, 1, 2])) == positions_digest(np.array([1, 2, 3]))
    assert positions_digest(np.array([1, 2])) != positions_digest(np.array([1, 3]))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            HoldoutConfig(size=282),
            "data.holdout.size: 282 is not smaller than the training split (282 samples)",
        ),
        (
            HoldoutConfig(fraction=0.03),
            "data.holdout: fraction 0.03 leaves class 9 (12 training samples) with no held-out",
        ),
        (
            HoldoutConfig(fraction=0.97),
            "data.holdout: fraction 0.97 leaves class 9 (12 training samples) with no training",
        ),
    ],
)
def test_what_the_data_cannot_give_is_one_line_naming_the_field(spec, message):
    with pytest.raises(DataError) as err:
        carve(spec, LABELS)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("holdout", "message"),
    [
        ({"fraction": 1.5}, "data.holdout.fraction: must be in (0, 1), got 1.5"),
        ({"fraction": 0}, "data.holdout.fraction: must be in (0, 1), got 0"),
        ({"fraction": 0.1, "size": 10}, "data.holdout: give exactly one of fraction or size"),
        ({"seed": 1}, "data.holdout: give exactly one of fraction or size"),
        ({"fractoin": 0.1}, "data.holdout.fractoin: unknown key"),
    ],
)
def test_a_wrong_spec_is_refused_by_the_recipe(holdout, message):
    from harness.errors import RecipeError

    with pytest.raises(RecipeError) as err:
        from_mapping(tiny_recipe(data={"holdout": holdout}), "bad")
    assert str(err.value).startswith(message), str(err.value)


@pytest.mark.fashion
@pytest.mark.parametrize(
    ("holdout", "field"),
    [({"size": 60000}, "data.holdout.size"), ({"fraction": 1.5}, "data.holdout.fraction")],
)
def test_harness_run_refuses_before_any_folder(tmp_path, holdout, field):
    path = write_recipe(tmp_path / "bad.yaml", tiny_recipe(data={"holdout": holdout}))
    proc = run_cli("run", str(path), "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and field in lines[0], proc.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_identity_setting_and_teacher_follow_the_holdout(tmp_path):
    from harness.teachers.teacher import teacher_recipe

    plain = from_mapping(tiny_recipe(), "r")
    assert "holdout" not in plain.identity()["data"]  # a recipe without one keeps its old run id
    held = from_mapping(tiny_recipe(data={"holdout": {"fraction": 0.1}}), "r")
    reseeded = from_mapping(tiny_recipe(data={"holdout": {"fraction": 0.1, "seed": 1}}), "r")
    assert len({plain.run_id, held.run_id, reseeded.run_id}) == 3
    assert len({plain.setting()[0], held.setting()[0], reseeded.setting()[0]}) == 3
    teacher = write_recipe(tmp_path / "teacher.yaml", tiny_recipe())
    student = tiny_recipe(
        data={"holdout": {"size": 500, "seed": 2}},
        strategy={"name": "kd", "params": {"alpha": 0.9, "temperature": 4.0}},
        teacher={"run": "teacher.yaml"},
    )
    t = teacher_recipe(load_recipe(write_recipe(tmp_path / "student.yaml", student)))
    assert t.data.holdout == HoldoutConfig(size=500, seed=2)
    assert t.run_id != load_recipe(teacher).run_id


# ------------------------------------------------------------------------------ every backend
@pytest.fixture(scope="module")
def idx(tmp_path_factory):
    base = tmp_path_factory.mktemp("holdout")
    return {"root": fashion_subset(base / "idx", 600, 100), "base": base}


def data_section(idx, backend: str, **extra) -> dict:
    return {
        "root": str(idx["root"]),
        "backend": backend,
        "train_subset": 400,
        "val_subset": None,
        "holdout": {"size": 60, "seed": 5},
        "batch_size": 32,
        "augment": {},
        **extra,
    }


def expected_positions(cfg):
    labels = load_configured_split(cfg, "train")[1].numpy()
    return labels, split_positions(cfg, labels, 100)


def yielded(loader, epochs=(0,)) -> list[int]:
    out = []
    for epoch in epochs:
        loader.set_epoch(epoch)
        out += [i for batch in loader for i in batch.indices.tolist()]
    return out


@pytest.mark.fashion
@pytest.mark.parametrize("backend", ["memory", "torch", pytest.param("ffcv", marks=pytest.mark.ffcv)])
def test_every_backend_trains_on_none_of_the_held_out_images(idx, backend):
    import torch

    extra = {}
    if backend == "ffcv":
        for split in ("train", "test"):
            path = idx["base"] / f"{split}.beton"
            if not path.exists():
                convert(
                    idx["root"],
                    path,
                    ConvertOptions(split=split, workers=1, page_size=1 << 21, progress=False),
                )
            extra["train_path" if split == "train" else "val_path"] = str(path)
    recipe = from_mapping(tiny_recipe(data=data_section(idx, backend, **extra)), f"holdout_{backend}")
    labels, want = expected_positions(recipe.data)
    assert len(want.held_out) == 60 and len(want.train) == 400
    assert np.intersect1d(want.train, want.held_out).size == 0
    data = build_data(recipe.data, device=torch.device("cpu"), seed=0)
    try:
        assert data.holdout is not None and data.holdout_size == 60 and data.train_size == 400
        assert data.holdout_digest == positions_digest(want.held_out)
        trained, held = yielded(data.train, (0, 1)), yielded(data.holdout)
        if backend == "memory":  # positions in the tensors the loaders hold
            trained, held = want.train[trained].tolist(), want.held_out[held].tolist()
            images = load_configured_split(recipe.data, "train")[0]
            assert torch.equal(data.holdout.images, images[torch.from_numpy(want.held_out)])
        elif backend == "ffcv":  # positions in each loader's own share of the .beton
            trained = data.train.split_indices[trained].tolist()
            held = data.holdout.split_indices[held].tolist()
        assert sorted(held) == want.held_out.tolist()
        assert set(trained) == set(want.train.tolist())
        held_labels = [batch.targets for batch in data.holdout]
        assert torch.cat(held_labels).tolist() == labels[want.held_out].tolist()
    finally:
        data.close()


@pytest.mark.fashion
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_ranks_shard_the_held_out_split_and_train_on_none_of_it(idx, tmp_path):
    recipe = tiny_recipe(data=data_section(idx, "torch"))
    path = write_recipe(tmp_path / "ranks.yaml", recipe)
    out = tmp_path / "out"
    out.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["-m", "tests.support.dump_positions", str(path), str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=540, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    _, want = expected_positions(load_recipe(path).data)
    trained = set(ranks[0]["trained"]) | set(ranks[1]["trained"])
    held = [set(r["held_out"]) for r in ranks]
    assert not held[0] & held[1]  # a held-out sample in exactly one shard
    assert held[0] | held[1] == set(want.held_out.tolist())
    assert not trained & (held[0] | held[1])  # never both trained on and held out
    assert trained <= set(want.train.tolist())
    assert ranks[0]["digest"] == ranks[1]["digest"] == positions_digest(want.held_out)


# ------------------------------------------------------------------------------ a run
@pytest.mark.fashion
def test_a_run_writes_both_splits_and_records_the_digest(tmp_path):
    recipe = tiny_recipe(data={**SMALL, "holdout": {"size": 100}}, schedule={"epochs": 2})
    path = write_recipe(tmp_path / "held.yaml", recipe)
    run_cli("run", str(path), "--runs-dir", str(tmp_path / "runs"), check=True)
    run_dir = tmp_path / "runs" / load_recipe(path).run_id
    rows = read_metrics(run_dir / "metrics.parquet")
    provenance = json.loads((run_dir / "provenance.json").read_text())
    assert [r["epoch"] for r in rows] == [1, 2]
    for row in rows:
        assert row["holdout_samples"] == 100 and row["eval_samples"] == 64 and row["train_samples"] == 128
        assert 0 <= row["holdout_top1"] <= 100 and row["holdout_nll"] > 0
        assert row["holdout_hash"] == provenance["holdout"]["hash"]
        assert row["fidelity_agreement"] is None and row["holdout_fidelity_agreement"] is None  # no teacher
    assert provenance["holdout"]["samples"] == 100
    evaluated = json.loads(run_cli("eval", str(run_dir), check=True).stdout.strip().splitlines()[-1])
    assert evaluated["top1"] == pytest.approx(rows[-1]["top1"]) and evaluated["holdout"]["n"] == 100
    assert evaluated["holdout"]["top1"] == pytest.approx(rows[-1]["holdout_top1"])
    assert evaluated["holdout"]["hash"] == rows[-1]["holdout_hash"]
