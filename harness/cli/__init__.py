"""The `harness` command line: the `main` group and its commands. Parse, build, call: nothing else.

This module holds the group (`HarnessGroup`: a HarnessError or OSError becomes one `error:` line
on stderr and its exit status), the logging set-up, and the registration of the commands, each
defined with `@click.command` in the module of its group:

    harness/cli/run.py          run, eval, cache-teacher (one run)
    harness/cli/recipes.py      validate
    harness/cli/leaderboard.py  leaderboard
    harness/cli/data.py         data (convert)
    harness/cli/bench.py        bench

and `sweep` and `nightly` (below). Options that several commands share: `harness/cli/options.py`.
Entry points: `harness.cli:main` (the `harness` script) and `python -m harness`.
May import: click, `harness.errors`, its own modules; the commands import what they call inside
their bodies, so that `harness --help` loads no torch. Only `harness/__main__.py` imports `harness.cli`.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from harness.cli import bench, data, leaderboard, recipes, run
from harness.cli import sweep_options as sweep_cli
from harness.cli.options import device_option, runs_dir_option, set_option
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


@main.command()
@click.argument("recipes", nargs=-1, metavar="[RECIPES_OR_GLOBS]...")
@click.option(
    "--file",
    "sweep_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Sweep file: recipes, seeds and overrides (format: docs/sweeps.md).",
)
@click.option("--seeds", default=None, metavar="0,1,2", help="Seeds of every recipe (replace the file's).")
@set_option("Override a field of every recipe (after the sweep file's overrides; repeatable).")
@runs_dir_option
@device_option("Device of every run.")
@click.option(
    "--leaderboard-out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the leaderboard is regenerated at the end (default: RUNS_DIR/leaderboard).",
)
@click.option("--no-leaderboard", is_flag=True, help="Do not regenerate the leaderboard.")
@click.option(
    "--keep-going/--fail-fast",
    default=True,
    show_default=True,
    help="Go on past a failed or diverged run, or stop at the first (and refuse invalid recipes).",
)
@sweep_cli.executor_options
@click.pass_context
def sweep(
    ctx: click.Context,
    recipes: tuple[str, ...],
    sweep_file: Path | None,
    seeds: str | None,
    overrides: tuple[str, ...],
    runs_dir: Path,
    device: str | None,
    leaderboard_out: Path | None,
    no_leaderboard: bool,
    keep_going: bool,
    **executor: object,
) -> None:
    """Run many recipes x seeds: skip completed runs, resume unfinished ones, go on past failures.

    RECIPES_OR_GLOBS are recipe files or globs (quote them: 'recipes/**/*.yaml'). Each run trains
    in its own process; SIGTERM/SIGINT checkpoints the current run and stops the sweep (exit 130).
    Exit status 1 if any run failed or diverged. A JSON summary goes to RUNS_DIR/sweeps/.
    `--executor slurm` submits one Slurm job per run; `harness sweep status RUNS_DIR` (or
    `--status`) shows every run's state; `--plan` estimates the device-hours (docs/sweeps.md).
    """
    from harness.sweeps.sweep import SweepOptions

    if leaderboard_out is not None and no_leaderboard:
        raise click.UsageError("--leaderboard-out and --no-leaderboard exclude each other")
    options = SweepOptions(
        device=device, keep_going=keep_going, leaderboard=not no_leaderboard, leaderboard_out=leaderboard_out
    )
    sweep_cli.main(ctx, recipes, sweep_file, seeds, overrides, runs_dir, options, **executor)


@main.command()
@click.argument("sweep_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default="runs/nightly",
    envvar="HARNESS_NIGHTLY_ROOT",
    show_default=True,
    help="Nightly folder: ROOT/<night>/ runs, ROOT/history/, ROOT/reports/ (env HARNESS_NIGHTLY_ROOT).",
)
@click.option("--night", default=None, help="Name of the night (default: today's UTC date, YYYY-MM-DD).")
@click.option(
    "--history",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder of the nightly snapshots (default: ROOT/history).",
)
@click.option(
    "--report",
    "report_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the report here.",
)
@click.option("--seeds", default=None, metavar="0,1,2", help="Seeds of every recipe (replace the file's).")
@set_option("Override a field of every recipe.")
@device_option("Device of every run.")
@click.option(
    "--k", type=click.FloatRange(min=0), default=2.0, show_default=True, help="Top-1: seed stds allowed."
)
@click.option(
    "--floor",
    type=click.FloatRange(min=0),
    default=0.5,
    show_default=True,
    help="Top-1: points always allowed.",
)
@click.option(
    "--throughput-tolerance",
    type=click.FloatRange(min=0, max=1),
    default=0.10,
    show_default=True,
    help="Images/s: fraction of last night's that may be lost.",
)
@sweep_cli.nightly_executor_options
@click.pass_context
def nightly(
    ctx: click.Context,
    sweep_file: Path,
    root: Path,
    night: str | None,
    history: Path | None,
    report_out: Path | None,
    seeds: str | None,
    overrides: tuple[str, ...],
    device: str | None,
    k: float,
    floor: float,
    throughput_tolerance: float,
    **executor: object,
) -> None:
    """Run SWEEP_FILE as tonight's benchmark and report regressions against the previous night.

    Exit status 1 when top-1 or throughput regressed or a run failed (see the report), 130 when
    interrupted (run it again the same night to resume). Rules: docs/sweeps.md.
    """
    from harness.sweeps.nightly import Policy, run_nightly
    from harness.sweeps.sweep import SweepOptions, parse_seeds

    result = run_nightly(
        sweep_file,
        root,
        night=night,
        history=history,
        report_out=report_out,
        seeds=parse_seeds(seeds) if seeds else None,
        overrides=overrides,
        options=sweep_cli.nightly_options(SweepOptions(device=device), sweep_file, executor),
        policy=Policy(k=k, floor=floor, throughput_tolerance=throughput_tolerance),
    )
    click.echo(result.report)
    if result.report_path is not None:
        click.echo(f"report: {result.report_path}")
    ctx.exit(result.exit_code)


main.add_command(run.run)
main.add_command(run.evaluate)
main.add_command(run.cache_teacher)
main.add_command(recipes.validate)
main.add_command(leaderboard.leaderboard)
main.add_command(data.data)
main.add_command(bench.bench)


if __name__ == "__main__":
    main()
