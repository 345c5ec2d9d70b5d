"""The `harness` command line: parse, build, run. Nothing else lives here."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from harness.errors import HarnessError

DEFAULT_RUNS_DIR = "runs"


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="harness: %(message)s",
        stream=sys.stderr,
    )


class HarnessGroup(click.Group):
    """Click group that turns HarnessError into one line on stderr and a non-zero exit."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except HarnessError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)


runs_dir_option = click.option(
    "--runs-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_RUNS_DIR,
    envvar="HARNESS_RUNS_DIR",
    show_default=True,
    help="Folder holding one sub-folder per run (env HARNESS_RUNS_DIR).",
)


@click.group(cls=HarnessGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.version_option(package_name="harness")
def main(verbose: bool) -> None:
    """Benchmark harness: does knowledge distillation beat label smoothing, and why?"""
    _setup_logging(verbose)


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@runs_dir_option
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a recipe field, e.g. --set optim.lr=0.05 (repeatable, type-checked).",
)
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default=None,
    help="Device (default: the recipe's runtime.device).",
)
@click.option("--resume", is_flag=True, help="Continue an unfinished run from its last checkpoint.")
@click.option(
    "--restart", is_flag=True, help="Set an existing run aside (renamed, not deleted) and train it again."
)
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
def run(
    recipe: Path,
    runs_dir: Path,
    overrides: tuple[str, ...],
    device: str | None,
    resume: bool,
    restart: bool,
    progress: bool | None,
) -> None:
    """Train and evaluate one RECIPE; metrics go to RUNS_DIR/<run_id>/metrics.parquet."""
    from harness.recipe import load_recipe
    from harness.runner import RunOptions, train

    if resume and restart:
        raise click.UsageError("--resume and --restart exclude each other")
    loaded = load_recipe(recipe, overrides)
    result = train(
        loaded, runs_dir, RunOptions(device=device, resume=resume, restart=restart, progress=progress)
    )
    last = result.rows[-1] if result.rows else {}
    summary = f"top1 {last['top1']:.2f}%" if last else "no metrics"
    click.echo(f"{result.status}: {result.run_id} ({summary}) -> {result.run_dir / 'metrics.parquet'}")


@main.command()
@click.argument("recipes", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override fields.")
def validate(recipes: tuple[Path, ...], overrides: tuple[str, ...]) -> None:
    """Check RECIPES strictly without running them (one line per problem)."""
    from harness.recipe import load_recipe

    failed = 0
    for path in recipes:
        try:
            r = load_recipe(path, overrides)
        except HarnessError as exc:
            click.echo(f"error: {exc}", err=True)
            failed += 1
        else:
            click.echo(f"ok: {path} ({r.run_id})")
    if failed:
        raise SystemExit(2)


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
