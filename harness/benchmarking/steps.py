"""Training-step cost: the harness loop against a bare timm loop, and each strategy against CE.

Every case trains the same student on batches from the same in-memory loader, so the data cost
is identical and the ratios isolate what the case adds:

* `bare`: a hand-written loop, model(x) -> F.cross_entropy -> backward -> SGD step;
* `ce`, `label_smoothing`, `tfkd_reg`: the harness's own `Trainer.train_step`;
* `ce_tracked`: `ce` with TensorBoard, MLflow (a folder store) and W&B (offline) on, every
  step logged (`runtime.log_every` 1, the worst case; the default logs every 50th): against `ce`,
  what the experiment trackers cost (left out where one of them is not installed);
* `kd_live`: KD with a live teacher forward per step (the teacher is a larger timm model);
* `kd_cached`: the same KD reading the teacher's soft targets from the per-view cache;
* one case per other registered strategy (its `example` parameters): those with a teacher run the
  same live teacher as `kd_live` and are reported against it, the teacher-free ones against `ce`.

Reported: median seconds per step over interleaved rounds, images/second, and the ratio to the
row's `baseline` (and `harness_overhead` = ce / bare).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from timm.optim import create_optimizer_v2

from harness import strategies
from harness.benchmarking.timing import CLOCKS, Timing, interleaved
from harness.config import from_mapping
from harness.errors import HarnessError
from harness.models.build import build_model
from harness.store.rundir import RunDir
from harness.training.loop import RunOptions, Trainer
from harness.training.trackers import Trackers, check_installed
from harness.training.tracking import LossTracker

STRATEGIES: dict[str, dict[str, Any]] = {
    "ce": {"name": "ce"},
    "label_smoothing": {"name": "label_smoothing", "params": {"epsilon": 0.1}},
    "tfkd_reg": {"name": "tfkd_reg", "params": {"alpha": 0.1, "temperature": 20.0, "multiplier": 100.0}},
    "kd_live": {"name": "kd", "params": {"alpha": 0.9, "temperature": 4.0}},
    "kd_cached": {"name": "kd", "params": {"alpha": 0.9, "temperature": 4.0}},
}


@dataclass
class StepConfig:
    """What the step benchmark trains."""

    arch: str = "resnet18"
    teacher_arch: str = "resnet34"
    batch_size: int = 128
    image_size: int = 32
    channels: int = 3
    num_classes: int = 10
    rounds: int = 5
    steps: int = 4
    device: str = "cpu"
    methods: bool = True  # a row per other registered strategy
    clock: str = "wall"  # a key of timing.CLOCKS


def method_cases() -> dict[str, tuple[dict[str, Any], bool]]:
    """Registered strategies the fixed cases above do not cover: {name: (strategy, needs_teacher)}."""
    covered = {s["name"] for s in STRATEGIES.values()}
    out = {}
    for name in strategies.available():
        cls = strategies.get(name)
        if name not in covered:
            out[name] = ({"name": name, "params": dict(cls.example)}, cls.needs_teacher)
    return out


def base_recipe(cfg: StepConfig, strategy: dict[str, Any], teacher: dict[str, Any] | None) -> dict:
    recipe = {
        "seed": 0,
        "model": {"arch": cfg.arch},
        "data": {
            "dataset": "synthetic",
            "num_classes": cfg.num_classes,
            "channels": cfg.channels,
            "image_size": cfg.image_size,
            "synthetic_size": cfg.batch_size * 8,
            "batch_size": cfg.batch_size,
            "augment": {"crop_padding": 4, "hflip": True},
        },
        "strategy": strategy,
        "optim": {"name": "sgd", "lr": 0.01},
        "schedule": {"epochs": 1, "name": "cosine"},
        "runtime": {"device": cfg.device},
    }
    if teacher is not None:
        recipe["teacher"] = teacher
    return recipe


def harness_case(recipe: dict, runs_dir: Path) -> Callable[[], None]:
    """One harness training step per call (the runner's own train_step)."""
    trainer = Trainer(from_mapping(recipe, "bench"), runs_dir, RunOptions(progress=False))
    trainer.build()
    return step_caller(trainer)


def step_caller(trainer: Trainer) -> Callable[[], None]:
    """A call per training step of the built `trainer` (its epochs cycled without end)."""
    trainer.train_model.train()
    steps = trainer.training_steps(LossTracker(trainer.device))

    def step() -> None:
        next(steps)

    return step


def tracked_case(recipe: dict, runs_dir: Path) -> tuple[Callable[[], None], Trackers] | None:
    """A harness training step per call with all three trackers logging every step (None when
    one of them is not installed); the trackers, for the caller to close."""
    recipe = {
        **recipe,
        "runtime": {**recipe["runtime"], "log_every": 1},
        "tracking": {
            "trackers": ["tensorboard", "mlflow", "wandb"],
            "mlflow": {"tracking_uri": str(runs_dir / "mlruns")},
            "wandb": {"mode": "offline"},
        },
    }
    resolved = from_mapping(recipe, "bench_tracked")
    try:
        check_installed(resolved.tracking)
    except HarnessError:
        return None
    trainer = Trainer(resolved, runs_dir, RunOptions(progress=False))
    trainer.build()
    run = RunDir(runs_dir, resolved.run_id)
    run.root.mkdir(parents=True, exist_ok=True)
    trainer.trackers = Trackers.open(resolved, run, runs_dir, is_main=True)
    trainer.train_model.train()
    tracker = LossTracker(trainer.device)
    batches = trainer.endless_batches()

    def step() -> None:
        epoch, batch = next(batches)
        trainer.track_step(trainer.train_step(batch, tracker, epoch=epoch))

    return step, trainer.trackers


def bare_model(
    arch: str, num_classes: int, channels: int, device: torch.device
) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """A fresh timm model in train mode and the optimizer the benchmark recipes ask for (sgd,
    lr 0.01, momentum 0.9, weight decay 5e-4), from timm's factory as a hand-written timm loop
    would build it: a ratio against it then measures the harness's loop alone."""
    model = build_model(arch, num_classes, channels).to(device)
    model.train()
    opt = create_optimizer_v2(model, opt="momentum", lr=0.01, momentum=0.9, weight_decay=5e-4)
    return model, opt


def bare_update(
    model: torch.nn.Module, opt: torch.optim.Optimizer, images: torch.Tensor, targets: torch.Tensor
) -> None:
    """One step of a bare timm loop: model(x) -> F.cross_entropy -> backward -> optimizer step."""
    loss = F.cross_entropy(model(images), targets)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def bare_case(recipe: dict, runs_dir: Path) -> Callable[[], None]:
    """A hand-written timm loop on batches from the same loader."""
    trainer = Trainer(from_mapping(recipe, "bench"), runs_dir, RunOptions(progress=False))
    trainer.build()  # only for its data; the model below is a fresh, plain one
    data = trainer.data
    model, opt = bare_model(recipe["model"]["arch"], data.num_classes, data.channels, trainer.device)
    batches = trainer.endless_batches()

    def step() -> None:
        _, batch = next(batches)
        bare_update(model, opt, batch.images, batch.targets)

    return step


def run(cfg: StepConfig) -> list[dict[str, Any]]:
    """Measure every case; rows with median step time, img/s and ratios."""
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="harness-bench-") as tmp:
        tmp_path = Path(tmp)
        weights = tmp_path / "teacher.pt"
        torch.save(build_model(cfg.teacher_arch, cfg.num_classes, cfg.channels).state_dict(), weights)
        teacher = {"arch": cfg.teacher_arch, "weights": str(weights)}
        cases: dict[str, Callable[[], None]] = {
            "bare": bare_case(base_recipe(cfg, STRATEGIES["ce"], None), tmp_path)
        }
        for name, strategy in STRATEGIES.items():
            with_teacher = {"kd_live": teacher, "kd_cached": {**teacher, "cache": True}}.get(name)
            recipe = base_recipe(cfg, strategy, with_teacher)
            if name == "kd_cached":
                recipe["data"]["view_seed"] = 0
                recipe["schedule"]["epochs"] = 2 + (cfg.rounds * cfg.steps) // 8  # views cached for all
            cases[name] = harness_case(recipe, tmp_path)
        tracked = tracked_case(base_recipe(cfg, STRATEGIES["ce"], None), tmp_path)
        if tracked is not None:
            cases["ce_tracked"] = tracked[0]
        for name, (strategy, needs_teacher) in (method_cases() if cfg.methods else {}).items():
            cases[name] = harness_case(
                base_recipe(cfg, strategy, teacher if needs_teacher else None), tmp_path
            )
        timings = interleaved(
            cases,
            rounds=cfg.rounds,
            work=cfg.steps,
            warmup=1,
            device=torch.device(cfg.device),
            clock=CLOCKS[cfg.clock],
        )
        if tracked is not None:
            tracked[1].close(ok=True)
    return rows(cfg, timings)


