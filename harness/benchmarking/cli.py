"""`harness bench`: run the suites, write their Parquet files, yield their Markdown reports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from harness.benchmarking import report, steps
from harness.errors import HarnessError


def run_loader(quick: bool, out: Path) -> None:
    """The FFCV-vs-torchvision loader benchmark; it prints its own table."""
    from harness.benchmarking import loader

    args = ["--out", str(out / "loader.parquet")] + (["--quick"] if quick else [])
    if loader.main(args) != 0:
        raise HarnessError("loader benchmark failed")


def run(suite: str, *, quick: bool, device: str, out: Path, rounds: int = 7) -> Iterator[str]:
    """Run the suites in turn, yielding each one's Markdown report as soon as it is measured."""
    if suite in ("steps", "all"):
        ctx = report.context(device)
        cfg = steps.StepConfig(device=device, rounds=2 if quick else rounds, steps=2 if quick else 4)
        rows = [{**r, **ctx} for r in steps.run(cfg)]
        path = report.write(rows, out, "steps")
        columns = ["case", "median_s", "img_per_s", "ratio", "baseline", "spread", "detail"]
        yield (
            f"## Training steps ({ctx['device']}, {ctx['threads']} threads) -> {path}\n\n"
            + report.markdown(rows, columns)
        )
    if suite in ("epoch", "all"):
        from harness.benchmarking import epochs

        ctx = report.context(device)
        epoch_cfg = epochs.EpochConfig(device=device, rounds=2 if quick else rounds)
        if quick:
            epoch_cfg.arch, epoch_cfg.images, epoch_cfg.batch_size = "test_resnet", 256, 64
        rows = [{**r, **ctx} for r in epochs.run(epoch_cfg)]
        path = report.write(rows, out, "epoch")
        columns = ["case", "median_s", "img_per_s", "ratio", "baseline", "spread", "detail"]
        yield (
            f"## Whole epochs ({ctx['device']}, {ctx['threads']} threads) -> {path}\n\n"
            + report.markdown(rows, columns)
        )
    if suite in ("ffcv_kd", "all"):
        from harness.benchmarking import ffcv_kd

        ctx = report.context(device)
        kd_cfg = ffcv_kd.FfcvKdConfig(device=device, rounds=2 if quick else rounds, steps=2 if quick else 4)
        if quick:
            kd_cfg.images, kd_cfg.batch_size, kd_cfg.arch, kd_cfg.teacher_arch = (
                64,
                16,
                "test_resnet",
                "resnet18",
            )
        rows = [{**r, **ctx} for r in [*ffcv_kd.run(kd_cfg), *ffcv_kd.cache_scale(2000 if quick else 20_000)]]
        path = report.write(rows, out, "ffcv_kd")
        columns = ["case", "median_s", "img_per_s", "ratio", "baseline", "spread", "detail"]
        yield (
            f"## ffcv KD: cached / live / CE ({ctx['device']}, {ctx['threads']} threads) -> {path}\n\n"
            + report.markdown(rows, columns)
        )
    if suite in ("loader", "all"):
        out.mkdir(parents=True, exist_ok=True)
        run_loader(quick, out)  # prints its own table
