"""Teachers: a frozen model whose logits on the student's exact augmented view feed the loss.

A recipe's `teacher` names either
* `weights`: a local state_dict file for a timm `arch`,
* `pretrained` (and/or `pretrained_file`): timm's pretrained `arch` (`harness.models.pretrained`), from
  the Hugging Face cache or a local file, loaded through timm with its classifier kept (it must
  predict the data's classes), or
* `run`: another recipe, whose run in the same runs folder supplies the weights: its final
  weights, or with `epoch: N` its checkpoint at epoch N (a defective teacher). When that run is
  missing, harness trains it first (`train_if_missing`) and says so. This gives Tf-KD self
  (stage 1 is the student architecture's own baseline), reversed KD and defective KD as plain
  recipes.

`build_teacher` resolves and loads the recipe's teacher, `measure_teacher` evaluates it (the
`teacher_*` metric columns) and `view_forward` runs it exactly as a training step does; the
per-view cache of its soft targets is `harness.teachers.cache`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from harness.config import Recipe, load_recipe, recipe_dir
from harness.data import DataBundle
from harness.errors import HarnessError, InterruptedRun, RecipeError, RunBusyError, TeacherError
from harness.metrics.columns import TEACHER_METRICS
from harness.metrics.evaluate import evaluate
from harness.models import pretrained
from harness.models.build import build_model
from harness.models.features import forward_with_features
from harness.runtime.runtime import Runtime
from harness.runtime.signals import StopSignal
from harness.store import checkpoint
from harness.store.rundir import RunDir
from harness.strategies.registry import Stage

log = logging.getLogger("harness")

RecipeTransform = Callable[[Recipe], Recipe]
TrainRun = Callable[[Recipe], RunDir]


@dataclass
class Teacher:
    """A frozen network in eval mode; calling it returns logits without building a graph."""

    model: torch.nn.Module
    arch: str
    source: str
    origin: dict | None = None  # timm pretrained weights: tag, file, sha256

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def logits_for(self, images: torch.Tensor, batch: Any, epoch: int) -> torch.Tensor:
        """Soft-target logits for a training batch: the live teacher on the student's exact view."""
        return self(images)

    @torch.no_grad()
    def outputs_for(
        self, images: torch.Tensor, batch: Any, epoch: int, stages: Sequence[Stage] = ()
    ) -> tuple[torch.Tensor, dict[Stage, torch.Tensor]]:
        """(logits, {stage: features}) for a training batch; features from the same forward."""
        if not stages:
            return self.logits_for(images, batch, epoch), {}
        return forward_with_features(self.model, images, stages)


def teacher_recipe(recipe: Recipe, transform: RecipeTransform | None = None) -> Recipe:
    """The recipe of the teacher run named by `recipe.teacher.run`, with its seed resolved and,
    where the student holds out part of the same data set (`data.holdout`), the same held-out
    split: the teacher never trains on the images the student is selected on."""
    cfg = recipe.teacher
    assert cfg is not None and cfg.run is not None
    path = Path(cfg.run)
    if not path.is_absolute():
        beside = recipe_dir(recipe) / path
        path = beside if beside.exists() or not path.exists() else path
    try:
        teacher = load_recipe(path)
    except RecipeError as exc:
        raise RecipeError(f"teacher.run: {exc}") from None
    seed = recipe.seed if cfg.seed is None else cfg.seed
    source = teacher.source
    teacher = replace(teacher, seed=seed)
    teacher.source = source
    if recipe.data.holdout is not None and teacher.data.dataset == recipe.data.dataset:
        # a teacher trained on the student's held-out images would leak them into its soft targets
        teacher.data = replace(teacher.data, holdout=recipe.data.holdout)
    if cfg.epoch is not None and cfg.epoch not in teacher.checkpoint.save_epochs:
        if cfg.epoch > teacher.schedule.epochs:
            raise TeacherError(
                f"teacher.epoch: {cfg.epoch} is beyond the teacher run's {teacher.schedule.epochs} epochs"
            )
        teacher.checkpoint.save_epochs = sorted({*teacher.checkpoint.save_epochs, cfg.epoch})
    if transform is not None:
        teacher = transform(teacher)
    return teacher


