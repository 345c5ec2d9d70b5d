"""`harness sweep` and `harness nightly`: their options, the one choice of executor
(`harness.sweeps.sweep.executor_for`), `--status` and `--plan`.

The commands are plain `click.command`s; `harness.cli` registers them on `main`. May import
`harness.sweeps` (lazily, in the commands) and the shared options of `harness.cli.options`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from harness.cli.options import (
    device_option,
    nightly_history_option,
    nightly_root_option,
    runs_dir_option,
    seeds_option,
    set_option,
    track_option,
)
from harness.errors import RecipeError


def executor_options(func: Any) -> Any:
    """The sweep command's executor, scheduling and planning options."""
    opts = [*_sweep_only_options(), *_executor_options()]
    for opt in reversed(opts):
        func = opt(func)
    return func


def nightly_executor_options(func: Any) -> Any:
    """`harness nightly`'s executor options (the night always waits for its runs)."""
    for opt in reversed(_executor_options()):
        func = opt(func)
    return func


def _sweep_only_options() -> list[Any]:
    return [
        click.option(
            "--wait/--no-wait",
            default=True,
            show_default=True,
            help="Slurm: follow the jobs to the end, or submit and return (a leaderboard job follows them).",
        ),
        click.option(
            "--status", "show_status", is_flag=True, help="Show every run's state in RUNS_DIR and exit."
        ),
        click.option(
            "--plan", "show_plan", is_flag=True, help="Print each run's estimated device-hours and exit."
        ),
        click.option(
            "--devices", type=click.IntRange(min=1), default=None, help="--plan: devices of the night."
        ),
        click.option("--window", default=None, metavar="10h", help="--plan: time window, e.g. 10h or 90m."),
        click.option(
            "--history",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="--plan: folder of nightly snapshots (default: runs/nightly/history).",
        ),
    ]


def _executor_options() -> list[Any]:
    return [
        click.option(
            "--executor",
            type=click.Choice(["local", "slurm"]),
            default="local",
            show_default=True,
            help="Train here (local) or submit one Slurm job per run (slurm; resources: the file's slurm:).",
        ),
        click.option(
            "--jobs",
            type=click.IntRange(min=1),
            default=1,
            show_default=True,
            help="Local executor: runs at once (one GPU each, or a share of the CPU cores).",
        ),
        click.option("--partition", default=None, help="Slurm partition (over the file's slurm.partition)."),
        click.option("--account", default=None, help="Slurm account."),
        click.option("--qos", default=None, help="Slurm quality of service."),
        click.option(
            "--time", "time_limit", default=None, metavar="HH:MM:SS", help="Time limit of each run's job."
        ),
        click.option(
            "--nodes",
            default=None,
            callback=_integer_or_text,
            metavar="INTEGER",
            help="Nodes of each run's job (one torchrun per node; over the file's slurm.nodes).",
        ),
        click.option("--gpus-per-run", type=int, default=None, help="GPUs of each run's job."),
        click.option("--cpus-per-run", type=int, default=None, help="CPU cores of each run's job."),
        click.option(
            "--nproc-per-run",
            type=int,
            default=None,
            help="DDP processes of each run on each node (torchrun in its job).",
        ),
        click.option("--mem", default=None, help="Memory of each run's job, e.g. 64G."),
        click.option("--constraint", default=None, help="Slurm node constraint."),
        click.option(
            "--sbatch", "sbatch_opts", multiple=True, metavar="--KEY=VALUE", help="Other sbatch option."
        ),
        click.option("--poll", "poll_s", type=click.FloatRange(min=0.2), default=10.0, hidden=True),
    ]


def _integer_or_text(ctx: click.Context, param: click.Parameter, value: str | None) -> int | str | None:
    """An integer option left as text when it is not one, so that the resources check names it in
    one line (`--nodes: must be an integer, got 'two'`) like a sweep file's key."""
    try:
        return int(value) if value is not None else None
    except ValueError:
        return value


