"""What CPU tests cannot prove, measured on one GPU in a few minutes (`benchmarks/gpu_check.sh`).

Checks, each a row of one Markdown table:

1. `steps`: ResNet-50 training steps, bf16 autocast + channels-last + `torch.compile` against
   eager fp32 (the ratio of their median step times), with the peak GPU memory of a step;
2. `ffcv_loader_224`: the ffcv ImageNet-style loader (seeded random-resized crop to 224 px and
   flip, all cores) up to normalised batches on the device, in images per second;
3. `ffcv_kd`: ffcv KD with the teacher cache against ffcv CE (and the live teacher), on CUDA;
4. `cached_equals_live`: a short ffcv KD run with the cache against the same run with the live
   teacher: equal metrics (and the largest difference);
5. `nccl_1gpu`: a run through `harness run --nproc 1` (torchrun, one DDP rank, NCCL).

`--dry-run` runs every check with tiny models and sizes on the CPU (gloo instead of NCCL, the
`eager` compile backend): the script's own test, proving it runs end to end before a GPU does.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import yaml

from harness.benchmarking import ffcv_kd, report
from harness.benchmarking.steps import StepConfig, base_recipe, harness_case
from harness.benchmarking.timing import interleaved

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Sizes:
    """How big each check is (the GPU defaults, or tiny ones for --dry-run on a CPU)."""

    device: str = "cuda"
    arch: str = "resnet50"
    teacher: str = "resnet50"
    image: int = 224
    batch: int = 128
    steps: int = 10
    rounds: int = 3
    loader_images: int = 2048
    loader_stored: tuple[int, int] = (256, 341)
    kd_arch: str = "resnet18"
    kd_images: int = 1024
    kd_image: int = 160
    kd_batch: int = 128
    compile_backend: str = "inductor"
    equal_epochs: int = 2

    @classmethod
    def dry_run(cls) -> Sizes:
        return cls(
            device="cpu",
            arch="test_resnet",
            teacher="test_resnet",
            image=32,
            batch=8,
            steps=2,
            rounds=1,
            loader_images=32,
            loader_stored=(40, 56),
            kd_arch="test_resnet",
            kd_images=32,
            kd_image=32,
            kd_batch=8,
            compile_backend="eager",
            equal_epochs=1,
        )


def row(check: str, value: float, unit: str, detail: str, ok: bool | None = None) -> dict[str, Any]:
    return {
        "check": check,
        "value": value,
        "unit": unit,
        "ok": "" if ok is None else ("yes" if ok else "NO"),
        "detail": detail,
    }


def peak_memory_gb(step, device: torch.device, steps: int) -> float:
    """Peak GPU memory over `steps` calls of `step` (NaN on a CPU)."""
    if device.type != "cuda":
        for _ in range(steps):
            step()
        return math.nan
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    for _ in range(steps):
        step()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 1e9


def check_steps(s: Sizes, tmp: Path) -> list[dict]:
    """bf16 + channels-last + torch.compile against eager fp32 (same model, data and optimizer)."""
    cfg = StepConfig(arch=s.arch, batch_size=s.batch, image_size=s.image, device=s.device)
    plain = base_recipe(cfg, {"name": "ce"}, None)
    plain["data"]["synthetic_size"] = s.batch * 2
    plain["runtime"].update({"amp": "off", "channels_last": "off", "compile": False})
    fast = json.loads(json.dumps(plain))
    fast["runtime"].update({"amp": "bf16", "channels_last": "on", "compile": True})
    start = time.perf_counter()
    compile_fn = torch.compile
    if s.compile_backend != "inductor":  # the runner's torch.compile, with a cheap backend (dry run)
        torch.compile = functools.partial(compile_fn, backend=s.compile_backend)
    try:
        cases = {"eager_fp32": harness_case(plain, tmp), "bf16_cl_compile": harness_case(fast, tmp)}
    finally:
        torch.compile = compile_fn
    cases["bf16_cl_compile"]()  # the compile happens here, outside the timing
    compile_s = time.perf_counter() - start
    device = torch.device(s.device)
    timings = interleaved(cases, rounds=s.rounds, work=s.steps, warmup=1, device=device)
    eager, fast_t = timings["eager_fp32"].median, timings["bf16_cl_compile"].median
    mem = {name: peak_memory_gb(step, device, 2) for name, step in cases.items()}
    what = f"{s.arch} b{s.batch} {s.image}px"
    return [
        row("steps: eager fp32", eager, "s/step", f"{what}; {s.batch / eager:.0f} img/s"),
        row(
            "steps: bf16 + channels_last + compile",
            fast_t,
            "s/step",
            f"{what}; {s.batch / fast_t:.0f} img/s; compile + first step {compile_s:.0f} s",
        ),
        row(
            "steps: speed-up over eager fp32",
            eager / fast_t,
            "x",
            "eager fp32 s/step / bf16+cl+compile s/step",
            eager / fast_t > 1 if s.device == "cuda" else None,
        ),
        row("peak GPU memory / step: eager fp32", mem["eager_fp32"], "GB", what),
        row("peak GPU memory / step: bf16 + cl + compile", mem["bf16_cl_compile"], "GB", what),
    ]


def check_loader(s: Sizes, tmp: Path) -> list[dict]:
    """The ffcv loader at 224 px (seeded RRC + flip, all cores) up to batches on the device."""
    from harness.config.recipe import DataConfig
    from harness.data import build_data
    from harness.schema import from_dict

    cfg = ffcv_kd.FfcvKdConfig(images=s.loader_images, stored=s.loader_stored, classes=10)
    beton = ffcv_kd.make_betons(tmp / "loader", cfg, workers=os.cpu_count() or 1)
    data = from_dict(
        DataConfig,
        {
            "dataset": "imagenet",
            "backend": "ffcv",
            "train_path": str(beton),
            "val_path": str(beton),
            "num_classes": 10,
            "image_size": s.image if s.device == "cpu" else 224,
            "batch_size": s.kd_batch,
            "num_workers": 0,  # one thread per core
            "augment": {"random_resized_crop": True, "hflip": True},
        },
        "data",
    )
    bundle = build_data(data, device=torch.device(s.device), seed=0)
    loader = bundle.train
    for _ in loader:  # the first epoch compiles (numba)
        pass
    rates = []
    for epoch in range(1, 3):
        loader.set_epoch(epoch)
        start = time.perf_counter()
        n = sum(len(b) for b in loader)
        if s.device == "cuda":
            torch.cuda.synchronize()
        rates.append(n / (time.perf_counter() - start))
    bundle.close()
    size = data.image_size
    return [
        row(
            f"ffcv loader, RRC to {size} px",
            max(rates),
            "img/s",
            f"{os.cpu_count()} cores, stored {s.loader_stored} JPEG q90, batch {s.kd_batch}, "
            f"to normalised {s.device} tensors",
        )
    ]


def check_ffcv_kd(s: Sizes) -> list[dict]:
    """ffcv KD cached / ffcv CE and live / CE step ratios on the device."""
    cfg = ffcv_kd.FfcvKdConfig(
        arch=s.kd_arch,
        teacher_arch=s.teacher,
        images=s.kd_images,
        image_size=s.kd_image,
        stored=s.loader_stored,
        batch_size=s.kd_batch,
        rounds=s.rounds,
        steps=s.steps,
        device=s.device,
    )
    rows = {r["case"]: r for r in ffcv_kd.run(cfg)}
    cached, live = rows["ffcv_kd_cached"]["ratio"], rows["ffcv_kd_live"]["ratio"]
    build = rows["cache_build"]
    return [
        row("ffcv KD live / ffcv CE", live, "x", rows["ffcv_kd_live"]["detail"]),
        row(
            "ffcv KD cached / ffcv CE",
            cached,
            "x",
            rows["ffcv_kd_cached"]["detail"] + "; goal <= 1.10",
            cached <= 1.10 if s.device == "cuda" else None,
        ),
        row(
            "cache build: teacher forwards per view",
            build["ratio"],
            "x",
            build["detail"],
            build["ratio"] == 1.0,
        ),
    ]


def check_cached_equals_live(s: Sizes, tmp: Path) -> list[dict]:
    """A short ffcv KD run with the cache gives the live-teacher run's metrics."""
    from harness.config import from_mapping
    from harness.models.build import build_model
    from harness.training.lifecycle import train
    from harness.training.loop import RunOptions

    cfg = ffcv_kd.FfcvKdConfig(images=s.kd_images, stored=s.loader_stored, classes=10)
    beton = ffcv_kd.make_betons(tmp / "equal", cfg, workers=os.cpu_count() or 1)
    weights = tmp / "equal" / "teacher.pt"
    torch.manual_seed(0)
    torch.save(build_model(s.kd_arch, 10, 3).state_dict(), weights)
    kd_cfg = replace(cfg, arch=s.kd_arch, image_size=s.kd_image, batch_size=s.kd_batch, device=s.device)
    teacher = {"arch": s.kd_arch, "weights": str(weights)}
    results = {}
    for name, extra in (("live", {}), ("cached", {"cache": True})):
        spec = ffcv_kd.recipe(kd_cfg, beton, ffcv_kd.KD, {**teacher, **extra}, epochs=s.equal_epochs)
        spec["data"]["val_subset"] = None
        results[name] = train(
            from_mapping(spec, f"equal_{name}"), tmp / "equal" / "runs", RunOptions(progress=False)
        ).rows
    keys = ("top1", "nll", "ece", "entropy", "train_loss")
    diffs = [abs(a[k] - b[k]) for a, b in zip(results["live"], results["cached"], strict=True) for k in keys]
    worst = max(diffs)
    return [
        row(
            "cached KD run equals live KD run",
            worst,
            "max abs diff",
            f"{s.equal_epochs} epoch(s) of {s.kd_images} images, metrics {', '.join(keys)}",
            worst == 0.0,
        )
    ]


