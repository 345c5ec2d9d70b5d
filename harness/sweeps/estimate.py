"""`harness sweep --plan`: each run's estimated device-hours, the total, and whether it fits a window.

A run's estimate is `epochs x (train images + eval images / 3) / rate`, the eval pass costing about
a third of a training step per image, with `rate` the training images/s of one device:

1. **history**, where the run's group (its recipe without the seed, `harness nightly`'s snapshots)
   has a measured throughput: the newest snapshot's `img_per_s_mean` (`ROOT/history/*.parquet`),
   the mean over its seeds of `leaderboard.stats.throughput`, the leaderboard's images/s;
2. **rates**, else: a per-architecture rate from `harness/sweeps/rates.csv` (data set,
   architecture, images/s, device, source); a run with a live teacher adds the teacher's
   forward pass (a third of its training step);
3. otherwise the run is listed as unknown, and the plan cannot say whether the sweep fits.

With `--devices N --window 10h` the plan packs the runs longest first onto N devices (each run on
one device) and says whether the last device finishes within the window.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

from harness.errors import RecipeError
from harness.sweeps.plan import PlannedRun

#: Images of the full splits (a recipe's train_subset / val_subset replace them).
TRAIN_IMAGES = {"fashion_mnist": 60_000, "cifar10": 50_000, "cifar100": 50_000, "imagenet": 1_281_167}
EVAL_IMAGES = {"fashion_mnist": 10_000, "cifar10": 10_000, "cifar100": 10_000, "imagenet": 50_000}
RATES_FILE = Path(__file__).with_name("rates.csv")


@dataclass
class RunPlan:
    run_id: str
    epochs: int
    images: int
    rate: float | None
    source: str
    teacher_of: str | None = None  # a teacher run the sweep trains for this student

    @property
    def label(self) -> str:
        """The run id, marked when it is a teacher run."""
        return self.run_id if self.teacher_of is None else f"{self.run_id} (teacher)"

    @property
    def hours(self) -> float | None:
        return None if self.rate is None else self.images / self.rate / 3600


def parse_window(text: str) -> float:
    """`10h`, `90m`, `1.5h`, `36000s` -> hours."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([hms]?)\s*", text)
    if not m:
        raise RecipeError(f"--window {text}: expected a duration like 10h, 90m or 3600s")
    value, unit = float(m.group(1)), m.group(2) or "h"
    return value / {"h": 1, "m": 60, "s": 3600}[unit]


def read_rates(path: Path = RATES_FILE) -> dict[tuple[str, str], tuple[float, str]]:
    """(dataset, arch) -> (images/s, where the figure comes from)."""
    if not path.exists():
        return {}
    with path.open(newline="") as fh:
        rows = [r for r in csv.DictReader(line for line in fh if not line.startswith("#"))]
    return {(r["dataset"], r["arch"]): (float(r["img_per_s"]), f"{r['device']}, {r['source']}") for r in rows}


def read_history(history: Path) -> dict[str, tuple[float, str]]:
    """group -> (measured images/s, night) from the newest snapshot that has the group."""
    found: dict[str, tuple[float, str]] = {}
    if not history.is_dir():
        return found
    from harness.sweeps.nightly import read_snapshot

    for path in sorted(history.glob("*.parquet")):  # night names sort in time order: newest wins
        try:
            rows = read_snapshot(path)
        except Exception:  # an unreadable snapshot is no history
            continue
        for row in rows:
            rate = row.get("img_per_s_mean")
            if isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0:
                found[str(row["group"])] = (float(rate), f"history {path.stem}")
    return found


def estimate(runs: list[PlannedRun], history: Path, rates_file: Path = RATES_FILE) -> list[RunPlan]:
    """Each run's images to process and the rate it is expected to process them at."""
    measured = read_history(history)
    rates = read_rates(rates_file)
    plans = []
    for run in runs:
        recipe = run.recipe
        if recipe is None:
            plans.append(RunPlan(run.run_id, 0, 0, None, f"invalid: {run.error}"))
            continue
        data = recipe.data
        train = data.train_subset or TRAIN_IMAGES.get(data.dataset, 0)
        evals = data.val_subset or EVAL_IMAGES.get(data.dataset, 0)
        epochs = recipe.schedule.epochs
        images = int(epochs * (train + evals / 3))
        if run.group in measured:
            rate, source = measured[run.group]
        elif (data.dataset, recipe.model.arch) in rates:
            rate, source = rates[(data.dataset, recipe.model.arch)]
            teacher = _teacher_arch(run)
            if teacher is not None:
                if (data.dataset, teacher) not in rates:
                    plans.append(RunPlan(run.run_id, epochs, images, None, f"no rate for teacher {teacher}"))
                    continue
                # one teacher forward costs about a third of its training step
                rate = 1 / (1 / rate + 1 / (3 * rates[(data.dataset, teacher)][0]))
                source += f" + teacher {teacher}"
        else:
            plans.append(
                RunPlan(
                    run.run_id, epochs, images, None, f"no rate for {recipe.model.arch} on {data.dataset}"
                )
            )
            continue
        plans.append(RunPlan(run.run_id, epochs, images, rate, source))
    for run, plan in zip(runs, plans, strict=True):
        plan.teacher_of = run.teacher_of
    return plans


def _teacher_arch(run: PlannedRun) -> str | None:
    recipe = run.recipe
    if recipe is None or recipe.teacher is None:
        return None
    if recipe.teacher.run is not None:
        from harness.teachers.teacher import teacher_recipe

        return teacher_recipe(recipe).model.arch
    return getattr(recipe.teacher, "arch", None)


def pack(hours: list[float], devices: int) -> float:
    """Longest-first onto the least-loaded device: the makespan in hours."""
    loads = [0.0] * devices
    for h in sorted(hours, reverse=True):
        i = loads.index(min(loads))
        loads[i] += h
    return max(loads) if loads else 0.0


def render_plan(plans: list[RunPlan], devices: int | None, window_h: float | None) -> tuple[str, bool | None]:
    """The table, the total and the verdict; the second value is whether it fits (None: unknown)."""
    width = max((len(p.label) for p in plans), default=3)
    lines = [f"{'run':<{width}}  {'epochs':>6}  {'img/s':>8}  {'device-h':>8}  rate from"]
    for p in plans:
        rate = f"{p.rate:8.0f}" if p.rate is not None else f"{'?':>8}"
        hours = f"{p.hours:8.2f}" if p.hours is not None else f"{'?':>8}"
        lines.append(f"{p.label:<{width}}  {p.epochs:>6}  {rate}  {hours}  {p.source}")
    known = [p.hours for p in plans if p.hours is not None]
    unknown = len(plans) - len(known)
    total = sum(known)
    teachers = sum(p.teacher_of is not None for p in plans)
    lines.append(
        f"total: {total:.1f} device-hours over {len(plans)} runs"
        + (f" ({unknown} unknown)" if unknown else "")
        + (f", {teachers} of them teacher runs" if teachers else "")
    )
    fits: bool | None = None
    if devices is not None and window_h is not None:
        span = pack(known, devices)
        if unknown:
            lines.append(
                f"{devices} devices x {window_h:g} h: cannot tell, {unknown} runs have no rate "
                f"(known runs alone take {span:.1f} h)"
            )
        else:
            fits = span <= window_h
            verdict = "fits" if fits else "does NOT fit"
            lines.append(
                f"{devices} devices x {window_h:g} h: {verdict} (longest device {span:.1f} h, "
                f"{total / (devices * window_h):.0%} of the device-hours)"
            )
    return "\n".join(lines), fits
