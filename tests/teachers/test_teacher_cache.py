"""The per-view teacher cache: round trips, replayed views, cached == live KD, stale caches."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
import torch

from harness.config import load_recipe
from harness.data import build_data
from harness.errors import TeacherError
from harness.models.build import build_model
from harness.teachers import cache as teacher_cache
from harness.training.lifecycle import train
from harness.training.loop import RunOptions
from tests.support.recipes import KD, run_cli, tiny_recipe, write_recipe

pytestmark = pytest.mark.fashion

QUIET = RunOptions(progress=False)
METRICS = ("top1", "top5", "nll", "ece", "entropy", "max_prob", "stability", "train_loss")


def test_epoch_table_round_trip_full_and_topk(tmp_path):
    g = torch.Generator().manual_seed(0)
    views = torch.randint(-2, 3, (6, 4), generator=g).float()
    logits = torch.randn(6, 10, generator=g) * 3
    full = tmp_path / "full.arrow"
    teacher_cache.write_table(full, teacher_cache.epoch_table(views, logits, None))
    got_views, got_logits = teacher_cache.read_epoch(full, 10)
    assert torch.equal(got_views, views) and torch.equal(got_logits, logits)

    top = tmp_path / "top.arrow"
    teacher_cache.write_table(top, teacher_cache.epoch_table(views, logits, 3))
    assert pa.ipc.open_file(pa.memory_map(str(top))).schema.names == [
        "index",
        "view",
        "topk_values",
        "topk_indices",
        "logsumexp",
    ]
    _, filled = teacher_cache.read_epoch(top, 10)
    values, indices = logits.topk(3, dim=1)
    assert torch.allclose(filled.gather(1, indices), values.half().float())
    # the other 7 classes share the rest of the probability mass equally (at T = 1)
    p_true, p_filled = logits.softmax(1), filled.softmax(1)
    rest = torch.ones_like(logits, dtype=torch.bool).scatter_(1, indices, False)
    assert torch.allclose(p_filled[rest].view(6, 7).sum(1), p_true[rest].view(6, 7).sum(1), atol=2e-3)
    assert torch.allclose(p_filled[rest].view(6, 7).std(1), torch.zeros(6), atol=1e-6)


def test_views_depend_on_view_seed_and_epoch_only(recipe_file):
    def loader(seed: int):
        recipe = load_recipe(recipe_file(), [f"seed={seed}", "data.view_seed=5"])
        return build_data(recipe.data, device=torch.device("cpu"), seed=recipe.seed).train

    a, b = loader(0), loader(1)
    assert torch.equal(a.epoch_views(2), b.epoch_views(2))  # shared across training seeds
    assert not torch.equal(a.epoch_views(2), a.epoch_views(3))
    a.set_epoch(2)
    first = next(iter(a))
    assert torch.equal(first.views, a.epoch_views(2)[first.indices])  # batches replay the table
    b.set_epoch(2)
    assert not torch.equal(next(iter(b)).indices, first.indices)  # while the order follows the seed


def student(tmp_path, name: str, weights, **teacher):
    return write_recipe(
        tmp_path / f"{name}.yaml",
        tiny_recipe(
            strategy=KD,
            teacher={"arch": "test_resnet", "weights": str(weights), **teacher},
            data={"view_seed": 0},
        ),
    )


@pytest.fixture
def weights(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "teacher.pt"
    torch.save(build_model("test_resnet", 10, 1).state_dict(), path)
    return path


@pytest.mark.slow
def test_cached_kd_equals_live_kd_and_is_shared_by_seeds(tmp_path, runs_dir, weights):
    live = train(load_recipe(student(tmp_path, "live", weights)), runs_dir, QUIET).rows
    cached_recipe = student(tmp_path, "cached", weights, cache=True)
    cached = train(load_recipe(cached_recipe), runs_dir, QUIET).rows
    for a, b in zip(live, cached, strict=True):
        assert [a[k] for k in METRICS] == [b[k] for k in METRICS]
        assert a["teacher_top1"] == b["teacher_top1"]
    caches = list((runs_dir / "teacher-cache").iterdir())
    assert len(caches) == 1
    meta = json.loads((caches[0] / "meta.json").read_text())
    assert meta["epochs"] == 2 and meta["storage"] == {"kind": "logits"}
    # the cache's views are the ones the live run trained on (replayed from view_seed 0)
    data = build_data(load_recipe(cached_recipe).data, device=torch.device("cpu"), seed=0)
    views, _ = teacher_cache.read_epoch(caches[0] / "epoch_2.arrow", 10)
    assert torch.equal(views, data.train.epoch_views(1))

    proc = run_cli("run", str(cached_recipe), "--runs-dir", str(runs_dir), "--set", "seed=1", check=True)
    assert "building teacher cache" not in proc.stderr  # seed 1 reads the same cache
    assert list((runs_dir / "teacher-cache").iterdir()) == caches


@pytest.mark.slow
def test_cache_teacher_builds_the_runs_cache_and_no_student(tmp_path, weights):
    """`harness cache-teacher` builds the data, the teacher and the cache alone: the same bytes
    as the cache a run builds, and no student run folder; `--rebuild` writes them again."""
    recipe = str(student(tmp_path, "cached", weights, cache=True))
    run_cli("run", recipe, "--runs-dir", str(tmp_path / "a"), check=True)
    ahead = tmp_path / "b"
    run_cli("cache-teacher", recipe, "--runs-dir", str(ahead), check=True)
    assert [p.name for p in ahead.iterdir()] == ["teacher-cache"]  # no student built, no log

    def cache_bytes(root):
        (folder,) = (root / "teacher-cache").iterdir()
        return folder.name, {p.name: p.read_bytes() for p in folder.iterdir()}

    built_by_run = cache_bytes(tmp_path / "a")
    assert cache_bytes(ahead) == built_by_run
    (ahead / "teacher-cache" / built_by_run[0] / "epoch_2.arrow").write_bytes(b"stale")
    proc = run_cli("cache-teacher", recipe, "--runs-dir", str(ahead), "--rebuild", check=True)
    assert "building teacher cache" in proc.stderr
    assert cache_bytes(ahead) == built_by_run


def test_cache_teacher_refuses_a_cache_its_runs_would_not_read(tmp_path, weights):
    """Without `teacher.cache: true` a run never reads the cache: one line naming the field, exit 2,
    nothing written."""
    from click.testing import CliRunner

    from harness.cli import main

    live = str(student(tmp_path, "live", weights))
    result = CliRunner().invoke(main, ["cache-teacher", live, "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == (
        f"error: teacher.cache: false in {live}, so its runs would never read this cache; set "
        "teacher.cache: true (or --set teacher.cache=true) with a fixed data.view_seed to share it "
        "across seeds\n"
    )
    assert not (tmp_path / "runs").exists()


def test_cache_teacher_says_which_seed_reads_a_cache_of_unfixed_views(tmp_path, weights):
    cached = student(tmp_path, "cached", weights, cache=True)
    assert teacher_cache.require_readers(load_recipe(cached)) is None  # view_seed 0: every seed
    unfixed = load_recipe(cached, ["data.view_seed=null", "seed=3"])
    assert teacher_cache.require_readers(unfixed) == (
        f"data.view_seed is unset in {cached}: the cache holds the views of seed 3 and serves the "
        "runs of that seed alone; fix data.view_seed to share it across seeds"
    )


def test_topk_cache_runs_and_stays_close(tmp_path, runs_dir, weights):
    live = train(load_recipe(student(tmp_path, "live", weights)), runs_dir, QUIET).rows
    top = train(load_recipe(student(tmp_path, "top3", weights, cache=True, cache_topk=3)), runs_dir, QUIET)
    assert abs(top.rows[-1]["train_loss"] - live[-1]["train_loss"]) < 0.05
    folder = next(p for p in (runs_dir / "teacher-cache").iterdir())
    assert json.loads((folder / "meta.json").read_text())["storage"] == {"kind": "topk", "k": 3}


@pytest.mark.slow
def test_stale_or_mismatched_cache_is_refused(tmp_path, runs_dir, weights):
    train(load_recipe(student(tmp_path, "a", weights, cache=True)), runs_dir, QUIET)
    folder = next((runs_dir / "teacher-cache").iterdir())

    other = tmp_path / "other.pt"
    torch.manual_seed(1)
    torch.save(build_model("test_resnet", 10, 1).state_dict(), other)
    cases = {
        "teacher": student(tmp_path, "b", other, cache=True, cache_path=str(folder)),
        "data": write_recipe(
            tmp_path / "c.yaml",
            {
                **tiny_recipe(strategy=KD, data={"view_seed": 0, "train_subset": 192}),
                "teacher": {
                    "arch": "test_resnet",
                    "weights": str(weights),
                    "cache": True,
                    "cache_path": str(folder),
                },
            },
        ),
        "augmentation": write_recipe(
            tmp_path / "d.yaml",
            {
                **tiny_recipe(strategy=KD, data={"view_seed": 3}),
                "teacher": {
                    "arch": "test_resnet",
                    "weights": str(weights),
                    "cache": True,
                    "cache_path": str(folder),
                },
            },
        ),
    }
    for what, path in cases.items():
        proc = run_cli("run", str(path), "--runs-dir", str(runs_dir)) if what == "teacher" else None
        if proc is not None:
            assert proc.returncode == 2 and "Traceback" not in proc.stderr
            assert f"stale teacher cache: made for another {what}" in proc.stderr.strip().splitlines()[-1]
            continue
        with pytest.raises(TeacherError, match=f"stale teacher cache: made for another {what}"):
            train(load_recipe(path), runs_dir, QUIET)

    # views tampered with on disk: refused when the epoch is read
    views, logits = teacher_cache.read_epoch(folder / "epoch_1.arrow", 10)
    views[0, 0] += 1
    teacher_cache.write_table(folder / "epoch_1.arrow", teacher_cache.epoch_table(views, logits, None))
    with pytest.raises(TeacherError, match="stored views differ"):
        train(
            load_recipe(student(tmp_path, "e", weights, cache=True, cache_path=str(folder))), runs_dir, QUIET
        )


def test_cache_needs_replayable_views(tmp_path, weights):
    path = write_recipe(
        tmp_path / "x.yaml",
        {
            **tiny_recipe(strategy=KD, data={"backend": "torch"}),
            "teacher": {"arch": "test_resnet", "weights": str(weights), "cache": True},
        },
    )
    proc = run_cli("validate", str(path))
    assert proc.returncode == 2 and "teacher.cache: needs data.backend memory or ffcv" in proc.stderr
