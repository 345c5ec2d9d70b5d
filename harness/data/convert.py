"""Convert a data set once to an FFCV `.beton` file: `harness data convert SOURCE OUT.beton`.

Sources (the format is detected from SOURCE unless `--format` names it):

* `imagefolder`: an ImageFolder tree, the ImageNet layout `SOURCE/<class>/<image>`; labels are
  the sorted class folders' positions (as torchvision's ImageFolder numbers them). A folder
  holding `train/` and `val/` splits takes `--split`.
* `cifar`: the CIFAR-10 (`cifar-10-batches-py`) or CIFAR-100 (`cifar-100-python`) python batches.
* `fashion-mnist`: a folder of Fashion-MNIST IDX files (the embedded copy is
  /usr/share/datasets/fashion-mnist); grey images are written as RGB with three equal channels.

Every sample becomes two fields, `image` (ffcv `RGBImageField`) and `label` (`IntField`), in the
source's order. Options follow ffcv-imagenet's writer: the longest side is capped at
`--max-resolution`; `--write-mode` stores pixels `raw`, as `jpg` (at `--jpeg-quality`), or JPEG
for a random `--compress-probability` share (`proportion`).

Safety: an existing OUT is kept unless `--force`; the file is written under a hidden temporary
name in OUT's folder and renamed to OUT only once complete, so an error, a dead worker, Ctrl-C
or SIGTERM never leaves a half-written file under the final name (nor an earlier OUT damaged).
A worker that fails reports the sample that failed, and the conversion stops at once (ffcv's own
writer waits forever for a worker that died).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.data.datasets import (
    ImageFolderIndex,
    class_folders,
    list_image_folder,
    load_cifar,
    load_fashion_mnist,
)
from harness.errors import DataError

FORMATS = ("imagefolder", "cifar", "fashion-mnist")
WRITE_MODES = ("raw", "jpg", "proportion")
SPLITS = ("train", "val", "test")
MIN_PAGE_SIZE = 1 << 21  # ffcv's smallest page (2 MiB)
DEFAULT_PAGE_SIZE = 1 << 23  # ffcv's default (8 MiB)
_SPLIT_FOLDERS = {"train", "val", "test"}


@dataclass(frozen=True)
class ConvertOptions:
    """How to write the .beton (see the module docstring); None means "choose for the source"."""

    format: str | None = None
    split: str | None = None
    max_resolution: int | None = None
    jpeg_quality: int = 90
    write_mode: str | None = None  # raw for cifar / fashion-mnist, jpg for image folders
    compress_probability: float = 0.5
    workers: int | None = None  # worker processes (default: one per CPU core)
    page_size: int | None = None  # bytes, a power of two >= 2 MiB (default 8 MiB, more if needed)
    force: bool = False
    progress: bool | None = None  # None: a progress bar on a terminal only
    chunk_size: int = 100  # samples per work item


@dataclass(frozen=True)
class ConvertResult:
    path: Path
    format: str
    samples: int
    classes: int
    bytes: int
    seconds: float

    def summary(self) -> str:
        return (
            f"wrote {self.path}: {self.samples} images, {self.classes} classes ({self.format}), "
            f"{self.bytes / 2**20:.1f} MiB in {self.seconds:.1f} s"
        )


# ------------------------------------------------------------------------------ sources
class Source:
    """An indexable data set of (HWC RGB uint8 image, int label) for ffcv's writer.

    `__getitem__` checks what ffcv would otherwise fail on deep inside a worker, and reports any
    error on `errors` (set by the writer) so the conversion stops at the first bad sample.
    """

    errors: Any = None
    raw_limit: int | None = None  # bytes a raw image may take (one ffcv page)
    max_resolution: int | None = None

    def __len__(self) -> int:
        raise NotImplementedError

    def sample(self, i: int) -> tuple[np.ndarray, int]:
        raise NotImplementedError

    def name_of(self, i: int) -> str:
        return f"sample {i}"

    def num_classes(self) -> int:
        raise NotImplementedError

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        try:
            image, label = self.sample(int(i))
            self._check(int(i), image)
            return image, label
        except Exception as exc:
            if self.errors is not None:
                self.errors.put(str(exc) if isinstance(exc, DataError) else f"{type(exc).__name__}: {exc}")
            raise

    def _check(self, i: int, image: np.ndarray) -> None:
        if self.raw_limit is None:
            return
        h, w = stored_size(image.shape[0], image.shape[1], self.max_resolution)
        if h * w * 3 > self.raw_limit:
            raise DataError(
                f"{self.name_of(i)}: a {h}x{w} image takes {h * w * 3} bytes raw, more than a page "
                f"({self.raw_limit}); pass --max-resolution or a larger --page-size"
            )


def stored_size(h: int, w: int, max_resolution: int | None) -> tuple[int, int]:
    """(h, w) after ffcv's writer caps the longest side at `max_resolution` (it truncates)."""
    if max_resolution is None or max(h, w) <= max_resolution:
        return h, w
    ratio = max_resolution / max(h, w)
    return int(ratio * h), int(ratio * w)