def rows(cfg: StepConfig, timings: dict[str, Timing]) -> list[dict[str, Any]]:
    ce = timings["ce"].median
    bare = timings["bare"].median
    with_teacher = {name for name, (_, needs) in method_cases().items() if needs}
    out = []
    for name, t in timings.items():
        baseline = "kd_live" if name in with_teacher else "ce"
        live = name.startswith("kd") or name in with_teacher
        out.append(
            {
                "suite": "steps",
                "case": name,
                "median_s": t.median,
                "img_per_s": cfg.batch_size / t.median,
                "ratio": t.median / timings[baseline].median,
                "baseline": baseline,
                "spread": t.spread,
                "rounds": len(t.rounds),
                "detail": f"{cfg.arch} b{cfg.batch_size} {cfg.channels}x{cfg.image_size}px"
                + (f", teacher {cfg.teacher_arch}" if live else "")
                + (", TensorBoard + MLflow + W&B offline, every step logged" if name == "ce_tracked" else ""),
            }
        )
    out.append(
        {
            "suite": "steps",
            "case": "harness_overhead",
            "median_s": ce - bare,
            "img_per_s": float("nan"),
            "ratio": ce / bare,
            "baseline": "bare",
            "spread": float("nan"),
            "rounds": len(timings["ce"].rounds),
            "detail": "harness ce step / bare timm loop step",
        }
    )
    return out
