"""`harness nightly`: run tonight's benchmark (`harness nightly SWEEP_FILE`, the command defined
in `harness/cli/sweep.py`), accept a group's changed level, rebuild the history.

`nightly` is a group whose default command is `run`: `harness nightly SWEEP_FILE [options]` and
`harness nightly run SWEEP_FILE [options]` are the same. May import `harness.sweeps` (lazily).
"""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli import sweep


class _DefaultRun(click.Group):
    """A group that runs `run` when its first argument names none of its commands."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_DefaultRun)
def nightly() -> None:
    """Tonight's benchmark: `harness nightly SWEEP_FILE [options]` (the `run` command) runs the
    sweep and judges each group against its history; `accept` declares a group's changed level
    intended; `rebuild` writes the history again from the nights' run folders.
    Rules: docs/sweeps.md."""


nightly.add_command(sweep.nightly, "run")

root_option = click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default="runs/nightly",
    envvar="HARNESS_NIGHTLY_ROOT",
    show_default=True,
    help="Nightly folder: ROOT/<night>/ runs, ROOT/history/, ROOT/reports/ (env HARNESS_NIGHTLY_ROOT).",
)
history_option = click.option(
    "--history",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder of the nightly snapshots (default: ROOT/history).",
)


@nightly.command()
@click.argument("groups", nargs=-1, required=True)
@click.option("--reason", required=True, help="Why the change is intended (recorded with who and when).")
@root_option
@history_option
def accept(groups: tuple[str, ...], reason: str, root: Path, history: Path | None) -> None:
    """Accept each of GROUPS' current level: later nights are judged against the nights from its
    step on. Recorded in HISTORY/accepted.jsonl; the report lists it for 30 nights."""
    from harness.sweeps.trend import accept as record
    from harness.sweeps.trend import load_history
    from harness.sweeps.trend_page import write_trend_page

    history = history or root / "history"
    for a in record(history, groups, reason):
        click.echo(f"accepted {a.group} from {a.start} ({a.by}, {a.at}): {a.reason}")
    write_trend_page(load_history(history), root / "reports" / "index.html")


@nightly.command()
@root_option
@history_option
def rebuild(root: Path, history: Path | None) -> None:
    """Write every night's snapshot again from its run folders (ROOT/<night>/), set apart the
    unreadable ones, and write the trend page ROOT/reports/index.html."""
    from harness.errors import HarnessError
    from harness.sweeps.nightly import rebuild_history
    from harness.sweeps.trend import load_history
    from harness.sweeps.trend_page import write_trend_page

    history = history or root / "history"
    lines = rebuild_history(root, history)
    if not lines:
        raise HarnessError(f"{root}: no night folder with a completed run")
    past = load_history(history)
    lines += [f"set apart: {line}" for line in past.set_apart]
    page = root / "reports" / "index.html"
    write_trend_page(past, page)
    click.echo("\n".join([*lines, f"trend page: {page}"]))
