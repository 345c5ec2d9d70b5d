"""Options that several commands share, declared once: `--runs-dir`, `--set`, `--device`, `--seeds`,
`--track`.

Each is a decorator factory, so a command states only what differs (the help of `--set` on a
sweep, the default of `--device` on `harness eval`, a read-only `--runs-dir` on `harness
leaderboard`); `runs_dir_option` is the usual `--runs-dir`. May import: click.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

DEFAULT_RUNS_DIR = "runs"
DEVICES = ("auto", "cpu", "cuda")

RUNS_DIR_HELP = "Folder holding one sub-folder per run (env HARNESS_RUNS_DIR)."


def runs_dir_option_with(help: str = RUNS_DIR_HELP, folder_only: bool = True) -> Callable[[Any], Any]:
    """`--runs-dir` (env HARNESS_RUNS_DIR, default `runs`) into the parameter `runs_dir`; `folder_only`
    refuses an existing file there (and shows DIRECTORY, else PATH, in the help)."""
    return click.option(
        "--runs-dir",
        type=click.Path(file_okay=not folder_only, path_type=Path),
        default=DEFAULT_RUNS_DIR,
        envvar="HARNESS_RUNS_DIR",
        show_default=True,
        help=help,
    )


runs_dir_option = runs_dir_option_with()


def set_option(help: str = "Override fields.") -> Callable[[Any], Any]:
    """`--set KEY=VALUE` (repeatable) into the parameter `overrides`."""
    return click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=help)


def device_option(
    help: str | None = None, default: str | None = None, choices: tuple[str, ...] = DEVICES
) -> Callable[[Any], Any]:
    """`--device` among `choices`; None (the default) leaves the recipe's `runtime.device`, and the
    help says so unless the command says better."""
    return click.option(
        "--device",
        type=click.Choice(list(choices)),
        default=default,
        show_default=default is not None,
        help=help or ("Device (default: the recipe's runtime.device)." if default is None else "Device."),
    )


seeds_option = click.option(
    "--seeds", default=None, metavar="0,1,2", help="Seeds of every recipe (replace the file's)."
)

track_option = click.option(
    "--track",
    default=None,
    metavar="tensorboard,mlflow,wandb",
    help="Also log to these experiment trackers (docs/tracking.md); not part of the run id.",
)


nightly_root_option = click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default="runs/nightly",
    envvar="HARNESS_NIGHTLY_ROOT",
    show_default=True,
    help="Nightly folder: ROOT/<night>/ runs, ROOT/history/, ROOT/reports/ (env HARNESS_NIGHTLY_ROOT).",
)
nightly_history_option = click.option(
    "--history",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder of the nightly snapshots (default: ROOT/history).",
)
