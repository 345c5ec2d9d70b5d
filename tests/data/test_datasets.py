"""Data-set readers and the replayable device augmentation."""

from __future__ import annotations

import gzip
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from harness.data.augment import AugmentSpec, apply_views, epoch_generator, sample_views
from harness.data.datasets import load_cifar, read_idx
from harness.errors import DataError


def write_cifar10(folder, n=4):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(range(n))}
        (folder / name).write_bytes(pickle.dumps(batch))


class Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/harness-pwned",))


def test_cifar_reader_pairs_images_and_labels(tmp_path):
    write_cifar10(tmp_path / "c10")
    images, labels = load_cifar(str(tmp_path / "c10"), "train", 10)
    assert images.shape == (20, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.tolist() == [0, 1, 2, 3] * 5
    raw = pickle.loads((tmp_path / "c10" / "data_batch_1").read_bytes())
    assert torch.equal(images[1], torch.from_numpy(raw[b"data"][1].reshape(3, 32, 32)))


def test_cifar_reader_refuses_code_in_pickles(tmp_path):
    write_cifar10(tmp_path / "c10")
    (tmp_path / "c10" / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": [0]}))
    with pytest.raises(DataError, match=r"refusing to load .*system"):
        load_cifar(str(tmp_path / "c10"), "val", 10)
    assert not os.path.exists("/tmp/harness-pwned")


def test_idx_reader_checks_its_input(tmp_path):
    good = tmp_path / "x-idx3-ubyte.gz"
    with gzip.open(good, "wb") as fh:
        fh.write(struct.pack(">HBB3I", 0, 8, 3, 2, 2, 2) + bytes(range(8)))
    assert read_idx(good).tolist() == [[[0, 1], [2, 3]], [[4, 5], [6, 7]]]
    short = tmp_path / "short-idx3-ubyte.gz"
    with gzip.open(short, "wb") as fh:
        fh.write(struct.pack(">HBB3I", 0, 8, 3, 2, 2, 2) + bytes(range(5)))
    with pytest.raises(DataError, match="truncated IDX file"):
        read_idx(short)
    bad = tmp_path / "bad.gz"
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read IDX file"):
        read_idx(bad)


def test_views_replay_exactly_and_do_what_they_say():
    spec = AugmentSpec(crop_padding=2, hflip=True, rotation_degrees=0)
    a = sample_views(spec, 64, epoch_generator(7, 3))
    b = sample_views(spec, 64, epoch_generator(7, 3))
    c = sample_views(spec, 64, epoch_generator(7, 4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a[:, :2].abs().max() <= 2 and set(a[:, 2].tolist()) <= {0.0, 1.0}
    x = torch.arange(16.0).view(1, 1, 4, 4)
    shift = torch.tensor([[1.0, -1.0, 0.0, 0.0]])  # dy=1, dx=-1: content moves up and right
    out = apply_views(x, shift, AugmentSpec(crop_padding=2))
    expected = torch.tensor([[0, 4, 5, 6], [0, 8, 9, 10], [0, 12, 13, 14], [0, 0, 0, 0]], dtype=torch.float)
    assert torch.equal(out[0, 0], expected)
    flipped = apply_views(x, torch.tensor([[0.0, 0.0, 1.0, 0.0]]), AugmentSpec(hflip=True))
    assert torch.equal(flipped, x.flip(-1))
    turned = apply_views(x, torch.tensor([[0.0, 0.0, 0.0, 0.0]]), AugmentSpec(rotation_degrees=15))
    assert torch.allclose(turned, x, atol=1e-5)  # a zero angle is the identity
