"""KD through ffcv at the cost of CE: ffcv KD cached / ffcv CE per training step, and the cache's cost.

On a generated ImageNet-style set (JPEG ImageFolder of varied sizes, converted with
`harness data convert`'s own code), every case trains the same student from the same ffcv
loader (seeded random-resized crop + flip, `harness.data.ffcv_views`), so loading costs the same
and the ratios isolate the teacher:

* `ffcv_ce`: cross-entropy;
* `ffcv_kd_live`: KD with a live teacher forward per step;
* `ffcv_kd_cached`: the same KD reading soft targets from the per-view teacher cache.

The cache's build cost is counted in teacher-forward images: it must be one forward per view
(samples x epochs), and a second student (another seed) reading the same cache adds none.
Besides: the cache's bytes per sample per epoch and its read time per sample, measured, from
which docs/data.md states the size and read rate of an ImageNet-1k epoch.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.benchmarking.steps import step_caller
from harness.benchmarking.timing import interleaved
from harness.config import from_mapping
from harness.models.build import build_model
from harness.teachers import cache as teacher_cache
from harness.training.loop import RunOptions, Trainer

KD = {"name": "kd", "params": {"alpha": 0.9, "temperature": 4.0}}


@dataclass
class FfcvKdConfig:
    """What the ffcv KD benchmark trains on."""

    arch: str = "resnet18"
    teacher_arch: str = "resnet34"
    images: int = 512
    classes: int = 10
    image_size: int = 64  # training crop
    stored: tuple[int, int] = (80, 112)  # stored image sides (varied)
    batch_size: int = 64
    rounds: int = 5
    steps: int = 4
    workers: int = 0  # ffcv threads (0: one per core)
    device: str = "cpu"


class CountingTrainer(Trainer):
    """A Trainer that counts the images its teacher forwards (the cache build calls this)."""

    forwarded = 0

    def teacher_forward(self, images: torch.Tensor) -> torch.Tensor:
        CountingTrainer.forwarded += int(images.shape[0])
        return super().teacher_forward(images)


def write_folder(root: Path, cfg: FfcvKdConfig) -> Path:
    """A JPEG ImageFolder of smooth random images of varied sizes, `cfg.classes` classes."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(cfg.images):
        h, w = (cfg.stored[0], cfg.stored[1]) if i % 2 else (cfg.stored[1], cfg.stored[0])
        coarse = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
        image = Image.fromarray(coarse, "RGB").resize((w, h), Image.BILINEAR)
        folder = root / "train" / f"c{i % cfg.classes:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{i:05d}.jpg", quality=90)
    return root


def make_betons(base: Path, cfg: FfcvKdConfig, workers: int = 1) -> Path:
    from dataclasses import replace

    from harness.data.convert import ConvertOptions, convert

    write_folder(base / "src", cfg)
    options = ConvertOptions(
        write_mode="jpg", jpeg_quality=90, workers=workers, progress=False, page_size=1 << 21
    )
    convert(base / "src", base / "train.beton", replace(options, split="train"))
    return base / "train.beton"


def recipe(cfg: FfcvKdConfig, beton: Path, strategy: dict, teacher: dict | None, epochs: int) -> dict:
    out: dict[str, Any] = {
        "seed": 0,
        "model": {"arch": cfg.arch},
        "data": {
            "dataset": "imagenet",
            "backend": "ffcv",
            "train_path": str(beton),
            "val_path": str(beton),
            "val_subset": cfg.batch_size,
            "num_classes": cfg.classes,
            "image_size": cfg.image_size,
            "batch_size": cfg.batch_size,
            "eval_batch_size": cfg.batch_size,
            "drop_last": True,
            "num_workers": cfg.workers,
            "view_seed": 0,
            "augment": {"random_resized_crop": True, "hflip": True},
        },
        "strategy": strategy,
        "optim": {"name": "sgd", "lr": 0.01},
        "schedule": {"epochs": epochs, "name": "cosine"},
        "runtime": {"device": cfg.device},
    }
    if teacher is not None:
        out["teacher"] = teacher
    return out


def case(spec: dict, runs_dir: Path) -> tuple[Callable[[], None], Trainer]:
    trainer = CountingTrainer(from_mapping(spec, "bench_ffcv"), runs_dir, RunOptions(progress=False))
    trainer.build()
    return step_caller(trainer), trainer


