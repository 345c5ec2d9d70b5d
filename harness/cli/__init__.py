"""The `harness` command line: parse, build, run. Nothing else lives here."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from harness.cli import sweep as sweep_commands
from harness.cli.options import DEFAULT_RUNS_DIR, device_option, runs_dir_option, set_option
from harness.errors import OS_ERROR_EXIT, HarnessError, describe_os_error


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="harness: %(message)s",
        stream=sys.stderr,
    )


class HarnessGroup(click.Group):
    """Click group that turns HarnessError and OSError (disk full, read-only or misplaced folders)
    into one line on stderr and a non-zero exit."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except HarnessError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except OSError as exc:
            click.echo(f"error: {describe_os_error(exc)}", err=True)
            ctx.exit(OS_ERROR_EXIT)


@click.group(cls=HarnessGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.version_option(package_name="harness")
def main(verbose: bool) -> None:
    """Benchmark harness: does knowledge distillation beat label smoothing, and why?"""
    _setup_logging(verbose)


main.add_command(sweep_commands.sweep)
main.add_command(sweep_commands.nightly)


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@runs_dir_option
@set_option("Override a recipe field, e.g. --set optim.lr=0.05 (repeatable, type-checked).")
@device_option("Device (default: the recipe's runtime.device).")
@click.option("--resume", is_flag=True, help="Continue an unfinished run from its last checkpoint.")
@click.option(
    "--restart", is_flag=True, help="Set an existing run aside (renamed, not deleted) and train it again."
)
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
@click.option(
    "--smoke",
    is_flag=True,
    help="Check the recipe end to end in seconds: 2 training steps of batch 2 and an evaluation, "
    "on the CPU (teachers too), on generated data with the recipe's classes and channels at its "
    "resolution capped at 64 px (16 px when every network is a CIFAR variant); in a temporary "
    "runs folder unless --runs-dir is given.",
)
@click.option(
    "--nproc",
    type=click.IntRange(min=1),
    default=1,
    help="Train on N local processes: hands the same command to torchrun (DDP; 1: one DDP rank).",
)
def run(
    recipe: Path,
    runs_dir: Path,
    overrides: tuple[str, ...],
    device: str | None,
    resume: bool,
    restart: bool,
    progress: bool | None,
    smoke: bool,
    nproc: int,
) -> None:
    """Train and evaluate one RECIPE; metrics go to RUNS_DIR/<run_id>/metrics.parquet.

    Several GPUs or machines: `torchrun --nproc_per_node=N -m harness run RECIPE` (see
    docs/distributed.md); `--nproc N` is the one-machine shorthand.
    """
    from harness.config import load_recipe
    from harness.runtime import distributed
    from harness.training.lifecycle import train
    from harness.training.loop import RunOptions

    if resume and restart:
        raise click.UsageError("--resume and --restart exclude each other")
    loaded = load_recipe(recipe, overrides)  # a bad recipe fails here, before any process starts
    asked = (
        click.get_current_context().get_parameter_source("nproc") == click.core.ParameterSource.COMMANDLINE
    )
    if (nproc > 1 or asked) and not distributed.world_from_env().distributed:  # --nproc 1: one DDP rank
        distributed.hand_to_torchrun(nproc, sys.argv[1:])
    if smoke:
        from harness.training.smoke import run_smoke

        given = click.get_current_context().get_parameter_source("runs_dir")
        keep = runs_dir if given == click.core.ParameterSource.COMMANDLINE else None
        result = run_smoke(loaded, keep, device=device, progress=progress, resume=resume, restart=restart)
        where = result.run_dir if keep else "temporary runs folder, removed"
        click.echo(f"smoke {result.status}: {result.run_id} ({_summary(result.rows)}) -> {where}")
        return
    try:
        result = train(
            loaded, runs_dir, RunOptions(device=device, resume=resume, restart=restart, progress=progress)
        )
    finally:
        distributed.shutdown()
    if distributed.world_from_env().is_main:
        click.echo(
            f"{result.status}: {result.run_id} ({_summary(result.rows)}) -> "
            f"{result.run_dir / 'metrics.parquet'}"
        )


def _summary(rows: list[dict]) -> str:
    return f"top1 {rows[-1]['top1']:.2f}%" if rows else "no metrics"


@main.command()
@click.argument("recipes", nargs=-1, required=True, metavar="RECIPES_OR_GLOBS...")
@set_option("Override fields.")
def validate(recipes: tuple[str, ...], overrides: tuple[str, ...]) -> None:
    """Check RECIPES strictly without running them (one line per problem).

    Globs are expanded as `harness sweep` does (quote them: 'recipes/**/*.yaml' also matches
    the files directly in recipes/).
    """
    from harness.config import load_recipe
    from harness.sweeps.spec import expand
    from harness.teachers.teacher import teacher_recipe

    failed = 0
    paths: list[Path] = []
    for pattern in recipes:
        try:
            paths += [Path(pattern)] if Path(pattern).exists() else expand(pattern, Path())
        except HarnessError as exc:
            click.echo(f"error: {exc}", err=True)
            failed += 1
    for path in paths:
        try:
            r = load_recipe(path, overrides)
            if r.teacher is not None and r.teacher.run is not None:
                teacher_recipe(r)  # the teacher run's recipe must load too
        except HarnessError as exc:
            click.echo(f"error: {exc}", err=True)
            failed += 1
        else:
            click.echo(f"ok: {path} ({r.run_id})")
    if failed:
        raise SystemExit(2)


@main.command()
@click.option(
    "--runs-dir",
    type=click.Path(path_type=Path),
    default=DEFAULT_RUNS_DIR,
    envvar="HARNESS_RUNS_DIR",
    show_default=True,
    help="Folder holding one sub-folder per run (env HARNESS_RUNS_DIR); read only.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder for leaderboard.md, leaderboard.parquet, leaderboard.csv and index.html "
    "(default: RUNS_DIR/leaderboard, as `harness sweep`).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Replace output files in --out that `harness leaderboard` did not write (no marker file).",
)
def leaderboard(runs_dir: Path, out: Path | None, force: bool) -> None:
    """Compare every strategy with its matched label-smoothing and CE baselines over seeds.

    Files in --out are replaced only where this command wrote them before (its marker file
    .harness-leaderboard, or a leaderboard.md of its own from before markers) or with --force.
    """
    from harness.leaderboard import generate

    out = out if out is not None else runs_dir / "leaderboard"
    click.echo(generate(runs_dir, out, force=force).summary())


@main.command(name="cache-teacher")
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@runs_dir_option
@set_option("Override fields.")
@device_option()
@click.option("--rebuild", is_flag=True, help="Delete the recipe's existing cache and build it again.")
def cache_teacher(
    recipe: Path, runs_dir: Path, overrides: tuple[str, ...], device: str | None, rebuild: bool
) -> None:
    """Build the per-view teacher cache of a KD RECIPE (shared by its students and seeds)."""
    from harness.config import load_recipe
    from harness.teachers.build import cache_teacher as build_cache
    from harness.training.lifecycle import teacher_run_trainer
    from harness.training.loop import RunOptions

    train_run = teacher_run_trainer(runs_dir, RunOptions(device=device))
    folder = build_cache(load_recipe(recipe, overrides), runs_dir, train_run, device, rebuild)
    click.echo(f"teacher cache: {folder}")


@main.command(name="eval")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--checkpoint",
    "which",
    default="final",
    show_default=True,
    help="Which weights: final, last or epoch_<N>.",
)
@device_option(default="auto")
def evaluate(run_dir: Path, which: str, device: str) -> None:
    """Evaluate a run's saved weights on its evaluation split; prints the metrics as JSON."""
    import json

    from harness.runtime import distributed
    from harness.training.evaluation import evaluate_run

    result = evaluate_run(run_dir, which, device)
    if distributed.world_from_env().is_main:
        skip = ("reliability_count", "reliability_confidence", "reliability_accuracy")
        click.echo(json.dumps({k: v for k, v in result.items() if k not in skip}, sort_keys=True))
    distributed.shutdown()


