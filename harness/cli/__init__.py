"""The `harness` command line: the `main` group and its commands. Parse, build, call: nothing else.

This module holds the group (`HarnessGroup`: a HarnessError or OSError becomes one `error:` line
on stderr and its exit status), the logging set-up, and the registration of the commands, each
defined with `@click.command` in the module of its group:

    harness/cli/run.py          run, eval, cache-teacher (one run)
    harness/cli/recipes.py      validate
    harness/cli/leaderboard.py  leaderboard
    harness/cli/data.py         data (convert)
    harness/cli/bench.py        bench
    harness/cli/sweep.py        sweep, nightly (many runs)
    harness/cli/tune.py         tune (equal-budget tuning with Optuna)
    harness/cli/nightly.py      nightly accept, nightly rebuild (beside the night itself)

Options that several commands share: `harness/cli/options.py`.
Entry points: `harness.cli:main` (the `harness` script) and `python -m harness`.
May import: click, `harness.errors`, its own modules; the commands import what they call inside
their bodies, so that `harness --help` loads no torch. Only `harness/__main__.py` imports `harness.cli`.
"""

from __future__ import annotations

import logging
import sys

import click

from harness.cli import bench, data, leaderboard, nightly, recipes, run, sweep, tune
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


main.add_command(run.run)
main.add_command(run.evaluate)
main.add_command(run.cache_teacher)
main.add_command(recipes.validate)
main.add_command(leaderboard.leaderboard)
main.add_command(data.data)
main.add_command(bench.bench)
main.add_command(sweep.sweep)
main.add_command(nightly.nightly)
main.add_command(tune.tune)


if __name__ == "__main__":
    main()
