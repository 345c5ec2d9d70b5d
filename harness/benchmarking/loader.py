"""Loader benchmark: the harness's FFCV pipeline against torchvision DataLoaders, side by side.

    harness bench --suite loader [--quick]           # this module, results in benchmarks/results/
    python -m harness.benchmarking.loader            # 5,000 images, 5 repeats (a few minutes)
    python -m harness.benchmarking.loader --quick    # 1,000 images, 2 repeats
    python -m harness.benchmarking.loader --compile  # also: first-batch time of fresh processes

What it measures, in one process run:

1. Data: the first N embedded Fashion-MNIST training images written as an RGB JPEG ImageFolder
   (quality 90, 10 class folders) at 64 px and at 256 px, under --work-dir (a temporary folder
   by default, never the repository), and each folder converted to a .beton (`harness data
   convert`, jpg mode, quality 90: the same pixels re-encoded at the same quality).
2. Pipelines, with the same augmentation (random-resized crop to 56 / 224 px, scale 0.08-1,
   ratio 3/4-4/3, random flip), the same batch size and the same worker count (processes for
   torch, threads for ffcv):
   * `torchvision-pil`: ImageFolder + PIL decode + v2 transforms on PIL images + PILToTensor;
   * `torchvision-v2`: the torch backend's dataset: `torchvision.io.decode_image` + v2
     transforms on uint8 tensors;
   * `ffcv`: the ffcv backend's loader: random-resized-crop decoder, uint8 channels-last; it
     flips on the device (in `DeviceStage`), not in the loader;
   * `ffcv-cpuflip`: the same with ffcv's numba flip in the loader (the same CPU work as the
     torchvision pipelines do, for an apples-to-apples figure).
   Stage `uint8` times the loader up to its uint8 batch, the hand-over to the device. Stage
   `device` adds the harness's `DeviceStage` (flip where the loader did not, normalised
   floats): the same code for every pipeline; without a GPU it runs on the CPU, where it
   costs what a GPU would do in a fraction of a millisecond. The torchvision DataLoaders keep
   their workers between epochs (their best case).
3. Repeats run round-robin (every pipeline once, then again), so load on a shared machine hits
   all pipelines alike; each figure is the median over repeats of images per second over one
   epoch, after a warm-up epoch (which also absorbs ffcv's compile). Ratios are taken against
   `torchvision-v2` (the targets in docs: >= 8x at 64 px, >= 3x at 224 px) and against PIL.
4. Where the time goes: per-image timings of each torchvision step in this process
   (file read, decode, crop, flip), and ffcv with and without flip and device stage.

Results: a Parquet file (--out, default <work-dir>/bench_loader.parquet) and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from harness.config.recipe import DataConfig
from harness.data.convert import ConvertOptions, convert
from harness.data.datasets import load_fashion_mnist
from harness.data.pipeline import RRC_RATIO, DeviceStage, Plan
from harness.schema import from_dict

#: The folder holding the `harness` package: fresh processes import this same harness from it.
PACKAGE_ROOT = Path(__file__).resolve().parents[2]

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SETTINGS = ((64, 56), (256, 224))  # (stored px, crop px), as in docs/performance anchors


@dataclass
class Pipeline:
    name: str
    batches: Callable[[], Iterator[torch.Tensor]]  # one epoch of uint8 (N, C, H, W) batches
    stage: DeviceStage


# ------------------------------------------------------------------------------ data
def write_jpeg_folder(root: Path, size: int, count: int) -> Path:
    """RGB JPEGs (quality 90) of the first `count` Fashion-MNIST images, `size` px, one folder
    per class; reused if complete."""
    from PIL import Image

    done = root / ".complete"
    if done.exists() and done.read_text() == str(count):
        return root
    images, labels = load_fashion_mnist(None, "train")
    for i in range(count):
        grey = Image.fromarray(images[i, 0].numpy(), "L").resize((size, size), Image.BILINEAR)
        folder = root / f"class{int(labels[i])}"
        folder.mkdir(parents=True, exist_ok=True)
        grey.convert("RGB").save(folder / f"{i:05d}.jpg", quality=90)
    done.write_text(str(count))
    return root


def folder_bytes_per_image(root: Path) -> float:
    files = list(root.glob("*/*.jpg"))
    return sum(f.stat().st_size for f in files) / len(files)


def beton_bytes_per_image(beton: Path) -> float:
    """Mean stored image size in a .beton (its allocation table; pages are padded)."""
    from harness.data.ffcv_env import require_ffcv

    require_ffcv()
    from ffcv.reader import Reader

    reader = Reader(str(beton))
    return float(reader.alloc_table["size"].sum()) / int(reader.num_samples)


def make_beton(root: Path, out: Path, workers: int) -> Path:
    if not out.exists():
        convert(root, out, ConvertOptions(write_mode="jpg", jpeg_quality=90, workers=workers, progress=False))
    return out


# ------------------------------------------------------------------------------ pipelines
def crop_plan(crop: int) -> Plan:
    cfg = from_dict(
        DataConfig,
        {
            "dataset": "imagenet",
            "backend": "ffcv",
            "train_path": "-",
            "val_path": "-",
            "image_size": crop,
            "augment": {"random_resized_crop": True, "hflip": True},
        },
        "data",
    )
    return Plan.from_config(cfg)


def torch_loader(dataset, batch_size: int, workers: int) -> Callable[[], Iterator[torch.Tensor]]:
    from torch.utils.data import DataLoader

    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        drop_last=False,
    )

    def epoch() -> Iterator[torch.Tensor]:
        for batch in loader:
            yield batch[0]

    return epoch


def pil_pipeline(root: Path, crop: int, batch_size: int, workers: int) -> Callable:
    from torchvision import datasets
    from torchvision.transforms import v2

    transform = v2.Compose(
        [
            v2.RandomResizedCrop(crop, scale=(0.08, 1.0), ratio=RRC_RATIO, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.PILToTensor(),
        ]
    )
    return torch_loader(datasets.ImageFolder(str(root), transform=transform), batch_size, workers)


def v2_pipeline(root: Path, crop: int, batch_size: int, workers: int) -> Callable:
    from harness.data.datasets import list_image_folder
    from harness.data.torch_loader import FolderImages, train_transform

    plan = crop_plan(crop)
    dataset = FolderImages(list_image_folder(root), train_transform(plan, None, crop))
    return torch_loader(dataset, batch_size, workers)


def ffcv_pipeline(beton: Path, crop: int, batch_size: int, workers: int, cpu_flip: bool = False) -> Callable:
    """One epoch of the ffcv backend's uint8 batches (with ffcv's CPU flip if `cpu_flip`)."""
    from harness.data.ffcv_loader import FfcvLoader, image_pipeline, inspect_beton

    plan = crop_plan(crop)
    info = inspect_beton(beton, "beton")
    ops = image_pipeline(plan, True, None, cpu_flip=True)[0] if cpu_flip else None
    loader = FfcvLoader(
        info,
        plan=plan,
        train=True,
        batch_size=batch_size,
        indices=np.arange(info.samples),
        stage=DeviceStage(torch.device("cpu"), MEAN, STD, channels=3),
        seed=0,
        num_workers=workers,
        image_ops=ops,
    )
    epochs = iter(range(10**9))

    def epoch() -> Iterator[torch.Tensor]:
        loader.set_epoch(next(epochs))
        for images, _, _ in loader.host_batches():
            yield images

    return epoch


# ------------------------------------------------------------------------------ timing
def time_epoch(pipeline: Pipeline, device_stage: bool) -> float:
    """Images per second over one epoch (optionally through the device stage)."""
    n = 0
    start = time.perf_counter()
    for images in pipeline.batches():
        if device_stage:
            out = pipeline.stage.images(pipeline.stage.upload(images))
            n += out.shape[0]
        else:
            n += images.shape[0]
    return n / (time.perf_counter() - start)


def measure(pipelines: list[Pipeline], repeats: int) -> dict[tuple[str, str], list[float]]:
    results: dict[tuple[str, str], list[float]] = {}
    for p in pipelines:  # warm-up: workers start, ffcv compiles, the page cache fills
        time_epoch(p, device_stage=False)
    for r in range(repeats):
        for stage in ("uint8", "device"):
            for p in pipelines:
                results.setdefault((p.name, stage), []).append(time_epoch(p, stage == "device"))
        print(f"  repeat {r + 1}/{repeats} done", file=sys.stderr)
    return results


def step_profile(root: Path, crop: int, count: int) -> dict[str, float]:
    """Microseconds per image of each torchvision step, in this process (one thread)."""
    from PIL import Image
    from torchvision.io import ImageReadMode, decode_image, read_file
    from torchvision.transforms import v2

    files = sorted(root.glob("*/*.jpg"))[:count]
    rrc = v2.RandomResizedCrop(crop, scale=(0.08, 1.0), ratio=RRC_RATIO, antialias=True)
    flip = v2.RandomHorizontalFlip()
    steps = {"read_file": 0.0, "decode_jpeg": 0.0, "crop_resize": 0.0, "flip": 0.0, "pil_decode": 0.0}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for f in files:
            t0 = time.perf_counter()
            data = read_file(str(f))
            t1 = time.perf_counter()
            img = decode_image(data, mode=ImageReadMode.RGB)
            t2 = time.perf_counter()
            img = rrc(img)
            t3 = time.perf_counter()
            flip(img)
            t4 = time.perf_counter()
            with Image.open(f) as im:
                im.convert("RGB")
            t5 = time.perf_counter()
            for key, dt in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
                steps[key] += dt
    finally:
        torch.set_num_threads(threads)
    return {k: v / len(files) * 1e6 for k, v in steps.items()}


def first_batch_times(beton: Path, crop: int, workers: int, runs: int = 3) -> list[dict]:
    """Seconds to import and to the first batch in fresh processes (medians of `runs`): numba
    cache off (ffcv as shipped), cache empty (one run: it fills the cache), cache warm."""
    script = (
        "import time, sys; t0 = time.perf_counter()\n"
        "import numpy as np, torch\n"
        "from harness.benchmarking.loader import ffcv_pipeline\n"
        f"epoch = ffcv_pipeline(__import__('pathlib').Path({str(beton)!r}), {crop}, 128, {workers})\n"
        "t1 = time.perf_counter(); next(iter(epoch())); t2 = time.perf_counter()\n"
        "print(t1 - t0, t2 - t1)\n"
    )
    rows = []
    pythonpath = os.pathsep.join(p for p in (str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory() as cache:
        for label, env, n in (
            ("no numba cache", {"HARNESS_NUMBA_CACHE": "0"}, runs),
            ("cache, cold", {"NUMBA_CACHE_DIR": cache}, 1),
            ("cache, warm", {"NUMBA_CACHE_DIR": cache}, runs),
        ):
            times = []
            for _ in range(n):
                proc = subprocess.run(
                    [sys.executable, "-c", script],
                    env={**os.environ, "PYTHONPATH": pythonpath, **env},
                    capture_output=True,
                    text=True,
                    check=True,
                )
                times.append(tuple(map(float, proc.stdout.split()[-2:])))
            setup = statistics.median(t[0] for t in times)
            first = statistics.median(t[1] for t in times)
            rows.append({"case": label, "setup_s": setup, "first_batch_s": first, "runs": n})
    return rows


# ------------------------------------------------------------------------------ report
def versions() -> dict[str, str]:
    import torchvision

    try:
        from importlib.metadata import version

        ffcv_version = version("ffcv")
    except Exception:
        ffcv_version = "?"
    return {"torch": torch.__version__, "torchvision": torchvision.__version__, "ffcv": ffcv_version}


def markdown(rows: list[dict]) -> str:
    lines = [
        "| stored -> crop | stage | pipeline | img/s (median) | vs torchvision-v2 | vs PIL |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['stored_px']} -> {r['crop_px']} px | {r['stage']} | {r['pipeline']} | "
            f"{r['median_img_s']:,.0f} | {r['ratio_vs_v2']:.2f}x | {r['ratio_vs_pil']:.2f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 images, 2 repeats")
    parser.add_argument("--images", type=int, help="images per data set (default 5,000; quick 1,000)")
    parser.add_argument("--repeats", type=int, help="timed epochs per pipeline (default 5; quick 2)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader processes = ffcv threads")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--work-dir", type=Path, help="where images and .beton files go (default: temporary)")
    parser.add_argument("--out", type=Path, help="Parquet results (default: <work-dir>/bench_loader.parquet)")
    parser.add_argument("--compile", action="store_true", help="also time first batches in fresh processes")
    parser.add_argument("--sizes", default="64,256", help="stored sizes to run (64 and/or 256)")
    args = parser.parse_args(argv)
    count = args.images or (1000 if args.quick else 5000)
    repeats = args.repeats or (2 if args.quick else 5)
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="bench_loader-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    out = args.out or work_dir / "bench_loader.parquet"
    sizes = {int(s) for s in args.sizes.split(",")}
    meta = {
        "images": count,
        "repeats": repeats,
        "workers": args.workers,
        "batch_size": args.batch_size,
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "load_1min": os.getloadavg()[0],
        **versions(),
    }
    print(f"bench_loader: {json.dumps(meta)} in {work_dir}", file=sys.stderr)
    rows: list[dict] = []
    notes: list[str] = []
    for stored, crop in SETTINGS:
        if stored not in sizes:
            continue
        root = write_jpeg_folder(work_dir / f"jpeg{stored}_{count}", stored, count)
        beton = make_beton(root, work_dir / f"jpeg{stored}_{count}.beton", args.workers)
        b, w = args.batch_size, args.workers
        stage = DeviceStage(torch.device("cpu"), MEAN, STD, channels=3)
        flip_stage = DeviceStage(torch.device("cpu"), MEAN, STD, channels=3, hflip=True)
        pipelines = [
            Pipeline("torchvision-pil", pil_pipeline(root, crop, b, w), stage),
            Pipeline("torchvision-v2", v2_pipeline(root, crop, b, w), stage),
            Pipeline("ffcv", ffcv_pipeline(beton, crop, b, w), flip_stage),
            Pipeline("ffcv-cpuflip", ffcv_pipeline(beton, crop, b, w, cpu_flip=True), stage),
        ]
        print(f"{stored} -> {crop} px: {len(pipelines)} pipelines x {repeats} repeats", file=sys.stderr)
        timings = measure(pipelines, repeats)
        sizes_info = {
            "jpeg_bytes_per_image": folder_bytes_per_image(root),
            "beton_bytes_per_image": beton_bytes_per_image(beton),
        }
        for stage_name in ("uint8", "device"):
            v2_med = statistics.median(timings[("torchvision-v2", stage_name)])
            pil_med = statistics.median(timings[("torchvision-pil", stage_name)])
            for p in pipelines:
                values = timings[(p.name, stage_name)]
                med = statistics.median(values)
                rows.append(
                    {
                        "benchmark": "loader",
                        "stored_px": stored,
                        "crop_px": crop,
                        "stage": stage_name,
                        "pipeline": p.name,
                        "median_img_s": med,
                        "min_img_s": min(values),
                        "max_img_s": max(values),
                        "ratio_vs_v2": med / v2_med,
                        "ratio_vs_pil": med / pil_med,
                        **sizes_info,
                        **meta,
                    }
                )
        profile = step_profile(root, crop, min(300, count))
        total = sum(v for k, v in profile.items() if k != "pil_decode")
        notes.append(
            f"{stored} -> {crop} px, torchvision per image (1 thread): "
            + ", ".join(f"{k} {v:.0f} us" for k, v in profile.items())
            + f"; decode is {profile['decode_jpeg'] / total:.0%} of read+decode+crop+flip"
        )
        crop_only = statistics.median(timings[("ffcv", "uint8")])
        cpu_flip = statistics.median(timings[("ffcv-cpuflip", "uint8")])
        device = statistics.median(timings[("ffcv", "device")])
        notes.append(
            f"{stored} -> {crop} px, ffcv: decode+crop {crop_only:,.0f} img/s, with ffcv's CPU flip "
            f"{cpu_flip:,.0f} (the flip costs {1 - cpu_flip / crop_only:.0%}), with flip and "
            f"normalisation on this CPU {device:,.0f} ({1 - device / crop_only:.0%} less); JPEG files "
            f"{sizes_info['jpeg_bytes_per_image']:,.0f} B/img, in the .beton "
            f"{sizes_info['beton_bytes_per_image']:,.0f} B/img"
        )
        if args.compile:
            for r in first_batch_times(beton, crop, args.workers):
                notes.append(
                    f"{stored} -> {crop} px, fresh process, {r['case']} (median of {r['runs']}): "
                    f"imports + loader {r['setup_s']:.1f} s, first batch {r['first_batch_s']:.1f} s"
                )
                rows.append(
                    {
                        "benchmark": "first_batch",
                        "stored_px": stored,
                        "crop_px": crop,
                        "stage": r["case"],
                        "pipeline": "ffcv",
                        "median_img_s": float("nan"),
                        "min_img_s": r["setup_s"],
                        "max_img_s": r["first_batch_s"],
                        "ratio_vs_v2": float("nan"),
                        "ratio_vs_pil": float("nan"),
                        **sizes_info,
                        **meta,
                    }
                )
    pq.write_table(pa.Table.from_pylist(rows), out)
    print(markdown([r for r in rows if r["benchmark"] == "loader"]))
    print()
    for note in notes:
        print(f"- {note}")
    print(f"\n{len(rows)} rows -> {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
