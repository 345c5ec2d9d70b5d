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


COLUMNS = ["case", "median_s", "img_per_s", "ratio", "baseline", "spread", "detail"]


def section(title: str, suite: str, rows: list[dict], ctx: dict, out: Path) -> str:
    """Write a suite's rows (with where they were taken) to Parquet; its Markdown report."""
    rows = [{**r, **ctx} for r in rows]
    path = report.write(rows, out, suite)
    return f"## {title} ({ctx['device']}, {ctx['threads']} threads) -> {path}\n\n" + report.markdown(
        rows, COLUMNS
    )


def run(
    suite: str,
    *,
    quick: bool,
    device: str,
    out: Path,
    rounds: int = 7,
    clock: str = "wall",
    index_runs: tuple[int, ...] = (1000, 10_000),
) -> Iterator[str]:
    """Run the suites in turn, yielding each one's Markdown report as soon as it is measured."""
    if suite in ("steps", "all"):
        ctx = report.context(device)
        cfg = steps.StepConfig(
            device=device, rounds=2 if quick else rounds, steps=2 if quick else 4, clock=clock
        )
        yield section("Training steps", "steps", steps.run(cfg), ctx, out)
    if suite in ("epoch", "all"):
        from harness.benchmarking import epochs

        ctx = report.context(device)
        epoch_cfg = epochs.EpochConfig(device=device, rounds=2 if quick else rounds, clock=clock)
        if quick:
            epoch_cfg.arch, epoch_cfg.images, epoch_cfg.batch_size = "test_resnet", 256, 64
        yield section("Whole epochs", "epoch", epochs.run(epoch_cfg), ctx, out)
    if suite in ("holdout", "all"):
        from harness.benchmarking import holdout

        ctx = report.context(device)
        holdout_cfg = holdout.HoldoutConfig(device=device, rounds=2 if quick else rounds, clock=clock)
        if quick:
            holdout_cfg.arch, holdout_cfg.images, holdout_cfg.val_images = "test_resnet", 256, 128
        yield section(
            "Held-out split: an epoch with and without", "holdout", holdout.run(holdout_cfg), ctx, out
        )
    if suite in ("board", "all"):
        from harness.benchmarking import board

        ctx = report.context("cpu")
        board_cfg = board.BoardConfig(
            rounds=2 if quick else min(rounds, 3), clock=clock, index_sizes=index_runs
        )
        if quick:
            board_cfg.settings, board_cfg.rows, board_cfg.seeds = 2, 4, 2
            board_cfg.index_sizes, board_cfg.index_rows, board_cfg.index_seeds = (16,), 4, 2
        yield section("Leaderboard over many runs", "board", board.run(board_cfg), ctx, out)
    if suite in ("tune", "all"):
        from harness.benchmarking import tune

        ctx = report.context("cpu")
        tune_cfg = tune.TuneBenchConfig(trials=10 if quick else 50, clock=clock)
        yield section("Tuning driver: its own cost per trial", "tune", tune.run(tune_cfg), ctx, out)
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
        kd_rows = [*ffcv_kd.run(kd_cfg), *ffcv_kd.cache_scale(2000 if quick else 20_000)]
        yield section("ffcv KD: cached / live / CE", "ffcv_kd", kd_rows, ctx, out)
    if suite in ("loader", "all"):
        out.mkdir(parents=True, exist_ok=True)
        run_loader(quick, out)  # prints its own table