@click.command(
    epilog="\b\nExamples:\n"
    "  harness sweep 'recipes/fashion_mnist/*_ce.yaml' --seeds 0,1 --jobs 2\n"
    "  harness sweep --file sweeps/nightly_gpu.yaml --plan --devices 8 --window 10h\n"
    "  harness sweep status runs"
)
@click.argument("recipes", nargs=-1, metavar="[RECIPES_OR_GLOBS]...")
@click.option(
    "--file",
    "sweep_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Sweep file: recipes, seeds and overrides (format: docs/sweeps.md).",
)
@seeds_option
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
@track_option
@executor_options
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
    track: str | None,
    **executor: object,
) -> None:
    """Run many recipes x seeds.

    Skip completed runs, resume unfinished ones, go on past failures.
    RECIPES_OR_GLOBS are recipe files or globs (quote them: 'recipes/**/*.yaml'). Each run trains
    in its own process; SIGTERM/SIGINT checkpoints the current run and stops the sweep (exit 130).
    Exit status 1 if any run failed or diverged. A JSON summary goes to RUNS_DIR/sweeps/.
    `--executor slurm` submits one Slurm job per run; `harness sweep status RUNS_DIR` (or
    `--status`) shows every run's state; `--plan` estimates the device-hours (docs/sweeps.md).
    """
    from harness.sweeps.executor import SweepOptions

    if leaderboard_out is not None and no_leaderboard:
        raise click.UsageError("--leaderboard-out and --no-leaderboard exclude each other")
    options = SweepOptions(
        device=device, keep_going=keep_going, leaderboard=not no_leaderboard, leaderboard_out=leaderboard_out
    )
    _run_sweep(ctx, recipes, sweep_file, seeds, overrides, runs_dir, options, track=track, **executor)


@click.command(
    epilog="\b\nExamples:\n"
    "  harness nightly sweeps/nightly_gpu.yaml --jobs 8\n"
    "  harness nightly sweeps/example.yaml --root /tmp/nightly --device cpu"
)
@click.argument("sweep_file", type=click.Path(dir_okay=False, path_type=Path))
@nightly_root_option
@click.option("--night", default=None, help="Name of the night (default: today's UTC date, YYYY-MM-DD).")
@nightly_history_option
@click.option(
    "--report",
    "report_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the report here.",
)
@seeds_option
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
    help="Images/s: fraction of the baseline's that may be lost.",
)
@nightly_executor_options
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
    """Run tonight's benchmark; report regressions.

    Run SWEEP_FILE as tonight's benchmark and judge each group against its history: its last
    healthy level (steps fitted over its nights), so a regression stays flagged until fixed or
    accepted (`harness nightly accept GROUP... --reason TEXT`). Exit status 1 when top-1 or
    throughput regressed or a run failed (see the report), 130 when interrupted (run it again the
    same night to resume). `harness nightly rebuild` writes the history again from the nights'
    run folders. Rules: docs/sweeps.md.
    """
    from harness.sweeps.executor import SweepOptions
    from harness.sweeps.nightly import Policy, run_nightly
    from harness.sweeps.spec import parse_seeds

    options = SweepOptions(device=device)
    result = run_nightly(
        sweep_file,
        root,
        night=night,
        history=history,
        report_out=report_out,
        seeds=parse_seeds(seeds) if seeds else None,
        overrides=overrides,
        options=options,
        policy=Policy(k=k, floor=floor, throughput_tolerance=throughput_tolerance),
        executor=_chosen_executor(
            options, executor, lambda: _slurm_resources(sweep_file, executor), wait=True
        ),
    )
    click.echo(result.report)
    if result.report_path is not None:
        click.echo(f"report: {result.report_path}")
    ctx.exit(result.exit_code)