class ArraySource(Source):
    """Images already in memory: uint8 (N, C, H, W) with C = 1 (written as RGB) or 3."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, origin: str) -> None:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise DataError(f"{origin}: expected images shaped (N, 1 or 3, H, W), got {images.shape}")
        self.images = images
        self.labels = labels
        self.origin = origin

    def __len__(self) -> int:
        return len(self.labels)

    def sample(self, i: int) -> tuple[np.ndarray, int]:
        image = self.images[i].transpose(1, 2, 0)
        if image.shape[2] == 1:
            image = np.repeat(image, 3, axis=2)
        return np.ascontiguousarray(image), int(self.labels[i])

    def name_of(self, i: int) -> str:
        return f"{self.origin}: image {i}"

    def num_classes(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) else 0


class FolderSource(Source):
    """Image files of an ImageFolder tree, decoded with PIL (JPEGs at reduced scale if capped)."""

    def __init__(self, index: ImageFolderIndex) -> None:
        self.index = index

    def __len__(self) -> int:
        return len(self.index.files)

    def sample(self, i: int) -> tuple[np.ndarray, int]:
        from PIL import Image

        path = self.index.files[i]
        try:
            with Image.open(path) as im:
                if self.max_resolution is not None and im.format == "JPEG":
                    # Let libjpeg decode at the smallest 1/2^k scale still >= the final size.
                    scale = self.max_resolution / max(im.size)
                    if scale < 1:
                        im.draft("RGB", (int(im.size[0] * scale) + 1, int(im.size[1] * scale) + 1))
                image = np.asarray(im.convert("RGB"))
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise DataError(f"{path}: cannot read image ({exc})") from None
        return image, int(self.index.labels[i])

    def name_of(self, i: int) -> str:
        return str(self.index.files[i])

    def num_classes(self) -> int:
        return len(self.index.classes)


# ------------------------------------------------------------------------------ detection
def _cifar_classes(source: Path) -> int | None:
    """10 or 100 if `source` holds CIFAR python batches, else None."""
    if (source / "data_batch_1").is_file() or (source / "test_batch").is_file():
        return 10
    if (source / "meta").is_file() and ((source / "train").is_file() or (source / "test").is_file()):
        return 100
    return None


def _is_idx_folder(source: Path) -> bool:
    return any(
        p.name.startswith(("train-images-idx3-ubyte", "t10k-images-idx3-ubyte")) for p in source.iterdir()
    )


def detect_format(source: Path) -> str:
    """The format of SOURCE: 'cifar', 'fashion-mnist' or 'imagefolder'."""
    if not source.exists():
        raise DataError(f"{source}: not found")
    if not source.is_dir():
        raise DataError(
            f"{source}: expected a folder (an ImageFolder tree, CIFAR python batches or "
            "Fashion-MNIST IDX files)"
        )
    if _cifar_classes(source) is not None:
        return "cifar"
    if _is_idx_folder(source):
        return "fashion-mnist"
    if class_folders(source):
        return "imagefolder"
    raise DataError(
        f"{source}: cannot tell its format (no CIFAR batches, no Fashion-MNIST IDX files, no class "
        "folders); pass --format"
    )


def _image_folder_root(source: Path, split: str | None) -> Path:
    if split is not None:
        root = source / split
        if not root.is_dir():
            raise DataError(f"{root}: split folder not found (--split {split})")
        return root
    classes = class_folders(source) if source.is_dir() else []
    if classes and set(classes) <= _SPLIT_FOLDERS and all(class_folders(source / c) for c in classes):
        raise DataError(
            f"{source}: holds the splits {', '.join(classes)}; pass --split {classes[-1]} "
            "(one .beton per split)"
        )
    return source


def open_source(source: Path, fmt: str, split: str | None) -> Source:
    """The samples of `split` of `source` read as format `fmt`."""
    if fmt == "imagefolder":
        return FolderSource(list_image_folder(_image_folder_root(source, split)))
    if split is None:
        raise DataError(f"--split: required for {fmt} sources (train or test)")
    which = "train" if split == "train" else "test"
    if not source.is_dir():
        raise DataError(f"{source}: not a folder")
    if fmt == "cifar":
        classes = _cifar_classes(source)
        if classes is None:
            raise DataError(
                f"{source}: no CIFAR python batches (data_batch_1 / test_batch, or train / test / meta)"
            )
        images, labels = load_cifar(str(source), which, classes)
    elif fmt == "fashion-mnist":
        images, labels = load_fashion_mnist(str(source), which)
    else:
        raise DataError(f"--format: unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    return ArraySource(images.numpy(), labels.numpy(), f"{source} ({which})")


# ------------------------------------------------------------------------------ options
def _next_power_of_two(n: int) -> int:
    return 1 << max(int(n) - 1, 1).bit_length()


def resolve_page_size(options: ConvertOptions, write_mode: str) -> int:
    """The page size: as given (checked), else 8 MiB or enough for one capped raw image."""
    if options.page_size is not None:
        p = options.page_size
        if p < MIN_PAGE_SIZE or p & (p - 1) or p >= 1 << 32:
            raise DataError(f"--page-size: must be a power of two from 2 MiB to 2 GiB, got {p / 2**20:g} MiB")
        return p
    if write_mode != "jpg" and options.max_resolution is not None:
        return max(DEFAULT_PAGE_SIZE, _next_power_of_two(options.max_resolution**2 * 3))
    return DEFAULT_PAGE_SIZE


def _check_options(options: ConvertOptions) -> None:
    if options.format is not None and options.format not in FORMATS:
        raise DataError(f"--format: must be one of {', '.join(FORMATS)}, got {options.format!r}")
    if options.split is not None and options.split not in SPLITS:
        raise DataError(f"--split: must be one of {', '.join(SPLITS)}, got {options.split!r}")
    if options.write_mode is not None and options.write_mode not in WRITE_MODES:
        raise DataError(f"--write-mode: must be one of {', '.join(WRITE_MODES)}, got {options.write_mode!r}")
    if options.max_resolution is not None and options.max_resolution < 1:
        raise DataError(f"--max-resolution: must be >= 1, got {options.max_resolution}")
    if not 1 <= options.jpeg_quality <= 100:
        raise DataError(f"--jpeg-quality: must be in [1, 100], got {options.jpeg_quality}")
    if not 0 <= options.compress_probability <= 1:
        raise DataError(f"--compress-probability: must be in [0, 1], got {options.compress_probability}")
    if options.workers is not None and options.workers < 1:
        raise DataError(f"--workers: must be >= 1, got {options.workers}")


def temporary_path(out: Path) -> Path:
    """The hidden name OUT is written under until it is complete (same folder: rename is atomic)."""
    return out.with_name(f".{out.name}.tmp-{os.getpid()}")


# ------------------------------------------------------------------------------ writing
def _worker(job: Any, args: tuple, errors: Any) -> None:
    """A writer process: ffcv's job for indexed data sets, with its failure reported."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        job(*args)
    except Exception as exc:
        errors.put(str(exc) if isinstance(exc, DataError) else f"{type(exc).__name__}: {exc}")
        raise SystemExit(1) from None