def check_nccl(s: Sizes, tmp: Path) -> list[dict]:
    """`harness run --nproc 1`: torchrun, one DDP rank (NCCL on a GPU, gloo on a CPU)."""
    spec = base_recipe(
        StepConfig(
            arch=s.kd_arch,
            batch_size=s.kd_batch,
            image_size=s.kd_image if s.device == "cuda" else 16,
            device=s.device,
        ),
        {"name": "ce"},
        None,
    )
    spec["data"]["synthetic_size"] = s.kd_batch * 4
    spec["name"] = "nccl_check"
    path = tmp / "nccl.yaml"
    path.write_text(yaml.safe_dump(spec))
    start = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "run",
            str(path),
            "--runs-dir",
            str(tmp / "nccl_runs"),
            "--nproc",
            "1",
            "--no-progress",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    seconds = time.perf_counter() - start
    backend = next(
        (
            line.split("backend ")[1].split(",")[0]
            for line in proc.stderr.splitlines()
            if "process group: backend" in line
        ),
        "none",
    )
    expected = "nccl" if s.device == "cuda" else "gloo"
    ok = proc.returncode == 0 and backend == expected
    detail = f"exit {proc.returncode}, backend {backend}"
    if proc.returncode != 0:
        detail += ": " + (proc.stderr.strip().splitlines() or [""])[-1][:160]
    return [row("harness run --nproc 1 (DDP, 1 rank)", seconds, "s", detail, ok)]


