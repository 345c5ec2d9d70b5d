"""The torch backend (no ffcv needed) and the recipe fields the torch and ffcv backends share."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from harness.config import DataConfig, ProgressiveConfig, from_mapping, load_recipe
from harness.data import build_data
from harness.data.datasets import subset_indices
from harness.data.pipeline import DeviceStage, progressive_resolution
from harness.data.torch_loader import CentreCrop
from harness.errors import DataError, RecipeError
from harness.schema import from_dict
from harness.training.lifecycle import train
from harness.training.loop import RunOptions
from tests.support.datagen import write_image_folder
from tests.support.recipes import run_cli, tiny_recipe, write_recipe

CPU = torch.device("cpu")


def data_config(**fields) -> DataConfig:
    return from_dict(DataConfig, fields, "data")


# ------------------------------------------------------------------------------ recipe fields
@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {
                "augment": {"random_resized_crop": True},
                "progressive": {"min_res": 16, "max_res": 24, "start_epoch": 0, "end_epoch": 1},
            },
            "data.progressive: needs backend torch or ffcv",
        ),
        (
            {
                "dataset": "imagenet",
                "backend": "torch",
                "root": "/x",
                "progressive": {"min_res": 192, "max_res": 160, "start_epoch": 0, "end_epoch": 1},
            },
            "data.progressive.max_res: must be >= min_res (192), got 160",
        ),
        (
            {
                "dataset": "imagenet",
                "backend": "torch",
                "root": "/x",
                "progressive": {"min_res": 160, "max_res": 192, "start_epoch": 3, "end_epoch": 3},
            },
            "data.progressive.end_epoch: must be > start_epoch (3), got 3",
        ),
        (
            {
                "dataset": "imagenet",
                "backend": "torch",
                "root": "/x",
                "image_size": 224,
                "progressive": {"min_res": 160, "max_res": 192, "start_epoch": 0, "end_epoch": 1},
            },
            "data.image_size: give either image_size or progressive, not both",
        ),
        (
            {
                "backend": "torch",
                "progressive": {"min_res": 16, "max_res": 24, "start_epoch": 0, "end_epoch": 1},
            },
            "data.progressive: resizes decoded crops: needs imagenet or random_resized_crop",
        ),
        ({"dataset": "imagenet", "backend": "torch"}, "data.root: required with backend torch for imagenet"),
        ({"val_crop_ratio": 0}, "data.val_crop_ratio: must be in (0, 1], got 0"),
        ({"loader_timeout_s": 0}, "data.loader_timeout_s: must be > 0, got 0"),
        ({"progressive": {"min_res": 16}}, "data.progressive.max_res: required"),
    ],
)
def test_new_data_fields_are_checked(tmp_path, data, message):
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(data=data))
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_progressive_ramp_rounds_like_ffcv_imagenet():
    # ffcv-imagenet's 88-epoch ResNet-50 config: 160 px up to epoch 65, 192 px from epoch 76.
    p = ProgressiveConfig(min_res=160, max_res=192, start_epoch=65, end_epoch=76)
    assert [progressive_resolution(p, e) for e in (0, 65, 76, 87)] == [160, 160, 192, 192]
    # epoch 70: 160 + 32 * 5/11 = 174.5 -> 174.5 / 32 = 5.45 -> 5 * 32 = 160
    # epoch 71: 160 + 32 * 6/11 = 177.5 -> 5.55 -> 6 * 32 = 192
    assert progressive_resolution(p, 70) == 160 and progressive_resolution(p, 71) == 192
    # a finer step: 32 -> 64 over epochs 0..2 in steps of 16 gives 48 in the middle
    q = ProgressiveConfig(min_res=32, max_res=64, start_epoch=0, end_epoch=2, step=16)
    assert [progressive_resolution(q, e) for e in range(4)] == [32, 48, 64, 64]


# ------------------------------------------------------------------------------ device stage
def test_device_stage_normalises_both_memory_formats_exactly():
    g = torch.Generator().manual_seed(0)
    u8 = torch.randint(0, 256, (4, 3, 5, 7), dtype=torch.uint8, generator=g)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    stage = DeviceStage(CPU, mean, std, channels=3)
    expected = (u8.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    channels_last = u8.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # what ffcv hands over
    for x in (u8, channels_last):
        out = stage.images(x)
        assert out.shape == (4, 3, 5, 7) and out.dtype == torch.float32
        torch.testing.assert_close(out, expected, atol=2e-6, rtol=0)
        assert out.data_ptr() != x.data_ptr()
    flipper = DeviceStage(CPU, mean, std, channels=3, hflip=True)
    flipped = flipper.images(channels_last, torch.Generator().manual_seed(5))
    heads = torch.rand(4, generator=torch.Generator().manual_seed(5)) < 0.5  # one draw per image
    assert 0 < int(heads.sum()) < 4
    mirrored = torch.where(heads.view(-1, 1, 1, 1), expected.flip(-1), expected)
    torch.testing.assert_close(flipped, mirrored, atol=2e-6, rtol=0)
    grey = DeviceStage(CPU, (0.5,), (0.25,), channels=1).images(channels_last)
    torch.testing.assert_close(grey, (u8[:, :1].float() / 255 - 0.5) / 0.25, atol=2e-6, rtol=0)
    labels = torch.tensor([[3], [1]])
    kept = stage.labels(labels)
    labels[0, 0] = 9
    assert kept.tolist() == [3, 1]  # a copy, not a view of the loader's buffer


def test_centre_crop_takes_the_ratio_of_the_shorter_side():
    img = torch.arange(3 * 40 * 60, dtype=torch.float32).reshape(3, 40, 60).to(torch.uint8)
    out = CentreCrop(32, 0.5)(img)
    # side = int(0.5 * min(40, 60)) = 20: rows (40 - 20) // 2 = 10.., cols (60 - 20) // 2 = 20..
    expected = TF.resize(img[:, 10:30, 20:40], [32, 32], antialias=True)
    assert torch.equal(out, expected)


# ------------------------------------------------------------------------------ loaders
def _indices(loader) -> list[int]:
    return [i for batch in loader for i in batch.indices.tolist()]


def test_ranks_get_equal_disjoint_shares_and_eval_counts_each_sample_once():
    cfg = data_config(
        dataset="synthetic", backend="torch", synthetic_size=101, batch_size=16, eval_batch_size=8
    )
    ranks = [build_data(cfg, device=CPU, seed=3, rank=r, world_size=2) for r in (0, 1)]
    for epoch in (0, 1):
        shares = []
        for bundle in ranks:
            bundle.train.set_epoch(epoch)
            shares.append(_indices(bundle.train))
        assert [len(s) for s in shares] == [50, 50]  # 101 // 2 each: the same steps on every rank
        assert [len(b.train) for b in ranks] == [4, 4]  # ceil(50 / 16)
        assert not set(shares[0]) & set(shares[1])
    ranks[0].train.set_epoch(0)
    first = _indices(ranks[0].train)
    ranks[0].train.set_epoch(1)
    assert _indices(ranks[0].train) != first
    ranks[0].train.set_epoch(0)
    assert _indices(ranks[0].train) == first  # the order is a function of (seed, epoch)
    val = [_indices(b.val) for b in ranks]  # 101 // 4 = 25 validation samples
    assert val[0] == list(range(0, 25, 2)) and val[1] == list(range(1, 25, 2))


@pytest.mark.fashion
def test_torch_evaluation_batches_equal_the_memory_backend():
    common = {"dataset": "fashion_mnist", "val_subset": 100, "train_subset": 64, "eval_batch_size": 32}
    mem = build_data(data_config(**common), device=CPU, seed=0)
    tor = build_data(data_config(backend="torch", num_workers=1, **common), device=CPU, seed=0)
    pairs = list(zip(mem.val, tor.val, strict=True))
    assert len(pairs) == 4  # ceil(100 / 32)
    # memory numbers samples within its subset, torch by position in the split
    keep_val = subset_indices(10_000, 100, 0 + 1)
    for a, b in pairs:
        assert torch.equal(keep_val[a.indices], b.indices) and torch.equal(a.targets, b.targets)
        torch.testing.assert_close(a.images, b.images, atol=1e-5, rtol=0)
    assert (mem.channels, mem.num_classes, mem.eval_split) == (tor.channels, tor.num_classes, tor.eval_split)
    keep_train = subset_indices(60_000, 64, 0)
    assert sorted(_indices(tor.train)) == keep_train.tolist()  # the same 64-sample subset
    assert sorted(_indices(mem.train)) == list(range(64))


def test_progressive_resolution_changes_torch_crops_by_epoch():
    cfg = data_config(
        dataset="synthetic",
        backend="torch",
        synthetic_size=16,
        batch_size=8,
        augment={"random_resized_crop": True, "hflip": True},
        progressive={"min_res": 16, "max_res": 32, "start_epoch": 0, "end_epoch": 2, "step": 8},
    )
    bundle = build_data(cfg, device=CPU, seed=0)
    sizes = []
    for epoch in range(3):
        bundle.train.set_epoch(epoch)
        sizes.append(next(iter(bundle.train)).images.shape[-1])
    assert sizes == [16, 24, 32]  # 16 + 16 * 1/2 = 24 in the middle
    assert bundle.image_size == 32


# ------------------------------------------------------------------------------ image folders
@pytest.fixture
def imagenet_root(tmp_path):
    classes = ["cat", "dog", "emu"]
    sizes = [(40, 56), (64, 48), (36, 36), (50, 70)]
    write_image_folder(tmp_path / "imgs" / "train", classes, 6, sizes, ext=".jpg", seed=1, grey_every=5)
    write_image_folder(tmp_path / "imgs" / "val", classes, 2, sizes, ext=".jpg", seed=2)
    return tmp_path / "imgs"


def imagenet_recipe(root, **data):
    return tiny_recipe(
        data={
            "dataset": "imagenet",
            "backend": "torch",
            "root": str(root),
            "num_classes": 3,
            "image_size": 32,
            "train_subset": 16,
            "val_subset": None,
            "batch_size": 8,
            "eval_batch_size": 4,
            "augment": {"random_resized_crop": True, "hflip": True, "crop_padding": 0},
            **data,
        },
        schedule={"epochs": 1},
    )


def test_imagenet_folders_train_two_steps_through_torch(imagenet_root, tmp_path):
    recipe = from_mapping(imagenet_recipe(imagenet_root), "tiny_imagenet_torch")
    bundle = build_data(recipe.data, device=CPU, seed=0)
    batch = next(iter(bundle.train))
    assert batch.images.shape == (8, 3, 32, 32) and batch.targets.max() < 3
    val = list(bundle.val)
    assert [len(b) for b in val] == [4, 2] and val[0].images.shape == (4, 3, 32, 32)  # 224/256 crop -> 32
    result = train(recipe, tmp_path / "runs", RunOptions(progress=False))
    row = result.rows[-1]
    assert result.status == "completed" and row["step"] == 2  # 16 images / batch 8
    assert row["eval_samples"] == 6 and row["eval_split"] == "val"


@pytest.mark.slow
def test_unreadable_image_is_a_one_line_error_naming_it(imagenet_root, tmp_path):
    bad = imagenet_root / "train" / "dog" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    recipe = from_mapping(imagenet_recipe(imagenet_root, train_subset=None, num_workers=1), "tiny_bad")
    bundle = build_data(recipe.data, device=CPU, seed=0)
    with pytest.raises(DataError) as err:
        for _ in bundle.train:
            pass
    assert str(err.value).startswith(f"{bad}: cannot decode image")
    assert "\n" not in str(err.value)
    path = write_recipe(tmp_path / "bad.yaml", imagenet_recipe(imagenet_root, train_subset=None))
    proc = run_cli("run", str(path), "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {bad}: cannot decode image")
    assert "Traceback" not in proc.stderr


def test_mismatched_class_folders_are_refused(imagenet_root):
    write_image_folder(imagenet_root / "val", ["yak"], 1, [(32, 32)], ext=".jpg")
    recipe = from_mapping(imagenet_recipe(imagenet_root, num_classes=4), "tiny_classes")
    with pytest.raises(DataError, match="class folders differ"):
        build_data(recipe.data, device=CPU, seed=0)


def test_labels_beyond_num_classes_are_refused(imagenet_root):
    recipe = from_mapping(imagenet_recipe(imagenet_root, num_classes=2), "tiny_nc")
    with pytest.raises(DataError, match=r"labels in .* go up to 2, num_classes is 2"):
        build_data(recipe.data, device=CPU, seed=0)