@main.command()
@click.option(
    "--suite",
    type=click.Choice(["steps", "epoch", "ffcv_kd", "loader", "all"]),
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
@device_option(default="cpu", choices=("cpu", "cuda"))
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
def bench(suite: str, quick: bool, rounds: int, device: str, clock: str, out: Path) -> None:
    """Measure speed as side-by-side ratios (Parquet in --out, a table on stdout)."""
    from harness.benchmarking import cli as bench_cli

    runs = bench_cli.run(suite, quick=quick, rounds=rounds, device=device, out=out, clock=clock)
    for section in runs:
        click.echo(section)


@main.group()
def data() -> None:
    """Data sets: convert them once to FFCV .beton files."""


@data.command("convert")
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["imagefolder", "cifar", "fashion-mnist"]),
    help="Source format (default: detected from SOURCE).",
)
@click.option(
    "--split",
    type=click.Choice(["train", "val", "test"]),
    help="Split to write: required for cifar / fashion-mnist; a sub-folder of an image folder.",
)
@click.option("--max-resolution", type=int, help="Cap the longest side (pixels).")
@click.option(
    "--jpeg-quality", type=int, default=90, show_default=True, help="JPEG quality (jpg, proportion)."
)
@click.option(
    "--write-mode",
    type=click.Choice(["raw", "jpg", "proportion"]),
    help="Pixels raw, JPEG, or JPEG for a random share (default: jpg for image folders, else raw).",
)
@click.option(
    "--compress-probability", type=float, default=0.5, show_default=True, help="JPEG share (proportion)."
)
@click.option("--workers", type=int, help="Worker processes (default: one per CPU core).")
@click.option("--page-size", type=int, help="ffcv page size in MiB, a power of two >= 2 (default 8).")
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists (replaced only once complete).")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
def convert(
    source: Path,
    out: Path,
    fmt: str | None,
    split: str | None,
    max_resolution: int | None,
    jpeg_quality: int,
    write_mode: str | None,
    compress_probability: float,
    workers: int | None,
    page_size: int | None,
    force: bool,
    progress: bool | None,
) -> None:
    """Write SOURCE (an ImageFolder tree, CIFAR python batches or Fashion-MNIST IDX files) to OUT.beton."""
    from harness.data import convert as conversion

    options = conversion.ConvertOptions(
        format=fmt,
        split=split,
        max_resolution=max_resolution,
        jpeg_quality=jpeg_quality,
        write_mode=write_mode,
        compress_probability=compress_probability,
        workers=workers,
        page_size=None if page_size is None else page_size * 2**20,
        force=force,
        progress=progress,
    )
    try:
        result = conversion.convert(source, out, options)
    except KeyboardInterrupt:
        click.echo(f"error: interrupted; {out} was not written", err=True)
        raise SystemExit(130) from None
    click.echo(result.summary())


if __name__ == "__main__":
    main()
