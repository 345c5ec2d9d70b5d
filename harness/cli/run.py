"""One run: `harness run` (train and evaluate a recipe), `harness eval` (a run's saved weights) and
`harness cache-teacher` (the teacher cache a KD recipe's runs share).

Parse, build, call: the work is `harness.training` (`lifecycle.train`, `smoke.run_smoke`,
`evaluation.evaluate_run`) and `harness.teachers.build`. May import: click, `harness.cli.options`
and, inside the commands, the parts they call.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from harness.cli.options import device_option, runs_dir_option, set_option, track_option

if TYPE_CHECKING:
    from harness.config import Recipe

#: the metric columns that `harness eval` leaves out of its JSON (the reliability diagram's bins)
EVAL_HIDDEN = ("reliability_count", "reliability_confidence", "reliability_accuracy")


@click.command(
    epilog="\b\nExamples:\n"
    "  harness run recipes/fashion_mnist/resnet10t_ce.yaml --smoke\n"
    "  harness run recipes/fashion_mnist/resnet10t_ce.yaml --set optim.lr=0.05 --set seed=1"
)
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@runs_dir_option
@set_option("Override a recipe field, e.g. --set optim.lr=0.05 (repeatable, type-checked).")
@device_option("Device (default: the recipe's runtime.device).")
@click.option("--resume", is_flag=True, help="Continue an unfinished run from its last checkpoint.")
@click.option(
    "--restart", is_flag=True, help="Set an existing run aside (renamed, not deleted) and train it again."
)
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
@click.option(
    "--smoke",
    is_flag=True,
    help="Check the recipe end to end in seconds: 2 training steps of batch 2 and an evaluation, "
    "on the CPU (teachers too), on generated data with the recipe's classes and channels at its "
    "resolution capped at 64 px (16 px when every network is a CIFAR variant); in a temporary "
    "runs folder unless --runs-dir is given.",
)
@click.option(
    "--nproc",
    type=click.IntRange(min=1),
    default=1,
    help="Train on N local processes: hands the same command to torchrun (DDP; 1: one DDP rank).",
)
@track_option
def run(
    recipe: Path,
    runs_dir: Path,
    overrides: tuple[str, ...],
    device: str | None,
    resume: bool,
    restart: bool,
    progress: bool | None,
    smoke: bool,
    nproc: int,
    track: str | None,
) -> None:
    """Train and evaluate one RECIPE.

    Metrics go to RUNS_DIR/<run_id>/metrics.parquet.
    Several GPUs or machines: `torchrun --nproc_per_node=N -m harness run RECIPE` (see
    docs/distributed.md); `--nproc N` is the one-machine shorthand.
    """
    from harness.config import load_recipe
    from harness.runtime import distributed
    from harness.training.lifecycle import train
    from harness.training.loop import RunOptions
    from harness.training.trackers import check_installed, parse_track, with_trackers

    if resume and restart:
        raise click.UsageError("--resume and --restart exclude each other")
    loaded = load_recipe(recipe, overrides)  # a bad recipe fails here, before any process starts
    tracking = with_trackers(loaded.tracking, parse_track(track), None)
    if tracking:
        overrides = (*overrides, *tracking)
        loaded = load_recipe(recipe, overrides)
    check_installed(loaded.tracking)  # preflight: before any process or folder
    _check_teacher_run(loaded)  # the teacher run's recipe too, before any run folder is made
    if (nproc > 1 or _given("nproc")) and not distributed.world_from_env().distributed:  # 1: one DDP rank
        distributed.hand_to_torchrun(nproc, sys.argv[1:])
    if smoke:
        from harness.training.smoke import run_smoke

        keep = runs_dir if _given("runs_dir") else None
        result = run_smoke(loaded, keep, device=device, progress=progress, resume=resume, restart=restart)
        where = result.run_dir if keep else "temporary runs folder, removed"
        click.echo(f"smoke {result.status}: {result.run_id} ({_summary(result.rows)}) -> {where}")
        return
    try:
        result = train(
            loaded, runs_dir, RunOptions(device=device, resume=resume, restart=restart, progress=progress)
        )
    finally:
        distributed.shutdown()
    if distributed.world_from_env().is_main:
        click.echo(
            f"{result.status}: {result.run_id} ({_summary(result.rows)}) -> "
            f"{result.run_dir / 'metrics.parquet'}"
        )


def _check_teacher_run(recipe: Recipe) -> None:
    """The recipe of the run named by `teacher.run` must load (what `harness validate` checks):
    a misspelled path is one line naming the field and file, not a failed run folder."""
    if recipe.teacher is not None and recipe.teacher.run is not None:
        from harness.teachers.teacher import teacher_recipe

        teacher_recipe(recipe)


def _given(parameter: str) -> bool:
    """Whether the current command's `parameter` was given on the command line (not a default)."""
    source = click.get_current_context().get_parameter_source(parameter)
    return source == click.core.ParameterSource.COMMANDLINE