def run(cfg: FfcvKdConfig) -> list[dict[str, Any]]:
    """Measure the cases; rows with median step time, ratios, and the cache's build and read cost."""
    torch.manual_seed(0)
    steps_per_epoch = cfg.images // cfg.batch_size
    epochs = 2 + ((cfg.rounds + 1) * cfg.steps) // steps_per_epoch  # views cached for every step
    with tempfile.TemporaryDirectory(prefix="harness-bench-ffcv-") as tmp:
        base = Path(tmp)
        beton = make_betons(base, cfg, workers=cfg.workers or os.cpu_count() or 1)
        weights = base / "teacher.pt"
        torch.save(build_model(cfg.teacher_arch, cfg.classes, 3).state_dict(), weights)
        teacher = {"arch": cfg.teacher_arch, "weights": str(weights)}
        runs = base / "runs"
        trainers = []
        cases: dict[str, Callable[[], None]] = {}
        ce, t = case(recipe(cfg, beton, {"name": "ce"}, None, epochs), runs)
        cases["ffcv_ce"] = ce
        trainers.append(t)
        live, t = case(recipe(cfg, beton, KD, teacher, epochs), runs)
        cases["ffcv_kd_live"] = live
        trainers.append(t)
        CountingTrainer.forwarded = 0
        start = time.perf_counter()
        cached, t = case(recipe(cfg, beton, KD, {**teacher, "cache": True}, epochs), runs)
        build_s = time.perf_counter() - start
        built = CountingTrainer.forwarded
        cases["ffcv_kd_cached"] = cached
        trainers.append(t)
        CountingTrainer.forwarded = 0
        second = recipe(cfg, beton, KD, {**teacher, "cache": True}, epochs)
        second["seed"] = 1
        _, t = case(second, runs)
        shared = CountingTrainer.forwarded
        trainers.append(t)
        timings = interleaved(
            cases, rounds=cfg.rounds, work=cfg.steps, warmup=1, device=torch.device(cfg.device)
        )
        (folder,) = (runs / "teacher-cache").iterdir()
        per_sample = cache_figures(folder, cfg.classes)
        for trainer in trainers:
            trainer.data.close()
    views = cfg.images * epochs
    rows = []
    ce_median = timings["ffcv_ce"].median
    for name, timing in timings.items():
        rows.append(
            {
                "suite": "ffcv_kd",
                "case": name,
                "median_s": timing.median,
                "img_per_s": cfg.batch_size / timing.median,
                "ratio": timing.median / ce_median,
                "baseline": "ffcv_ce",
                "spread": timing.spread,
                "detail": f"{cfg.arch} b{cfg.batch_size} RRC {cfg.image_size}px from {cfg.stored} JPEG"
                + (f", teacher {cfg.teacher_arch}" if "kd" in name else ""),
            }
        )
    rows.append(
        {
            "suite": "ffcv_kd",
            "case": "cache_build",
            "median_s": build_s,
            "img_per_s": built / build_s if build_s > 0 else float("nan"),
            "ratio": built / views,
            "baseline": "views",
            "spread": float("nan"),
            "detail": f"{built} teacher forwards for {views} views ({cfg.images} x {epochs} epochs); "
            f"a second seed reading it: {shared}",
        }
    )
    rows.append(
        {
            "suite": "ffcv_kd",
            "case": "cache_per_sample",
            "median_s": per_sample["read_s_per_sample"],
            "img_per_s": 1.0 / per_sample["read_s_per_sample"],
            "ratio": float("nan"),
            "baseline": "",
            "spread": float("nan"),
            "detail": f"{per_sample['bytes_per_sample']:.1f} B per sample per epoch at K = {cfg.classes} "
            f"full logits (views {per_sample['view_bytes']} B + logits {4 * cfg.classes} B)",
            **per_sample,
        }
    )
    return rows


def cache_figures(folder: Path, num_classes: int) -> dict[str, float]:
    """Bytes per sample per epoch of a cache's Arrow files, and the time to read one epoch back."""
    files = sorted(folder.glob("epoch_*.arrow"))
    samples = 0
    total = 0
    start = time.perf_counter()
    for path in files:
        views, _ = teacher_cache.read_epoch(path, num_classes)
        samples += views.shape[0]
        total += path.stat().st_size
    read_s = time.perf_counter() - start
    return {
        "bytes_per_sample": total / samples,
        "read_s_per_sample": read_s / samples,
        "view_bytes": 4 * int(views.shape[1]),
    }


IMAGENET_TRAIN = 1_281_167  # ImageNet-1k training images


def cache_scale(samples: int = 20_000, num_classes: int = 1000, topks: tuple = (None, 100, 10)) -> list[dict]:
    """Per-sample size and read time of one cache epoch at K = `num_classes` (full logits and
    top-k in fp16), measured on `samples` random rows, and those figures at ImageNet-1k scale."""
    g = torch.Generator().manual_seed(0)
    views = torch.rand(samples, 6, generator=g) * 100
    logits = torch.randn(samples, num_classes, generator=g) * 3
    rows = []
    with tempfile.TemporaryDirectory(prefix="harness-cache-scale-") as tmp:
        for k in topks:
            path = Path(tmp) / f"epoch_{k}.arrow"
            teacher_cache.write_table(path, teacher_cache.epoch_table(views, logits, k))
            reads = []
            for _ in range(3):
                start = time.perf_counter()
                teacher_cache.read_epoch(path, num_classes)
                reads.append(time.perf_counter() - start)
            per_sample = path.stat().st_size / samples
            read_s = sorted(reads)[1] / samples
            rows.append(
                {
                    "suite": "ffcv_kd",
                    "case": f"cache_k{num_classes}_{'full' if k is None else f'top{k}'}",
                    "median_s": read_s,
                    "img_per_s": 1.0 / read_s,
                    "ratio": float("nan"),
                    "baseline": "",
                    "spread": float("nan"),
                    "bytes_per_sample": per_sample,
                    "imagenet_epoch_gb": per_sample * IMAGENET_TRAIN / 1e9,
                    "imagenet_epoch_read_s": read_s * IMAGENET_TRAIN,
                    "detail": f"{per_sample:.0f} B/sample/epoch; ImageNet-1k epoch "
                    f"{per_sample * IMAGENET_TRAIN / 1e9:.2f} GB, read + filled in "
                    f"{read_s * IMAGENET_TRAIN:.1f} s ({samples} rows measured)",
                }
            )
    return rows
