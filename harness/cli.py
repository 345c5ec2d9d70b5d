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
@click.option(
    "--smoke",
    is_flag=True,
    help="Run 2 steps on generated data of the recipe's shape, on the CPU (teachers too); "
    "in a temporary runs folder unless --runs-dir is given.",
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
) -> None:
    """Train and evaluate one RECIPE; metrics go to RUNS_DIR/<run_id>/metrics.parquet."""
    from harness.recipe import load_recipe
    from harness.runner import RunOptions, train

    if resume and restart:
        raise click.UsageError("--resume and --restart exclude each other")
    loaded = load_recipe(recipe, overrides)
    if smoke:
        from harness.smoke import run_smoke

        given = click.get_current_context().get_parameter_source("runs_dir")
        keep = runs_dir if given == click.core.ParameterSource.COMMANDLINE else None
        result = run_smoke(loaded, keep, device=device, progress=progress, resume=resume, restart=restart)
        where = result.run_dir if keep else "temporary runs folder, removed"
        click.echo(f"smoke {result.status}: {result.run_id} ({_summary(result.rows)}) -> {where}")
        return
    result = train(
        loaded, runs_dir, RunOptions(device=device, resume=resume, restart=restart, progress=progress)
    )
    click.echo(
        f"{result.status}: {result.run_id} ({_summary(result.rows)}) -> {result.run_dir / 'metrics.parquet'}"
    )


def _summary(rows: list[dict]) -> str:
    return f"top1 {rows[-1]['top1']:.2f}%" if rows else "no metrics"


@main.command()
@click.argument("recipes", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override fields.")
def validate(recipes: tuple[Path, ...], overrides: tuple[str, ...]) -> None:
    """Check RECIPES strictly without running them (one line per problem)."""
    from harness.recipe import load_recipe
    from harness.teacher import teacher_recipe

    failed = 0
    for path in recipes:
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
    default="leaderboard",
    show_default=True,
    help="Folder for leaderboard.md, leaderboard.parquet, leaderboard.csv and index.html.",
)
def leaderboard(runs_dir: Path, out: Path) -> None:
    """Compare every strategy with its matched label-smoothing and CE baselines over seeds."""
    from harness.leaderboard import generate

    click.echo(generate(runs_dir, out).summary())


@main.command()
@click.option(
    "--suite",
    type=click.Choice(["steps", "all"]),
    default="all",
    show_default=True,
    help="Which measurements to take.",
)
@click.option("--quick", is_flag=True, help="Fewer rounds (a smoke check of the benchmark itself).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("benchmarks/results"),
    show_default=True,
    help="Folder for the Parquet results.",
)
def bench(suite: str, quick: bool, device: str, out: Path) -> None:
    """Measure speed as side-by-side ratios (Parquet in --out, a table on stdout)."""
    from harness.benchmarking import cli as bench_cli

    click.echo(bench_cli.run(suite, quick=quick, device=device, out=out))


if __name__ == "__main__":
    main()
