"""`harness nightly`: run tonight's benchmark (the command defined in `harness/cli/sweep.py`),
accept a group's changed level, rebuild the history.

`harness nightly SWEEP_FILE [options]` runs the night; `harness nightly accept ...` and
`harness nightly rebuild ...` run those commands instead (the first argument names them, as
`harness sweep status` does). May import `harness.sweeps` (lazily).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from harness.cli import sweep
from harness.cli.options import nightly_history_option as history_option
from harness.cli.options import nightly_root_option as root_option


@click.command(
    epilog="\b\nExamples:\n"
    '  harness nightly accept resnet18_kd-1a2b3c4d --reason "teacher retrained" --root /data/nightly'
)
@click.argument("groups", nargs=-1, required=True)
@click.option("--reason", required=True, help="Why the change is intended (recorded with who and when).")
@root_option
@history_option
def accept(groups: tuple[str, ...], reason: str, root: Path, history: Path | None) -> None:
    """Accept a group's changed level as intended.

    Each of GROUPS' current level becomes its baseline: later nights are judged against the
    nights from its step on. Recorded with who, when and why in HISTORY/accepted.jsonl; the
    report lists it for 30 nights."""
    from harness.sweeps.trend import accept as record
    from harness.sweeps.trend import load_history
    from harness.sweeps.trend_page import write_trend_page

    history = history or root / "history"
    for a in record(history, groups, reason):
        click.echo(f"accepted {a.group} from {a.start} ({a.by}, {a.at}): {a.reason}")
    write_trend_page(load_history(history), root / "reports" / "index.html")


@click.command(epilog="\b\nExamples:\n  harness nightly rebuild --root /data/nightly")
@root_option
@history_option
def rebuild(root: Path, history: Path | None) -> None:
    """Rebuild the history from the run folders.

    Write every night's snapshot again from its run folders (ROOT/<night>/), set apart the
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


class _WithSubcommands(click.Command):
    """A command that hands its arguments to a subcommand when the first one names it
    (`harness nightly accept ...`), and runs itself otherwise (`harness nightly SWEEP_FILE`)."""

    def __init__(self, *args: Any, subcommands: dict[str, click.Command], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.subcommands = subcommands

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        if args and args[0] in self.subcommands:
            name, *rest = args
            return self.subcommands[name].make_context(f"{info_name} {name}", rest, parent=parent, **extra)
        return super().make_context(info_name, args, parent=parent, **extra)


def _nightly(run: click.Command) -> click.Command:
    """`harness nightly`: the night itself (`run`, defined in `harness.cli.sweep`) with `accept`
    and `rebuild` as its first argument's alternatives; its help and examples name them."""
    return _WithSubcommands(
        run.name,
        subcommands={"accept": accept, "rebuild": rebuild},
        context_settings=run.context_settings,
        callback=run.callback,
        params=run.params,
        help=run.help,
        epilog=(run.epilog or "")
        + "\n"
        + "\n".join(
            line for c in (accept, rebuild) for line in (c.epilog or "").splitlines() if line.startswith("  ")
        ),
        short_help=run.short_help,
    )


nightly = _nightly(sweep.nightly)