def _make_writer(path: Path, fields: dict[str, Any], page_size: int, workers: int) -> Any:
    from ffcv.writer import DatasetWriter

    class GuardedWriter(DatasetWriter):
        """ffcv's writer, driven by a loop that notices failed or dead workers."""

        def write(self, source: Source, chunk_size: int, progress: bool | None, label: str) -> None:
            from ffcv.memory_allocator import MemoryAllocator
            from ffcv.writer import worker_job_indexed_dataset
            from tqdm import tqdm

            ctx = multiprocessing.get_context("fork")  # the source is inherited, not pickled
            self.num_samples = len(source)
            self.prepare()  # header, field descriptors, shared metadata (ffcv)
            work, allocations, errors = ctx.Queue(), ctx.Queue(), ctx.Queue()
            source.errors = errors
            done = ctx.Value(ctypes.c_uint64, 0)
            order = list(enumerate(range(len(source))))
            for start in range(0, len(order), chunk_size):
                work.put(order[start : start + chunk_size])
            for _ in range(self.num_workers):
                work.put(None)
            allocator = MemoryAllocator(str(self.fname), self.data_region_start, self.page_size)
            shared = (self.metadata_sm, self.metadata_type, self.fields, allocator, done, allocations)
            args = (work, *shared, source)
            procs = [
                ctx.Process(target=_worker, args=(worker_job_indexed_dataset, args, errors), daemon=True)
                for _ in range(self.num_workers)
            ]
            try:
                for p in procs:
                    p.start()
                quiet = not _stderr_is_terminal() if progress is None else not progress
                with tqdm(total=self.num_samples, desc=label, unit="img", disable=quiet) as bar:
                    _wait_for_samples(self.num_samples, done, procs, errors, bar)
                table: list = []
                for _ in procs:
                    table.extend(_get(allocations, procs, errors))
                for p in procs:
                    p.join()
                self.finalize(table)  # metadata, allocation table, header (ffcv)
            finally:
                for p in procs:
                    if p.is_alive():
                        p.terminate()
                    p.join(timeout=5)
                self.metadata_sm.close()
                self.metadata_sm.unlink()

    return GuardedWriter(str(path), fields, page_size=page_size, num_workers=workers)