def _run_sweep(
    ctx: click.Context,
    recipes: tuple[str, ...],
    sweep_file: Path | None,
    seeds: str | None,
    overrides: tuple[str, ...],
    runs_dir: Path,
    options: Any,
    **extra: Any,
) -> None:
    """Run the sweep with the chosen executor (or show its status or plan) and exit with its status."""
    from harness.sweeps.plan import plan_sweep
    from harness.sweeps.spec import parse_seeds
    from harness.sweeps.sweep import run_sweep
    from harness.training.trackers import check_installed, parse_track

    if extra["show_status"] or (
        recipes[:1] == ("status",) and len(recipes) <= 2 and not Path("status").exists()
    ):
        from harness.sweeps.status import status_table

        folder = Path(recipes[1]) if recipes[:1] == ("status",) and len(recipes) == 2 else runs_dir
        click.echo(status_table(folder))
        ctx.exit(0)
    resources = (
        _slurm_resources(sweep_file, extra)
        if extra["executor"] == "slurm" and not extra["show_plan"]
        else None
    )
    track = parse_track(extra.get("track"))
    planned = plan_sweep(recipes, sweep_file, parse_seeds(seeds) if seeds else None, overrides, track)
    for run in planned:  # preflight: a tracker asked for and not installed stops the sweep here
        check_installed(run.recipe.tracking if run.recipe is not None else None)
    if extra["show_plan"]:
        from harness.sweeps.estimate import estimate, parse_window, render_plan
        from harness.sweeps.plan import with_teacher_runs

        window = parse_window(extra["window"]) if extra["window"] else None
        history = extra["history"] or Path("runs/nightly/history")
        plan = estimate(with_teacher_runs(planned, runs_dir), history)
        text, fits = render_plan(plan, devices=extra["devices"], window_h=window)
        click.echo(text)
        _refuse_invalid(planned)
        ctx.exit(0 if fits is not False else 1)
    executor = _chosen_executor(options, extra, lambda: resources, wait=extra["wait"])
    summary = run_sweep(planned, runs_dir, options, executor)
    click.echo(summary.render())
    ctx.exit(summary.exit_code)


def _refuse_invalid(planned: list[Any]) -> None:
    """`--plan` of a sweep with a recipe that does not load: after the table, its first error
    (naming the sweep file's entry) as one line, exit status 2, as the sweep itself would stop
    under `--fail-fast`."""
    bad = [run for run in planned if run.error]
    if bad:
        more = f" (and {len(bad) - 1} more invalid runs)" if len(bad) > 1 else ""
        raise RecipeError(f"{bad[0].error}{more}")


def _chosen_executor(options: Any, extra: dict[str, Any], resources: Callable[[], Any], wait: bool) -> Any:
    """The executor the options name (`--executor`, `--jobs`): local slots or one run after
    another, else Slurm with `resources()` (following every job to its end when `wait`)."""
    from harness.sweeps.sweep import executor_for

    if extra["executor"] == "local":
        options.jobs = extra["jobs"]
        return executor_for(options)
    if extra["jobs"] != 1:
        raise RecipeError("--jobs is for the local executor; under Slurm every run is its own job")
    from harness.sweeps.slurm.executor import SlurmOptions

    return executor_for(options, SlurmOptions(resources=resources(), wait=wait, poll_s=extra["poll_s"]))


def _slurm_resources(sweep_file: Path | None, extra: dict[str, Any]) -> Any:
    """The file's `slurm:` resources under the command's options, checked; the scheduler answers."""
    from harness.sweeps.resources import SlurmResources, with_options
    from harness.sweeps.slurm.scheduler import preflight
    from harness.sweeps.spec import load_sweep_file

    base = (load_sweep_file(sweep_file).slurm if sweep_file else None) or SlurmResources()
    resources = with_options(
        base,
        partition=extra["partition"],
        account=extra["account"],
        qos=extra["qos"],
        time=extra["time_limit"],
        nodes=extra["nodes"],
        gpus_per_run=extra["gpus_per_run"],
        cpus_per_run=extra["cpus_per_run"],
        nproc_per_run=extra["nproc_per_run"],
        mem=extra["mem"],
        constraint=extra["constraint"],
        sbatch=extra["sbatch_opts"],
    )
    preflight(resources)
    return resources