def _summary(rows: list[dict]) -> str:
    return f"top1 {rows[-1]['top1']:.2f}%" if rows else "no metrics"


@click.command(
    name="cache-teacher",
    epilog="\b\nExamples:\n"
    "  harness cache-teacher recipes/imagenet_kd/resnet18_kd_resnet34_tv.yaml\n"
    "  harness cache-teacher recipes/fashion_mnist/resnet10t_kd.yaml "
    "--set teacher.cache=true --set data.view_seed=0",
)
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@runs_dir_option
@set_option("Override a recipe field (repeatable); the runs that read the cache need the same values.")
@device_option("Device of the teacher's forward passes (default: the recipe's runtime.device).")
@click.option("--rebuild", is_flag=True, help="Delete the recipe's existing cache and build it again.")
def cache_teacher(
    recipe: Path, runs_dir: Path, overrides: tuple[str, ...], device: str | None, rebuild: bool
) -> None:
    """Build a KD recipe's teacher cache ahead.

    The per-view soft targets of RECIPE's teacher, which its students and seeds read instead of
    running the teacher; only the data, the teacher (its run trained first if missing) and the
    cache are built. A run reads the cache only where its recipe says `teacher.cache: true`
    (RECIPE must say so: this command refuses otherwise), with the same --runs-dir (or
    `teacher.cache_path`), teacher, data and `teacher.cache_topk`, and the same views: those of
    `data.view_seed`, which defaults to the run's seed; fix it to share one cache across seeds.
    """
    from harness.config import load_recipe
    from harness.teachers.build import cache_teacher as build_cache
    from harness.training.lifecycle import teacher_run_trainer
    from harness.training.loop import RunOptions

    train_run = teacher_run_trainer(runs_dir, RunOptions(device=device))
    folder = build_cache(load_recipe(recipe, overrides), runs_dir, train_run, device, rebuild)
    click.echo(f"teacher cache: {folder}")


@click.command(
    name="eval",
    epilog="\b\nExamples (RUN_ID: the run's folder, as `harness run` printed it):\n"
    "  harness eval runs/RUN_ID\n"
    "  harness eval runs/RUN_ID --checkpoint epoch_1 --device cpu",
)
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--checkpoint",
    "which",
    default="final",
    show_default=True,
    help="Which weights: final, last or epoch_<N>.",
)
@device_option("Device to evaluate on.", default="auto")
def evaluate(run_dir: Path, which: str, device: str) -> None:
    """Evaluate a run's saved weights.

    RUN_DIR's weights on its evaluation split; prints the metrics as JSON.
    """
    import json

    from harness.runtime import distributed
    from harness.training.evaluation import evaluate_run

    result = evaluate_run(run_dir, which, device)
    if distributed.world_from_env().is_main:
        click.echo(json.dumps({k: v for k, v in result.items() if k not in EVAL_HIDDEN}, sort_keys=True))
    distributed.shutdown()
