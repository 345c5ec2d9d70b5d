"""The ffcv backend and `harness data convert`: round trips, loaders, the ffcv traps, errors.

Every test touching ffcv has a timeout (a hang fails instead of stalling CI) and the `ffcv`
mark (skipped where ffcv is not installed). numba compiles ffcv's decoder once per loader and
process, so the tests share their .beton files through module fixtures.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.config import DataConfig, from_mapping
from harness.data import build_data
from harness.data.convert import ArraySource, ConvertOptions, convert, stored_size, write_beton
from harness.errors import DataError
from harness.schema import from_dict
from harness.training.lifecycle import train
from harness.training.loop import RunOptions
from tests.support.datagen import (
    read_beton,
    write_cifar10,
    write_cifar100,
    write_fashion_idx,
    write_image_folder,
)
from tests.support.marks import ffcv_test
from tests.support.recipes import run_cli, tiny_recipe, write_recipe

CPU = torch.device("cpu")
SMALL_PAGES = ConvertOptions(workers=2, page_size=1 << 21, progress=False)  # 2 MiB pages: small files
FM_MEAN, FM_STD = 0.2860, 0.3530  # Fashion-MNIST statistics (harness.data.datasets.INFOS)


def leftovers(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.tmp-*"))


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def fm(tmp_path_factory):
    """A Fashion-MNIST-style IDX folder of generated images, converted raw to two .beton files."""
    base = tmp_path_factory.mktemp("fm")
    rng = np.random.default_rng(7)
    arrays = {
        "train_images": rng.integers(0, 256, (300, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, 300),
        "test_images": rng.integers(0, 256, (200, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, 200),
    }
    folder = write_fashion_idx(
        base / "idx",
        (arrays["train_images"], arrays["train_labels"]),
        (arrays["test_images"], arrays["test_labels"]),
    )
    betons = {}
    for split in ("train", "test"):
        betons[split] = base / f"{split}.beton"
        convert(folder, betons[split], replace(SMALL_PAGES, split=split))
    return {"folder": folder, "betons": betons, **arrays}


@pytest.fixture(scope="module")
def tiny_imagenet(tmp_path_factory):
    """JPEG ImageFolder splits of 4 classes (varied sizes) and their .beton files (jpg mode)."""
    base = tmp_path_factory.mktemp("imagenet")
    classes = ["ant", "bee", "cow", "doe"]
    sizes = [(40, 56), (72, 48), (36, 36), (50, 64)]
    write_image_folder(base / "src" / "train", classes, 4, sizes, ext=".jpg", seed=3, grey_every=5)
    write_image_folder(base / "src" / "val", classes, 2, sizes, ext=".jpg", seed=4)
    betons = {}
    for split in ("train", "val"):
        betons[split] = base / f"{split}.beton"
        convert(base / "src", betons[split], replace(SMALL_PAGES, split=split, workers=1))
    return betons


def data_config(**fields) -> DataConfig:
    return from_dict(DataConfig, fields, "data")


def fm_config(fm, **fields) -> DataConfig:
    base = {
        "dataset": "fashion_mnist",
        "backend": "ffcv",
        "root": str(fm["folder"]),
        "train_path": str(fm["betons"]["train"]),
        "val_path": str(fm["betons"]["test"]),
        "batch_size": 50,
        "eval_batch_size": 32,
        "num_workers": 2,
    }
    return data_config(**{**base, **fields})


# ------------------------------------------------------------------------------ conversion
@ffcv_test(600)
@pytest.mark.slow
def test_cli_converts_an_image_folder_bit_exact_and_never_overwrites_unasked(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out.beton"
    written = write_image_folder(src, ["b", "a", "c"], 3, [(20, 30), (33, 17), (24, 24)], grey_every=4)
    args = ("data", "convert", str(src), str(out), "--workers", "2", "--page-size", "2", "--no-progress")
    proc = run_cli(*args, "--write-mode", "raw", check=True)
    assert f"wrote {out}: 9 images, 3 classes (imagefolder)" in proc.stdout
    records = read_beton(out)
    assert len(records) == len(written) == 9
    for (pixels, label), (path, expected, expected_label) in zip(records, written, strict=True):
        assert np.array_equal(pixels, expected), path  # raw mode: bit-exact, grey images as RGB
        assert label == expected_label  # sorted class folders: a=0, b=1, c=2
    before = out.read_bytes()
    refused = run_cli(*args, "--write-mode", "raw")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1] == f"error: {out}: exists; pass --force to overwrite it"
    assert out.read_bytes() == before
    convert(src, out, replace(SMALL_PAGES, write_mode="jpg", force=True))  # what --force sets
    again = read_beton(out)
    assert out.read_bytes() != before and [r[1] for r in again] == [r[1] for r in records]
    assert [r[0].shape for r in again] == [r[0].shape for r in records]
    assert leftovers(tmp_path) == []


@ffcv_test(180)
def test_cifar_batches_round_trip_with_their_labels(tmp_path):
    c10 = write_cifar10(tmp_path / "cifar-10-batches-py", per_batch=4, n_test=6)
    for split, n in (("train", 20), ("test", 6)):  # 5 batches of 4 / one test batch
        out = tmp_path / f"c10_{split}.beton"
        result = convert(tmp_path / "cifar-10-batches-py", out, replace(SMALL_PAGES, split=split, workers=1))
        assert (result.format, result.samples) == ("cifar", n)
        records = read_beton(out)
        images = c10[f"{split}_images"].transpose(0, 2, 3, 1)  # CHW -> HWC
        assert all(np.array_equal(p, im) for (p, _), im in zip(records, images, strict=True))
        assert [label for _, label in records] == c10[f"{split}_labels"].tolist()
    c100 = write_cifar100(tmp_path / "cifar-100-python", n_train=12, n_test=5)
    out = tmp_path / "c100.beton"
    convert(tmp_path / "cifar-100-python", out, replace(SMALL_PAGES, split="train", workers=1))
    records = read_beton(out)
    images = c100["train_images"].transpose(0, 2, 3, 1)
    assert all(np.array_equal(p, im) for (p, _), im in zip(records, images, strict=True))
    assert [label for _, label in records] == c100["train_labels"].tolist()  # the fine labels


@ffcv_test(240)
def test_fashion_mnist_idx_round_trip(fm):
    records = read_beton(fm["betons"]["test"])
    assert len(records) == 200
    for (pixels, label), grey, expected in zip(records, fm["test_images"], fm["test_labels"], strict=True):
        assert pixels.shape == (28, 28, 3) and all(np.array_equal(pixels[..., c], grey) for c in range(3))
        assert label == expected


@ffcv_test(180)
def test_jpeg_mode_caps_the_longest_side(tmp_path):
    import cv2  # installed with ffcv

    src = tmp_path / "src"
    written = write_image_folder(src, ["x", "y"], 3, [(40, 60), (64, 32), (20, 20)], ext=".jpg")
    out = tmp_path / "capped.beton"
    convert(src, out, replace(SMALL_PAGES, write_mode="jpg", max_resolution=24, jpeg_quality=90, workers=1))
    records = read_beton(out)
    # 40x60: ratio 24/60 = 0.4 -> 16x24; 64x32: ratio 24/64 = 0.375 -> 24x12; 20x20 stays
    expected_shapes = [(16, 24, 3), (24, 12, 3), (20, 20, 3)] * 2
    assert [p.shape for p, _ in records] == expected_shapes
    assert [stored_size(*w[1].shape[:2], 24) for w in written] == [s[:2] for s in expected_shapes]
    assert [label for _, label in records] == [0, 0, 0, 1, 1, 1]
    for (pixels, _), (_, source, _) in zip(records, written, strict=True):
        h, w = pixels.shape[:2]
        reference = cv2.resize(source, (w, h), interpolation=cv2.INTER_AREA)
        # the same picture (JPEG q90 after a reduced-scale decode, so not the same bytes)
        assert np.corrcoef(pixels.ravel(), reference.ravel())[0, 1] > 0.9
        assert np.abs(pixels.reshape(-1, 3).mean(0) - reference.reshape(-1, 3).mean(0)).max() < 2


@ffcv_test(180)
def test_a_failed_conversion_leaves_no_file_and_keeps_the_old_one(tmp_path):
    src = tmp_path / "src"
    write_image_folder(src, ["a", "b"], 3, [(24, 24)])
    bad = src / "b" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n but nothing else")
    out = tmp_path / "out.beton"
    start = time.monotonic()
    with pytest.raises(DataError) as err:
        convert(src, out, SMALL_PAGES)
    assert str(err.value).startswith(f"{bad}: cannot read image")
    assert time.monotonic() - start < 60  # ffcv's own writer would wait forever for the dead worker
    assert not out.exists() and leftovers(tmp_path) == []
    out.write_bytes(b"an earlier conversion")
    with pytest.raises(DataError):
        convert(src, out, replace(SMALL_PAGES, force=True))
    assert out.read_bytes() == b"an earlier conversion" and leftovers(tmp_path) == []
    write_image_folder(tmp_path / "splits" / "train", ["a"], 1, [(8, 8)])
    write_image_folder(tmp_path / "splits" / "val", ["a"], 1, [(8, 8)])
    with pytest.raises(DataError, match="holds the splits train, val; pass --split val"):
        convert(tmp_path / "splits", tmp_path / "s.beton", SMALL_PAGES)


@pytest.mark.parametrize(
    ("make", "options", "message"),
    [
        (lambda d: d / "missing", {}, "missing: not found"),
        (lambda d: d / "file.txt", {}, "file.txt: expected a folder"),
        (lambda d: d / "empty", {}, "empty: cannot tell its format"),
        (lambda d: d / "fm", {}, "--split: required for fashion-mnist sources (train or test)"),
        (
            lambda d: d / "fm",
            {"split": "train", "jpeg_quality": 0},
            "--jpeg-quality: must be in [1, 100], got 0",
        ),
        (lambda d: d / "fm", {"split": "train", "page_size": 3 << 20}, "--page-size: must be a power of two"),
        (
            lambda d: d / "fm",
            {"split": "train", "max_resolution": 0},
            "--max-resolution: must be >= 1, got 0",
        ),
        (lambda d: d / "fm", {"split": "train", "format": "cifar"}, "fm: no CIFAR python batches"),
    ],
)
def test_conversion_input_errors_are_one_line(tmp_path, make, options, message):
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 28, 28), dtype=np.uint8)
    write_fashion_idx(tmp_path / "fm", (images, np.arange(4)), (images, np.arange(4)))
    with pytest.raises(DataError) as err:
        convert(make(tmp_path), tmp_path / "out.beton", ConvertOptions(**options))
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out.beton").exists()
    with pytest.raises(DataError, match="output folder not found"):
        convert(tmp_path / "fm", tmp_path / "nowhere" / "out.beton", ConvertOptions(split="train"))


class SlowSource(ArraySource):
    def sample(self, i):
        time.sleep(0.02)
        return super().sample(i)


@ffcv_test(240)
def test_sigterm_mid_conversion_leaves_nothing_behind(tmp_path):
    images = np.zeros((1000, 1, 8, 8), dtype=np.uint8)
    source = SlowSource(images, np.zeros(1000, dtype=np.int64), "slow")
    out = tmp_path / "slow.beton"

    def terminate_once_writing():
        deadline = time.monotonic() + 60
        while not leftovers(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.05)  # the temporary file exists: the conversion's handler is in place
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGTERM)

    killer = threading.Thread(target=terminate_once_writing, daemon=True)
    killer.start()
    with pytest.raises(KeyboardInterrupt):
        write_beton(source, out, SMALL_PAGES, "fashion-mnist")  # 1000 x 20 ms / 2 workers = 10 s
    killer.join()
    assert not out.exists() and leftovers(tmp_path) == []
    assert multiprocessing.active_children() == []  # the workers were stopped


# ------------------------------------------------------------------------------ loaders
def _kept_epoch(loader) -> list:
    return list(loader)  # every Batch of the epoch, held at once


@ffcv_test(600)
@pytest.mark.slow
def test_ffcv_batches_are_bit_exact_paired_and_safe_to_keep(fm):
    bundle = build_data(fm_config(fm), device=CPU, seed=0)
    assert (bundle.channels, bundle.num_classes, bundle.image_size) == (1, 10, 28)
    images, labels = fm["test_images"], fm["test_labels"]
    seen = []
    for u8, lab, idx in bundle.val.host_batches():  # uint8 as ffcv hands them over
        idx = idx.reshape(-1).numpy().copy()
        assert u8.shape[1:] == (3, 28, 28)
        assert np.array_equal(u8[:, 0].numpy(), images[idx]) and np.array_equal(u8[:, 2].numpy(), images[idx])
        assert np.array_equal(lab.reshape(-1).numpy(), labels[idx])
        seen.extend(idx.tolist())
    assert seen == list(range(200))  # evaluation reads the split in order
    kept = _kept_epoch(bundle.val)
    assert len(kept) == 7  # ceil(200 / 32): more batches than ffcv has buffers (batches_ahead + 2 = 5)
    memory = build_data(fm_config(fm, backend="memory"), device=CPU, seed=0)
    for batch, mem in zip(kept, memory.val, strict=True):
        idx = batch.indices.numpy()
        expected = (torch.from_numpy(images[idx]).float()[:, None] / 255 - FM_MEAN) / FM_STD
        torch.testing.assert_close(batch.images, expected, atol=1e-5, rtol=0)
        assert batch.targets.tolist() == labels[idx].tolist()
        torch.testing.assert_close(batch.images, mem.images, atol=1e-5, rtol=0)  # = the memory backend
        assert torch.equal(batch.indices, mem.indices) and torch.equal(batch.targets, mem.targets)

    train_batches = _kept_epoch(bundle.train)
    order = [i for b in train_batches for i in b.indices.tolist()]
    assert sorted(order) == list(range(300)) and order != list(range(300))
    for b in train_batches:  # no augmentation asked: the training images are the stored ones
        assert b.targets.tolist() == fm["train_labels"][b.indices.numpy()].tolist()
        pixels = torch.from_numpy(fm["train_images"][b.indices.numpy()]).float()[:, None]
        torch.testing.assert_close(b.images, (pixels / 255 - FM_MEAN) / FM_STD, atol=1e-5, rtol=0)
    bundle.train.set_epoch(1)
    assert [i for b in bundle.train for i in b.indices.tolist()] != order
    bundle.train.set_epoch(0)
    assert [i for b in bundle.train for i in b.indices.tolist()] == order  # seeded by (seed, epoch)

    flipping = build_data(fm_config(fm, augment={"hflip": True}), device=CPU, seed=0)
    first, again = _kept_epoch(flipping.train), _kept_epoch(flipping.train)
    mirrored = 0
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a.images, b.images)  # flips on the device are seeded by (seed, epoch)
        stored = (
            torch.from_numpy(fm["train_images"][a.indices.numpy()]).float()[:, None] / 255 - FM_MEAN
        ) / FM_STD
        same = (a.images - stored).abs().amax(dim=(1, 2, 3)) < 1e-5
        flipped = (a.images - stored.flip(-1)).abs().amax(dim=(1, 2, 3)) < 1e-5
        assert bool((same | flipped).all())
        mirrored += int((flipped & ~same).sum())
    assert 100 < mirrored < 200  # about half of 300

    import numba

    # ffcv 1.0.2 marks numba's shared uint8[::1] type read-only in place, which breaks numba's
    # dictionaries (KeyError); harness.data.ffcv_env builds its own read-only types instead
    assert numba.uint8[::1].mutable and numba.types.Array(numba.uint8, 1, "C").mutable


@ffcv_test(600)
@pytest.mark.slow
def test_ranks_take_equal_disjoint_shares(fm):
    shares = []
    for rank in (0, 1):
        bundle = build_data(
            fm_config(fm, augment={"crop_padding": 2, "hflip": True}),
            device=CPU,
            seed=0,
            rank=rank,
            world_size=2,
        )
        assert bundle.train.num_samples == 150 and len(bundle.train) == 3  # 300 // 2 per rank, batch 50
        batches = list(bundle.train)
        assert all(b.images.shape == (50, 1, 28, 28) for b in batches)
        shares.append({i for b in batches for i in b.indices.tolist()})
        assert bundle.val.num_samples == 100  # indices rank::2 of 200
    assert len(shares[0]) == len(shares[1]) == 150 and not shares[0] & shares[1]


@ffcv_test(600)
@pytest.mark.slow
def test_imagenet_recipe_trains_two_steps_through_ffcv(tiny_imagenet, tmp_path):
    recipe = from_mapping(
        tiny_recipe(
            data={
                "dataset": "imagenet",
                "backend": "ffcv",
                "train_path": str(tiny_imagenet["train"]),
                "val_path": str(tiny_imagenet["val"]),
                "num_classes": 4,
                "image_size": 32,
                "train_subset": 16,
                "val_subset": None,
                "batch_size": 8,
                "eval_batch_size": 4,
                "num_workers": 2,
                "augment": {"random_resized_crop": True, "hflip": True, "crop_padding": 0},
            },
            schedule={"epochs": 1},
        ),
        "tiny_imagenet_ffcv",
    )
    result = train(recipe, tmp_path / "runs", RunOptions(progress=False))
    row = result.rows[-1]
    assert result.status == "completed" and row["step"] == 2  # 16 images / batch 8
    assert row["eval_samples"] == 8 and row["eval_split"] == "val" and row["train_samples"] == 16
    log = (result.run_dir / "log.txt").read_text()
    assert "imagenet (ffcv train.beton / val.beton)" in log and "random-resized crop" in log


@ffcv_test(600)
def test_progressive_resolution_resizes_ffcv_crops_by_epoch(tiny_imagenet):
    cfg = data_config(
        dataset="imagenet",
        backend="ffcv",
        train_path=str(tiny_imagenet["train"]),
        val_path=str(tiny_imagenet["val"]),
        num_classes=4,
        val_image_size=40,
        batch_size=4,
        eval_batch_size=8,
        num_workers=1,
        augment={"random_resized_crop": True},
        progressive={"min_res": 32, "max_res": 64, "start_epoch": 0, "end_epoch": 2, "step": 16},
    )
    bundle = build_data(cfg, device=CPU, seed=0)
    sizes = []
    for epoch in range(3):
        bundle.train.set_epoch(epoch)
        batch = next(iter(bundle.train))
        sizes.append(tuple(batch.images.shape[1:]))
    assert sizes == [(3, 32, 32), (3, 48, 48), (3, 64, 64)]  # 32 + 32 * 1/2 = 48 in the middle
    assert [tuple(b.images.shape) for b in bundle.val] == [(8, 3, 40, 40)]  # evaluation keeps its size
    assert bundle.image_size == 64


# ------------------------------------------------------------------------------ the traps
def _python_op(fn):
    """An ffcv operation running `fn(images)` as plain Python after ToTensor (a torch stage)."""
    from ffcv.pipeline.operation import Operation

    class PythonOp(Operation):
        def generate_code(self):
            def run(images, dst):
                return fn(images)

            return run

        def declare_state_and_memory(self, previous_state):
            return replace(previous_state, jit_mode=False), None

    return PythonOp()


def _watched(path: Path, image_tail: list, timeout_s: float = 600.0):
    from harness.data.ffcv_loader import ffcv_api

    api = ffcv_api()
    loader = api.WatchedLoader(
        str(path),
        batch_size=32,
        num_workers=1,
        order=api.OrderOption.SEQUENTIAL,
        pipelines={
            "image": [api.SimpleRGBImageDecoder(), api.ToTensor(), *image_tail],
            "label": [api.IntDecoder(), api.ToTensor()],
        },
        drop_last=False,
    )
    loader.stall_timeout_s = timeout_s
    return loader


@ffcv_test(180)
def test_an_exception_in_the_loader_thread_becomes_a_data_error(fm):
    calls = []

    def fail_on_second_batch(images):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("injected loader failure")
        return images

    path = fm["betons"]["test"]
    epoch = iter(_watched(path, [_python_op(fail_on_second_batch)]))
    images, _ = next(epoch)
    assert images.shape == (32, 28, 28, 3)
    start = time.monotonic()
    with pytest.raises(DataError) as err:
        next(epoch)
    assert str(err.value) == f"{path}: the ffcv loader failed: RuntimeError: injected loader failure"
    assert time.monotonic() - start < 10


@ffcv_test(180)
def test_a_stuck_loader_thread_times_out_with_a_data_error(fm):
    release = threading.Event()
    calls = []

    def stall_from_second_batch(images):
        calls.append(1)
        if len(calls) >= 2:
            release.wait(60)
        return images

    path = fm["betons"]["test"]
    loader = _watched(path, [_python_op(stall_from_second_batch)])
    epoch = iter(loader)
    next(epoch)  # the first batch (and numba's compile) comes through
    loader.stall_timeout_s = 1.5
    start = time.monotonic()
    try:
        with pytest.raises(DataError) as err:
            next(epoch)
        elapsed = time.monotonic() - start
    finally:
        release.set()
    assert str(err.value).startswith(f"{path}: no batch from the ffcv loader in 1.5 s")
    assert 1.5 <= elapsed < 30


@ffcv_test(180)
def test_pipelines_keep_numba_operations_before_torch_ones():
    from harness.data.ffcv_loader import check_pipeline, ffcv_api

    api = ffcv_api()
    decoder, flip, to_tensor = api.SimpleRGBImageDecoder(), api.RandomHorizontalFlip(), api.ToTensor()
    assert check_pipeline([decoder, flip, to_tensor]) == [decoder, flip, to_tensor]
    with pytest.raises(ValueError, match="#396"):
        check_pipeline([decoder, api.ToTensor(), flip, to_tensor])  # the hang of upstream issue #396
    with pytest.raises(ValueError, match="must end with ToTensor"):
        check_pipeline([decoder, flip])


@ffcv_test(180)
def test_ffcv_compiles_are_cached_on_disk():
    from harness.data.ffcv_env import require_ffcv

    require_ffcv()
    from ffcv.pipeline.compiler import Compiler
    from ffcv.transforms import RandomHorizontalFlip
    from ffcv.transforms.utils.fast_crop import get_random_crop
    from numba.core.caching import FunctionCache

    assert os.environ.get("NUMBA_CACHE_DIR")
    compiled = Compiler.compile(get_random_crop.py_func)
    assert isinstance(compiled._cache, FunctionCache)  # numba keeps what it compiles for the next process
    # ffcv generates a new closure per loader; equal ones share one dispatcher (one compile)
    first, second = RandomHorizontalFlip(0.5).generate_code(), RandomHorizontalFlip(0.5).generate_code()
    assert first is not second and Compiler.compile(first) is Compiler.compile(second)
    assert Compiler.compile(RandomHorizontalFlip(0.25).generate_code()) is not Compiler.compile(first)


# ------------------------------------------------------------------------------ no ffcv
@pytest.mark.timeout(300)
@pytest.mark.slow
def test_without_ffcv_an_ffcv_recipe_says_how_to_install_it(tmp_path):
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(
        "import sys\n"
        "class _NoFfcv:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'ffcv' or name.startswith('ffcv.'):\n"
        "            raise ImportError(\"No module named 'ffcv'\")\n"
        "sys.meta_path.insert(0, _NoFfcv())\n"
    )
    recipe = tiny_recipe(data={"backend": "ffcv", "train_path": "train.beton", "val_path": "val.beton"})
    path = write_recipe(tmp_path / "ffcv.yaml", recipe)
    env = {"PYTHONPATH": os.pathsep.join([str(shim), os.environ.get("PYTHONPATH", "")])}
    proc = run_cli("run", str(path), "--runs-dir", str(tmp_path / "runs"), env=env)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the ffcv backend needs ffcv, which cannot be imported")
    assert "pip install -e '.[ffcv]'" in last and "data.backend: torch" in last
    assert "Traceback" not in proc.stderr
