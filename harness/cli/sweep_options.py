"""`harness sweep` options beyond the plan: the executor, its resources, --jobs, --plan, --status.

`harness.cli.sweep` adds these options with `@executor_options` and hands over to `main`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from harness.errors import RecipeError


def executor_options(func: Any) -> Any:
    """The sweep command's executor, scheduling and planning options."""
    opts = [*_sweep_only(), *_executor()]
    for opt in reversed(opts):
        func = opt(func)
    return func


def nightly_executor_options(func: Any) -> Any:
    """`harness nightly`'s executor options (the night always waits for its runs)."""
    for opt in reversed(_executor()):
        func = opt(func)
    return func


def _sweep_only() -> list[Any]:
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


def _executor() -> list[Any]:
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


def nightly_options(options: Any, sweep_file: Path, extra: dict[str, Any]) -> Any:
    """`harness nightly`'s SweepOptions with the chosen executor (Slurm: follow every job to its end)."""
    if extra["executor"] == "local":
        options.jobs = extra["jobs"]
        return options
    if extra["jobs"] != 1:
        raise RecipeError("--jobs is for the local executor; under Slurm every run is its own job")
    from harness.sweeps.slurm import SlurmOptions, run_slurm_sweep

    slurm = SlurmOptions(resources=_slurm_resources(sweep_file, extra), wait=True, poll_s=extra["poll_s"])
    options.executor = lambda runs, runs_dir, opts: run_slurm_sweep(runs, runs_dir, opts, slurm)
    return options


def main(
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
    from harness.sweeps.sweep import parse_seeds, plan_sweep, run_sweep

    if extra["show_status"] or (
        recipes[:1] == ("status",) and len(recipes) <= 2 and not Path("status").exists()
    ):
        from harness.sweeps.slurm import status_table

        folder = Path(recipes[1]) if recipes[:1] == ("status",) and len(recipes) == 2 else runs_dir
        click.echo(status_table(folder))
        ctx.exit(0)
    resources = (
        _slurm_resources(sweep_file, extra)
        if extra["executor"] == "slurm" and not extra["show_plan"]
        else None
    )
    planned = plan_sweep(recipes, sweep_file, parse_seeds(seeds) if seeds else None, overrides)
    if extra["show_plan"]:
        from harness.sweeps.estimate import estimate, parse_window, render_plan

        window = parse_window(extra["window"]) if extra["window"] else None
        history = extra["history"] or Path("runs/nightly/history")
        plan = estimate(planned, history)
        text, fits = render_plan(plan, devices=extra["devices"], window_h=window)
        click.echo(text)
        ctx.exit(0 if fits is not False else 1)
    if extra["executor"] == "local":
        if extra["jobs"] > 1:
            options.jobs = extra["jobs"]
        summary = run_sweep(planned, runs_dir, options)
    else:
        if extra["jobs"] != 1:
            raise RecipeError("--jobs is for the local executor; under Slurm every run is its own job")
        from harness.sweeps.slurm import SlurmOptions, run_slurm_sweep

        assert resources is not None
        slurm = SlurmOptions(resources=resources, wait=extra["wait"], poll_s=extra["poll_s"])
        summary = run_slurm_sweep(planned, runs_dir, options, slurm)
    click.echo(summary.render())
    ctx.exit(summary.exit_code)


def _slurm_resources(sweep_file: Path | None, extra: dict[str, Any]) -> Any:
    """The file's `slurm:` resources under the command's options, checked; the scheduler answers."""
    from harness.sweeps.resources import SlurmResources, with_options
    from harness.sweeps.slurm import preflight
    from harness.sweeps.sweep import load_sweep_file

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


__all__ = ["executor_options", "main"]