def train_or_wait(run: RunDir, t_recipe: Recipe, train_run: TrainRun, poll: float = 2.0) -> RunDir:
    """Train the teacher run (or resume it); while another process holds its lock (a concurrent
    run or sweep slot training the same teacher for its own student), wait for that process to
    let it go, then take what it left: the completed run, or the unfinished one to resume. A stop
    signal while waiting ends the wait with `InterruptedRun`."""
    while True:
        try:
            return train_run(t_recipe)
        except RunBusyError:
            log.info("teacher run %s is being trained by another process: waiting for it", t_recipe.run_id)
            while run.locked_elsewhere():
                if StopSignal.pending():
                    raise InterruptedRun(f"stopped while waiting for teacher run {t_recipe.run_id}") from None
                time.sleep(poll)


def resolve_weights(
    recipe: Recipe,
    runs_dir: Path,
    train_run: TrainRun | None,
    transform: RecipeTransform | None = None,
) -> tuple[str, dict, Path, str]:
    """(arch, timm kwargs, weights file, source description) of the recipe's teacher."""
    cfg = recipe.teacher
    assert cfg is not None
    if cfg.pretrained or cfg.pretrained_file is not None:
        assert cfg.arch is not None
        tag, file = pretrained_weights(recipe)
        return tag, dict(cfg.kwargs), file, tag
    if cfg.weights is not None:
        path = Path(cfg.weights)
        if not path.is_absolute() and not path.exists():
            path = recipe_dir(recipe) / path
        if not path.exists():
            raise TeacherError(f"teacher.weights: {cfg.weights}: file not found")
        return cfg.arch, dict(cfg.kwargs), path, str(cfg.weights)
    t_recipe = teacher_recipe(recipe, transform)
    run = RunDir(runs_dir, t_recipe.run_id)
    status = run.status
    if status != "completed":
        if not cfg.train_if_missing or train_run is None:
            state = f"its status is {status}" if status else "it has not run"
            option = " or set teacher.train_if_missing" if train_run is not None else ""
            raise TeacherError(
                f"teacher.run: teacher run {t_recipe.run_id} is not complete ({state}); "
                f"run `harness run {t_recipe.source}` first{option}"
            )
        what = "missing" if status is None else f"{status}, resuming it"
        log.info("teacher run %s is %s: training it first", t_recipe.run_id, what)
        try:
            run = train_or_wait(run, t_recipe, train_run)
        except HarnessError as exc:
            raise TeacherError(f"teacher run {t_recipe.run_id} failed: {exc}") from None
    if cfg.epoch is None:
        return t_recipe.model.arch, t_recipe.model.kwargs, run.final_weights, t_recipe.run_id
    path = run.epoch_checkpoint(cfg.epoch)
    if not path.exists():
        raise TeacherError(
            f"teacher.epoch: run {t_recipe.run_id} kept no checkpoint at epoch {cfg.epoch} "
            f"(kept: {run.saved_epochs() or 'none'}); add {cfg.epoch} to its checkpoint.save_epochs "
            "and rerun it with --restart"
        )
    return t_recipe.model.arch, t_recipe.model.kwargs, path, f"{t_recipe.run_id}@epoch{cfg.epoch}"


def pretrained_weights(recipe: Recipe) -> tuple[str, Path]:
    """(timm tag, weights file) of a pretrained teacher: its local file, or the file in the
    Hugging Face cache (timm fetches it there first where the hub is reachable)."""
    cfg = recipe.teacher
    assert cfg is not None and cfg.arch is not None
    tag = pretrained.resolve_tag(cfg.arch, cfg.pretrained or True, "teacher.pretrained")
    if cfg.pretrained_file is not None:
        file = pretrained.local_file(cfg.pretrained_file, recipe_dir(recipe))
        if not file.is_file():
            raise TeacherError(f"teacher.pretrained_file: {cfg.pretrained_file}: file not found")
        return tag, file
    found = pretrained.hub_file(tag)
    if found is None:  # into the cache, timm's normal way (one line when offline)
        pretrained.create(tag, num_classes=1000, in_chans=3, kwargs={}, file=None, path="teacher.pretrained")
        found = pretrained.hub_file(tag)
    if found is None:
        raise TeacherError(f"teacher.pretrained: {tag}: no weights file in the Hugging Face cache")
    return tag, found


