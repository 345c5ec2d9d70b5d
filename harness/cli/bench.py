"""`harness bench`: speed as side-by-side ratios.

Parse, call, print: the suites are `harness.benchmarking.cli.run`. May import: click,
`harness.cli.options` and, inside the command, `harness.benchmarking`.
"""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli.options import device_option


@click.command(
    epilog="\b\nExamples:\n"
    "  harness bench --suite board --quick --out /tmp/bench\n"
    "  OMP_NUM_THREADS=1 harness bench --suite steps --clock cpu --out /tmp/bench"
)
@click.option(
    "--suite",
    type=click.Choice(["steps", "epoch", "holdout", "board", "tune", "ffcv_kd", "loader", "all"]),
    default="all",
    show_default=True,
    help="Which measurements to take.",
)
@click.option("--quick", is_flag=True, help="Fewer rounds (a smoke check of the benchmark itself).")
@click.option(
    "--rounds",
    type=click.IntRange(min=1),
    default=7,
    show_default=True,
    help="Interleaved rounds of the step and epoch suites (more: steadier medians on a busy machine).",
)
@device_option("Device to measure on.", default="cpu", choices=("cpu", "cuda"))
@click.option(
    "--clock",
    type=click.Choice(["wall", "cpu"]),
    default="wall",
    show_default=True,
    help="Time the step and epoch suites in wall seconds or in this process's CPU seconds "
    "(steadier on a shared machine; with OMP_NUM_THREADS=1).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("benchmarks/results"),
    show_default=True,
    help="Folder for the Parquet results.",
)
@click.option(
    "--index-runs",
    type=click.IntRange(min=1),
    multiple=True,
    help="Run counts of the board suite's run-index rows (repeatable; default 1000 and 10000; --quick: 16).",
)
def bench(
    suite: str, quick: bool, rounds: int, device: str, clock: str, out: Path, index_runs: tuple[int, ...]
) -> None:
    """Measure speed as side-by-side ratios.

    Each suite against its baselines, side by side: Parquet in --out, a table on stdout.
    """
    from harness.benchmarking import cli as bench_cli

    runs = bench_cli.run(
        suite,
        quick=quick,
        rounds=rounds,
        device=device,
        out=out,
        clock=clock,
        index_runs=index_runs or (1000, 10_000),
    )
    for section in runs:
        click.echo(section)
