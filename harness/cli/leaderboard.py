"""`harness leaderboard`: regenerate the leaderboard from the runs folder (read only).

Parse, call, print: the work is `harness.leaderboard.generate`. May import: click,
`harness.cli.options` and, inside the command, `harness.leaderboard`.
"""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli.options import runs_dir_option_with


@click.command(
    epilog="\b\nExamples:\n  harness leaderboard\n  harness leaderboard --runs-dir runs --out /tmp/board"
)
@runs_dir_option_with(
    "Folder holding one sub-folder per run (env HARNESS_RUNS_DIR); read only.", folder_only=False
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
    """Compare each strategy with its LS baseline.

    Every strategy against its matched label-smoothing and CE baselines over seeds, read from
    the metrics.parquet files of RUNS_DIR.
    Files in --out are replaced only where this command wrote them before (its marker file
    .harness-leaderboard, or a leaderboard.md of its own from before markers) or with --force.
    """
    from harness.leaderboard import generate

    out = out if out is not None else runs_dir / "leaderboard"
    click.echo(generate(runs_dir, out, force=force).summary())