def check_shapes(
    model: torch.nn.Module,
    state: dict[str, torch.Tensor],
    weights: Path,
    arch: str,
    num_classes: int,
    in_chans: int,
) -> None:
    """Name the first shape mismatch: the classifier (class count), the stem (channels) or the arch."""
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    classifier, first_conv = cfg.get("classifier") or "", cfg.get("first_conv") or ""
    expected = model.state_dict()
    for key, value in state.items():
        if key not in expected or expected[key].shape == value.shape:
            continue
        got, want = tuple(value.shape), tuple(expected[key].shape)
        if classifier and key.startswith(classifier + "."):
            raise TeacherError(
                f"{weights}: teacher {arch} has {got[0]} classes, the student's data has {num_classes} "
                f"({key} has shape {got})"
            )
        if first_conv and key.startswith(first_conv + ".") and got[1:2] != want[1:2]:
            raise TeacherError(
                f"{weights}: teacher {arch} takes {got[1]} input channels, the data has {in_chans}"
            )
        raise TeacherError(
            f"{weights}: weights do not match teacher arch {arch} ({key} has shape {got}, "
            f"the arch expects {want})"
        )


def load_teacher(
    arch: str,
    kwargs: dict,
    weights: Path,
    source: str,
    *,
    num_classes: int,
    in_chans: int,
    device: torch.device,
    channels_last: bool = False,
) -> Teacher:
    """Build `arch`, load `weights` strictly, freeze it; a class-count mismatch is a clear error.

    A pretrained tag (`resnet50.a1_in1k`) loads its file through timm's overlay, classifier kept.
    """
    origin = None
    if "." in arch:
        try:
            model = pretrained.create(
                arch,
                num_classes=num_classes,
                in_chans=in_chans,
                kwargs=kwargs,
                file=weights,
                path="teacher.pretrained",
                keep_classifier=True,
            )
        except RecipeError as exc:
            raise TeacherError(str(exc)) from None
        origin = pretrained.origin(arch, weights)
    else:
        state = checkpoint.model_state(weights)
        model = build_model(arch, num_classes, in_chans, kwargs)
        check_shapes(model, state, weights, arch, num_classes, in_chans)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise TeacherError(f"{weights}: weights do not match teacher arch {arch} ({first})") from None
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    # a pretrained tag names the weights (the source); the architecture is what precedes it
    return Teacher(model=model, arch=arch.split(".")[0], source=source, origin=origin)


def build_teacher(
    recipe: Recipe,
    runs_dir: Path,
    train_run: TrainRun | None,
    transform: RecipeTransform | None,
    data: DataBundle,
    runtime: Runtime,
) -> tuple[Teacher, Path]:
    """(the recipe's frozen teacher on the runtime's device and memory format, its weights file);
    a teacher run that is missing is trained first with `train_run` (None: it must have
    completed)."""
    arch, kwargs, weights, source = resolve_weights(recipe, runs_dir, train_run, transform)
    teacher = load_teacher(
        arch,
        kwargs,
        weights,
        source,
        num_classes=data.num_classes,
        in_chans=data.channels,
        device=runtime.device,
        channels_last=runtime.channels_last,
    )
    return teacher, weights


def view_forward(teacher: Teacher, images: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    """The teacher exactly as a training step calls it (memory format, autocast)."""
    images = runtime.prepare(images)
    with runtime.autocast():
        return teacher(images)


def measure_teacher(
    teacher: Teacher,
    data: DataBundle,
    n_bins: int,
    runtime: Runtime,
    say: Callable[[str], None],
) -> tuple[dict[str, Any], dict[str, list[torch.Tensor]]]:
    """The teacher's columns of a student's metrics (its arch, source, metrics on the evaluation
    split and top-1 on the held-out split, said in the run's log), and its logits on each split
    it went through ("val", "holdout"), batch by batch: the reference the student's fidelity
    measures compare with every epoch (float32 on the run's device: 40 bytes per image with 10
    classes, 4 kB with 1,000)."""
    references: dict[str, list[torch.Tensor]] = {"val": []}
    m = evaluate(teacher, data.val, data.num_classes, n_bins, runtime, keep=references["val"])
    held_out = None
    if data.holdout is not None:
        references["holdout"] = []
        held_out = evaluate(
            teacher, data.holdout, data.num_classes, n_bins, runtime, keep=references["holdout"]
        )
    say(
        f"teacher {teacher.arch} ({teacher.source}): top1 {m['top1']:.2f} "
        f"nll {m['nll']:.3f} ece {m['ece']:.3f} entropy {m['entropy']:.3f}"
        + ("" if held_out is None else f"; held out: top1 {held_out['top1']:.2f}")
    )
    out = {"teacher_arch": teacher.arch, "teacher_source": teacher.source}
    out["teacher_holdout_top1"] = None if held_out is None else held_out["top1"]
    return out | {column: m[key] for column, key in TEACHER_METRICS.items()}, references
