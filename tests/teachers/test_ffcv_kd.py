"""Reproducible ffcv views and the teacher cache on ffcv, on a generated ImageFolder converted with
`harness data convert`: replayed views, cached == live KD, exact resume, stale and corrupted caches.

Each process compiles the ffcv pipeline once (numba), so the tests share one .beton pair and one
runs folder through module fixtures, and train in this process where they can.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from harness.config import load_recipe
from harness.data import build_data
from harness.errors import TeacherError
from harness.models.build import build_model
from harness.store.metrics_file import read_metrics
from harness.teachers import cache as teacher_cache
from harness.training.lifecycle import train
from harness.training.loop import RunOptions
from tests.support.datagen import write_image_folder
from tests.support.marks import ffcv_test
from tests.support.recipes import KD, REPO, run_cli, tiny_recipe, write_recipe
from tests.support.runs import exact, start_run, strike_when

pytestmark = pytest.mark.slow

QUIET = RunOptions(progress=False)
STEPS = 4  # 32 training images in batches of 8


@pytest.fixture(scope="module")
def inet(tmp_path_factory):
    """A 4-class JPEG ImageFolder of varied sizes as train/val .beton files, a teacher's weights,
    and the KD recipe reading them (RRC 32 px + flip, view seed 0)."""
    pytest.importorskip("ffcv")
    base = tmp_path_factory.mktemp("ffcv_kd")
    classes = ["ant", "bee", "cow", "doe"]
    sizes = [(40, 56), (72, 48), (36, 36), (50, 64)]
    write_image_folder(base / "src" / "train", classes, 8, sizes, ext=".jpg", seed=3)
    write_image_folder(base / "src" / "val", classes, 2, sizes, ext=".jpg", seed=4)
    for split in ("train", "val"):
        args = ("--split", split, "--page-size", "2", "--workers", "1", "--no-progress")
        run_cli("data", "convert", str(base / "src"), str(base / f"{split}.beton"), *args, check=True)
    torch.manual_seed(0)
    weights = base / "teacher.pt"
    torch.save(build_model("test_resnet", 4, 3).state_dict(), weights)
    data = {
        "dataset": "imagenet",
        "backend": "ffcv",
        "train_path": str(base / "train.beton"),
        "val_path": str(base / "val.beton"),
        "num_classes": 4,
        "image_size": 32,
        "val_image_size": 32,
        "train_subset": None,
        "val_subset": None,
        "batch_size": 8,
        "eval_batch_size": 8,
        "num_workers": 2,
        "view_seed": 0,
        "augment": {"random_resized_crop": True, "hflip": True, "crop_padding": 0},
    }

    def recipe(name: str, **teacher) -> load_recipe:
        spec = tiny_recipe(
            data=data,
            strategy=KD,
            teacher={"arch": "test_resnet", "weights": str(weights), **teacher},
            model={"arch": "test_resnet", "kwargs": {"drop_rate": 0.3}},
        )
        return write_recipe(base / "recipes" / f"{name}.yaml", spec)

    return {"base": base, "recipe": recipe, "runs": base / "runs", "rows": {}}


@ffcv_test(300)
def test_ffcv_views_replay_from_view_seed_epoch_and_index(inet):
    cfg = load_recipe(inet["recipe"]("views")).data
    a = build_data(cfg, device=torch.device("cpu"), seed=0).train
    b = build_data(cfg, device=torch.device("cpu"), seed=0).train
    first, again = list(a), list(b)
    table = a.epoch_views(0)
    heights, widths = a.info.heights, a.info.widths
    for x, y in zip(first, again, strict=True):
        assert torch.equal(x.images, y.images) and torch.equal(x.indices, y.indices)
        assert torch.equal(x.views, y.views) and torch.equal(x.views, table[x.indices])
    top, left, h, w = table[:, :4].numpy().T
    assert (top >= 0).all() and (left >= 0).all() and (h > 0).all() and (w > 0).all()
    assert (top + h <= heights).all() and (left + w <= widths).all()  # crops inside the stored images
    assert 4 < int(table[:, 4].sum()) < 28  # flips drawn for about half of 32
    assert not torch.equal(a.epoch_views(1), table)
    other = build_data(cfg, device=torch.device("cpu"), seed=1).train  # another training seed:
    assert torch.equal(other.epoch_views(0), table)  # the same views, in another order
    assert not torch.equal(next(iter(other)).indices, first[0].indices)
    seeded = build_data(replace(cfg, view_seed=1), device=torch.device("cpu"), seed=0).train
    assert not torch.equal(seeded.epoch_views(0), table)
    for loader in (a, b, other, seeded):
        loader.close()


@ffcv_test(600)
def test_cached_ffcv_kd_equals_live_kd(inet):
    live = train(load_recipe(inet["recipe"]("live")), inet["runs"], QUIET).rows
    again = train(load_recipe(inet["recipe"]("live_again")), inet["base"] / "runs_again", QUIET).rows
    assert exact(again) == exact(live)  # two ffcv runs with the same seeds
    cached = train(load_recipe(inet["recipe"]("cached", cache=True)), inet["runs"], QUIET).rows
    assert exact(cached) == exact(live) and [r["step"] for r in live] == [STEPS, 2 * STEPS]
    (folder,) = (inet["runs"] / "teacher-cache").iterdir()
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["epochs"] == 2 and meta["data"]["views"]["mode"] == "rrc"
    assert meta["data"]["beton"]["samples"] == 32
    data = build_data(
        load_recipe(inet["recipe"]("cached", cache=True)).data, device=torch.device("cpu"), seed=0
    )
    views, logits = teacher_cache.read_epoch(folder / "epoch_2.arrow", 4)
    assert views.shape == (32, 6) and torch.equal(views, data.train.epoch_views(1))
    assert logits.shape == (32, 4) and torch.isfinite(logits).all()
    data.close()
    inet["rows"]["live"], inet["cache"] = live, folder


@ffcv_test(600)
def test_resumed_cached_ffcv_run_is_exact(inet):
    if "cache" not in inet:
        pytest.skip("needs test_cached_ffcv_kd_equals_live_kd")
    path = inet["recipe"]("resume", cache=True, cache_path=str(inet["cache"]))
    runs = inet["base"] / "runs_resume"
    run = runs / load_recipe(path).run_id
    k = random.Random(3).randint(STEPS + 1, 2 * STEPS - 1)  # mid-epoch 2
    proc = start_run(path, runs, "--set", "checkpoint.every_steps=1")
    strike_when(proc, run / "checkpoints" / "last.pt", lambda s: s["step"] >= k, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 130, stderr
    train(load_recipe(path, ["checkpoint.every_steps=1"]), runs, RunOptions(resume=True, progress=False))
    assert exact(read_metrics(run / "metrics.parquet")) == exact(inet["rows"]["live"])


@ffcv_test(600)
def test_stale_and_corrupted_ffcv_caches_fail_alone(inet):
    if "cache" not in inet:
        pytest.skip("needs test_cached_ffcv_kd_equals_live_kd")
    folder = inet["cache"]
    before = {p: p.read_bytes() for p in inet["runs"].glob("*/metrics.parquet")}
    stale = load_recipe(inet["recipe"]("stale", cache=True, cache_path=str(folder)), ["data.view_seed=1"])
    with pytest.raises(TeacherError, match="stale teacher cache: made for another augmentation"):
        train(stale, inet["runs"], QUIET)

    copy = inet["base"] / "corrupt-cache"
    copy.mkdir()
    for item in folder.iterdir():
        (copy / item.name).write_bytes(item.read_bytes())
    blob = (copy / "epoch_2.arrow").read_bytes()
    (copy / "epoch_2.arrow").write_bytes(blob[: len(blob) // 2])  # a truncated file
    recipe = load_recipe(inet["recipe"]("corrupt", cache=True, cache_path=str(copy)))
    with pytest.raises(TeacherError) as caught:
        train(recipe, inet["runs"], QUIET)
    message = str(caught.value)
    assert "\n" not in message and "epoch_2.arrow: unreadable teacher cache file" in message
    status = json.loads((inet["runs"] / recipe.run_id / "status.json").read_text())
    assert status["status"] == "failed" and status["epoch"] == 1
    assert {p: p.read_bytes() for p in inet["runs"].glob("*/metrics.parquet") if p in before} == before
    assert np.array_equal(
        np.frombuffer((folder / "epoch_2.arrow").read_bytes()[:8], np.uint8),
        np.frombuffer(blob[:8], np.uint8),
    )  # the shared cache is untouched


@ffcv_test(600)
def test_cache_teacher_under_torchrun_splits_the_batches(inet):
    if "cache" not in inet:
        pytest.skip("needs test_cached_ffcv_kd_equals_live_kd")
    folder = inet["base"] / "dp-cache"
    path = inet["recipe"]("dp", cache=True, cache_path=str(folder))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["-m", "harness", "cache-teacher", str(path), "--runs-dir", str(inet["base"] / "runs_dp")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=540, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in folder.iterdir()) == ["epoch_1.arrow", "epoch_2.arrow", "meta.json"]
    for epoch in (1, 2):  # each rank forwarded half the batches; rank 0 wrote them in order
        views, logits = teacher_cache.read_epoch(folder / f"epoch_{epoch}.arrow", 4)
        ref_views, ref_logits = teacher_cache.read_epoch(inet["cache"] / f"epoch_{epoch}.arrow", 4)
        assert torch.equal(views, ref_views)
        torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-4)  # 1 thread against 2
