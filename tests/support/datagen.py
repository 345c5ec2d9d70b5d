"""Small generated data sets in their real on-disk formats, and an independent .beton reader.

Each writer produces what a user brings (ImageFolder trees, CIFAR python batches, Fashion-MNIST
IDX files) so the tests run the real readers on them; `read_beton` reads a .beton's records
straight from the file (ffcv's header and metadata, then the bytes), not through a loader.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def smooth_images(rng: np.random.Generator, n: int, h: int, w: int, channels: int = 3) -> np.ndarray:
    """uint8 (n, h, w, channels): blurred random blobs plus noise (compresses like photos)."""
    coarse = rng.random((n, max(h // 8, 2), max(w // 8, 2), channels))
    rows = np.linspace(0, coarse.shape[1] - 1, h).round().astype(int)
    cols = np.linspace(0, coarse.shape[2] - 1, w).round().astype(int)
    base = coarse[:, rows][:, :, cols]
    noisy = base * 200 + rng.normal(0, 12, base.shape) + 20
    return noisy.clip(0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------ IDX / CIFAR
def write_idx(path: Path, array: np.ndarray) -> None:
    """An unsigned-byte IDX file, gzipped (the Fashion-MNIST distribution format)."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_fashion_idx(
    folder: Path, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]
) -> Path:
    """Fashion-MNIST-style IDX files from (images (N, 28, 28), labels (N,)) pairs."""
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, (images, labels) in (("train", train), ("t10k", test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels.astype(np.uint8))
    return folder


def fashion_subset(folder: Path, n_train: int, n_test: int) -> Path:
    """The first n_train / n_test real Fashion-MNIST images, as an IDX folder of their own."""
    from harness.data.datasets import load_fashion_mnist

    parts = []
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = load_fashion_mnist(str(FASHION_MNIST), split)
        parts.append((images[:n, 0].numpy(), labels[:n].numpy()))
    return write_fashion_idx(folder, parts[0], parts[1])


def write_cifar10(folder: Path, per_batch: int, n_test: int, seed: int = 0) -> dict[str, np.ndarray]:
    """CIFAR-10 python batches (data_batch_1..5, test_batch) of random images; returns what was
    written as {'train_images' (N, 3, 32, 32), 'train_labels', 'test_images', 'test_labels'}."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, list] = {"train_images": [], "train_labels": [], "test_images": [], "test_labels": []}
    names = [(f"data_batch_{i}", "train", per_batch) for i in range(1, 6)] + [("test_batch", "test", n_test)]
    for name, split, n in names:
        images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, n)
        with open(folder / name, "wb") as fh:
            pickle.dump({b"data": images.reshape(n, -1), b"labels": labels.tolist()}, fh)
        out[f"{split}_images"].append(images)
        out[f"{split}_labels"].append(labels)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, fh)
    return {k: np.concatenate(v) for k, v in out.items()}


def write_cifar100(folder: Path, n_train: int, n_test: int, seed: int = 0) -> dict[str, np.ndarray]:
    """CIFAR-100 python files (train, test, meta) of random images with fine and coarse labels."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        fine = rng.integers(0, 100, n)
        batch = {
            b"data": images.reshape(n, -1),
            b"fine_labels": fine.tolist(),
            b"coarse_labels": (fine // 5).tolist(),
        }
        with open(folder / split, "wb") as fh:
            pickle.dump(batch, fh)
        out[f"{split}_images"], out[f"{split}_labels"] = images, fine
    with open(folder / "meta", "wb") as fh:
        pickle.dump({b"fine_label_names": [f"c{i}".encode() for i in range(100)]}, fh)
    return out


# ------------------------------------------------------------------------------ image folders
def write_image_folder(
    root: Path,
    classes: list[str],
    per_class: int,
    sizes: list[tuple[int, int]],
    ext: str = ".png",
    seed: int = 0,
    grey_every: int = 0,
) -> list[tuple[Path, np.ndarray, int]]:
    """ROOT/<class>/<i><ext> images of the given (h, w) sizes (cycled); returns (path, RGB pixels
    as a reader should see them, label) in the sorted order an ImageFolder reader lists them.
    Every `grey_every`-th image is saved as a grey ('L') image (readers must give RGB)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    written = []
    k = 0
    for label, name in enumerate(sorted(classes)):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            h, w = sizes[k % len(sizes)]
            pixels = smooth_images(rng, 1, h, w)[0]
            path = root / name / f"img{i:03d}{ext}"
            if grey_every and k % grey_every == 0:
                grey = pixels[..., 0]
                Image.fromarray(grey, "L").save(path)
                pixels = np.repeat(grey[..., None], 3, axis=2)
            else:
                Image.fromarray(pixels, "RGB").save(path, **({"quality": 95} if ext == ".jpg" else {}))
            if ext == ".jpg":
                pixels = np.asarray(Image.open(path).convert("RGB"))
            written.append((path, pixels, label))
            k += 1
    return written


# ------------------------------------------------------------------------------ .beton files
def read_beton(path: Path) -> list[tuple[np.ndarray, int]]:
    """Every record of a .beton as (HWC RGB uint8 pixels, label), read from the file's bytes."""
    import cv2

    from harness.data.ffcv_env import require_ffcv

    require_ffcv()
    from ffcv.reader import Reader

    reader = Reader(str(path))
    names = list(reader.handlers)
    image = reader.metadata[f"f{names.index('image')}"]
    labels = reader.metadata[f"f{names.index('label')}"]
    size_at = {
        int(p): int(s) for p, s in zip(reader.alloc_table["ptr"], reader.alloc_table["size"], strict=True)
    }
    data = np.memmap(path, dtype=np.uint8, mode="r")
    records = []
    for i in range(int(reader.num_samples)):
        ptr, h, w = int(image["data_ptr"][i]), int(image["height"][i]), int(image["width"][i])
        raw = np.array(data[ptr : ptr + size_at[ptr]])
        if int(image["mode"][i]) == 1:  # raw pixels
            pixels = raw.reshape(h, w, 3)
        else:  # JPEG
            pixels = cv2.imdecode(raw, cv2.IMREAD_COLOR)[..., ::-1]
        records.append((pixels, int(labels[i])))
    return records
