"""`harness tune`: equal-budget tuning of a tuning file's base recipes with Optuna
(`harness.sweeps.tune`; format in docs/tuning.md), through the sweep's executors.

May import `harness.sweeps` (lazily, in the command) and the shared options of `harness.cli.options`
and `harness.cli.sweep` (the executor options).
"""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli.options import device_option, runs_dir_option, track_option
from harness.cli.sweep import _chosen_executor, _slurm_resources, nightly_executor_options


@click.command(
    epilog="\b\nExamples:\n"
    "  harness tune --file sweeps/tuning/fashion_mnist.yaml --jobs 2\n"
    "  harness tune --file sweeps/tuning/fashion_mnist.yaml --study-name again --storage sqlite:///tuning.db"
)
@click.option(
    "--file",
    "tuning_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Tuning file: base recipes, search space, trials, sampler, objective (docs/tuning.md).",
)
@runs_dir_option
@device_option("Device of every trial.")
@click.option("--study-name", default=None, help="Name of the study (default: the tuning file's name).")
@click.option(
    "--storage",
    default=None,
    metavar="URL",
    help="Optuna storage URL, e.g. sqlite:///t.db (default: RUNS_DIR/tuning/<study>/journal.log).",
)
@click.option(
    "--final-seeds",
    type=click.IntRange(min=0),
    default=None,
    help="Retrain each method's best configuration on K new seeds (over the file's final_seeds).",
)
@click.option("--no-leaderboard", is_flag=True, help="Do not regenerate the leaderboard.")
@track_option
@click.option(
    "--plan", "show_plan", is_flag=True, help="Print the estimated device-hours of every trial and exit."
)
@click.option(
    "--history",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs/nightly/history"),
    show_default=True,
    help="--plan: folder of nightly snapshots (measured throughputs).",
)
@nightly_executor_options  # --executor, --jobs (trials in flight), the Slurm resources
@click.pass_context
def tune(
    ctx: click.Context,
    tuning_file: Path,
    runs_dir: Path,
    device: str | None,
    study_name: str | None,
    storage: str | None,
    final_seeds: int | None,
    no_leaderboard: bool,
    track: str | None,
    show_plan: bool,
    history: Path,
    **executor: object,
) -> None:
    """Tune every method on an equal trial budget.

    Select on the held-out split, never the test split. One Optuna study per base recipe;
    every trial is an ordinary run (own folder, resumable, skipped when complete). Killed, run
    the same command again: the study continues and no trial trains twice. Writes
    RUNS_DIR/tuning/<study>/trials.parquet (one row per trial) and, with final seeds,
    final.json. Exit 130 when interrupted, 2 for a bad tuning file, 74 for storage I/O.
    """
    from harness.sweeps.executor import SweepOptions
    from harness.sweeps.tune import TuneOptions, plan_cost
    from harness.sweeps.tune import tune as run_tune
    from harness.training.trackers import parse_track

    if show_plan:
        click.echo(plan_cost(tuning_file, history, final_seeds))
        ctx.exit(0)

    options = SweepOptions(device=device, leaderboard=not no_leaderboard)
    opts = TuneOptions(sweep=options, study_name=study_name, storage=storage, final_seeds=final_seeds)
    opts.track = parse_track(track)
    options.jobs = int(executor["jobs"])  # type: ignore[call-overload]
    if executor["executor"] == "slurm":
        # every trial is its own Slurm job; --jobs is how many are in flight
        jobs, executor["jobs"] = executor["jobs"], 1
        opts.executor = _chosen_executor(
            options, executor, lambda: _slurm_resources(None, executor), wait=True
        )
        options.jobs = int(jobs)  # type: ignore[call-overload]
    result = run_tune(tuning_file, runs_dir, opts)
    click.echo(result.render())
    ctx.exit(result.exit_code)