def _stderr_is_terminal() -> bool:
    import sys

    return sys.stderr.isatty()


def _raise_reported(errors: Any) -> None:
    with contextlib.suppress(queue.Empty):
        raise DataError(errors.get_nowait())


def _check_workers(procs: list) -> None:
    dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
    if dead:
        raise DataError(f"a conversion worker died (exit code {dead[0]})")


def _wait_for_samples(total: int, done: Any, procs: list, errors: Any, bar: Any) -> None:
    shown = 0
    while True:
        _raise_reported(errors)
        n = int(done.value)
        bar.update(n - shown)
        shown = n
        if n >= total:
            return
        _check_workers(procs)
        if all(p.exitcode == 0 for p in procs) and int(done.value) < total:
            raise DataError(f"the conversion workers stopped after {int(done.value)} of {total} samples")
        time.sleep(0.05)


def _get(allocations: Any, procs: list, errors: Any) -> list:
    """One worker's allocation table (each worker sends one as it finishes)."""
    while True:
        with contextlib.suppress(queue.Empty):
            return allocations.get(timeout=0.2)
        _raise_reported(errors)
        _check_workers(procs)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM raises KeyboardInterrupt, so cleanup runs as for Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _check_out(out: Path, force: bool) -> None:
    if out.is_dir():
        raise DataError(f"{out}: is a folder; give the .beton file to write")
    if not out.parent.is_dir():
        raise DataError(f"{out.parent}: output folder not found")
    if out.exists() and not force:
        raise DataError(f"{out}: exists; pass --force to overwrite it")


def convert(source: str | Path, out: str | Path, options: ConvertOptions | None = None) -> ConvertResult:
    """Write the samples of `source` to the .beton `out` (atomically); see the module docstring."""
    options = options or ConvertOptions()
    source, out = Path(source), Path(out)
    _check_options(options)
    _check_out(out, options.force)
    fmt = options.format or detect_format(source)
    src = open_source(source, fmt, options.split)
    if len(src) == 0:
        raise DataError(f"{source}: no samples to convert")
    return write_beton(src, out, options, fmt)


def write_beton(src: Source, out: Path, options: ConvertOptions, fmt: str) -> ConvertResult:
    """Write `src` to `out` under a temporary name, renamed to `out` once complete."""
    from harness.data.ffcv_env import require_ffcv

    _check_options(options)
    _check_out(out, options.force)
    write_mode = options.write_mode or ("jpg" if fmt == "imagefolder" else "raw")
    page_size = resolve_page_size(options, write_mode)
    src.max_resolution = options.max_resolution
    src.raw_limit = page_size if write_mode != "jpg" else None

    require_ffcv()
    from ffcv.fields import IntField, RGBImageField

    fields = {
        "image": RGBImageField(
            write_mode=write_mode,
            max_resolution=options.max_resolution,
            jpeg_quality=options.jpeg_quality,
            compress_probability=options.compress_probability,
        ),
        "label": IntField(),
    }
    workers = options.workers or os.cpu_count() or 1
    workers = max(1, min(workers, len(src)))
    tmp = temporary_path(out)
    start = time.perf_counter()
    try:
        with _sigterm_as_interrupt():
            writer = _make_writer(tmp, fields, page_size, workers)
            writer.write(src, options.chunk_size, options.progress, out.name)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return ConvertResult(
        path=out,
        format=fmt,
        samples=len(src),
        classes=src.num_classes(),
        bytes=out.stat().st_size,
        seconds=time.perf_counter() - start,
    )