CHECKS = ("steps", "loader", "ffcv_kd", "equal", "nccl")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (tests the script)")
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results", help="where gpu_check.md goes"
    )
    parser.add_argument("--only", default=",".join(CHECKS), help=f"comma-separated checks of {CHECKS}")
    args = parser.parse_args(argv)
    sizes = Sizes.dry_run() if args.dry_run else Sizes()
    if sizes.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device (use --dry-run on a CPU)", file=sys.stderr)
        return 2
    wanted = [c.strip() for c in args.only.split(",") if c.strip()]
    rows: list[dict] = []
    failed = False
    with tempfile.TemporaryDirectory(prefix="harness-gpu-check-") as tmp_name:
        tmp = Path(tmp_name)
        for name in wanted:
            start = time.perf_counter()
            try:
                if name == "steps":
                    rows += check_steps(sizes, tmp)
                elif name == "loader":
                    rows += check_loader(sizes, tmp)
                elif name == "ffcv_kd":
                    rows += check_ffcv_kd(sizes)
                elif name == "equal":
                    rows += check_cached_equals_live(sizes, tmp)
                elif name == "nccl":
                    rows += check_nccl(sizes, tmp)
                else:
                    raise ValueError(f"unknown check {name!r} (known: {', '.join(CHECKS)})")
            except Exception as exc:  # one failed check is a row, the others still run
                failed = True
                rows.append(
                    row(
                        name,
                        math.nan,
                        "",
                        f"FAILED: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}",
                        False,
                    )
                )
            print(
                f"gpu_check: {name} done in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True
            )
    ctx = report.context(sizes.device)
    dry = ", DRY RUN on CPU" if args.dry_run else ""
    title = f"## GPU check ({ctx['device']}, torch {ctx['torch_version']}, commit {ctx['git_commit']}{dry})"
    table = title + "\n\n" + report.markdown(rows, ["check", "value", "unit", "ok", "detail"]) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.md").write_text(table)
    print(table)
    failed = failed or any(r["ok"] == "NO" for r in rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
