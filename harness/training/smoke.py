"""Smoke runs: any recipe, a few steps on generated data of its shape, on the CPU, in seconds.

`smoke(recipe)` is a pure recipe transform. It keeps what makes the recipe itself (architecture,
strategy and its parameters, teacher, optimizer, schedule shape, augmentation) and shrinks the
rest: the recipe's data set becomes the `synthetic` one with the same number of classes and
channels at a small resolution (`smoke_image_size`), held in memory; two training steps of
batch 2 make one epoch, followed by an evaluation on one image. The run name gains `_smoke`,
so a smoke run never shares a run folder (or a leaderboard row) with a real run.

Passed as `RunOptions(transform=smoke)`, the same transform applies to every teacher run a
recipe trains first (Tf-KD self stage 1, reversed and defective teachers). A defective teacher
taken at epoch N is taken at the smoke run's last epoch instead, and the teacher run keeps that
epoch's checkpoint, so the whole pipeline still runs end to end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

from harness.config import Recipe, from_mapping
from harness.data.datasets import INFOS
from harness.models.build import CIFAR_ARCHS
from harness.models.cifar import STRIDE8_ARCHS
from harness.schema import to_dict
from harness.teachers.teacher import teacher_recipe
from harness.training.lifecycle import RunResult, train
from harness.training.loop import RunOptions

SUFFIX = "_smoke"
EPOCHS = 1
STEPS = 2
BATCH = 2
MAX_IMAGE_SIZE = 64
CIFAR_IMAGE_SIZE = 16


def smoke_image_size(recipe: Recipe) -> int:
    """The recipe's resolution capped at 64 px; 16 px when every network involved is a CIFAR variant.

    ImageNet-stem networks (overall stride 32) get 64 px, a 2x2 last stage: at 32 px DenseNet-121's
    1x1 last stages leave its BatchNorm statistics so far off after two steps that its eval-mode
    logits overflow. The CIFAR variants of `harness.models` (overall stride at most 8) still have a
    2x2 last stage at 16 px, as the KD benchmark networks of `harness.models.cifar` of overall
    stride 8 (RepDistiller's MobileNetV2, stride 16, keeps 32 px). Small data sets keep their own
    size when below these (28 px for Fashion-MNIST).
    """
    native = recipe.data.image_size or INFOS[recipe.data.dataset].image_size
    size = min(native, MAX_IMAGE_SIZE)
    if all(arch in CIFAR_ARCHS or arch in STRIDE8_ARCHS for arch in _archs(recipe)):
        size = min(size, CIFAR_IMAGE_SIZE)
    return size


def _archs(recipe: Recipe) -> list[str]:
    """The student's architecture and its teacher's (read from the teacher recipe for a `run`)."""
    archs = [recipe.model.arch]
    t = recipe.teacher
    if t is not None:
        archs.append(t.arch.split(".")[0] if t.run is None and t.arch else teacher_recipe(recipe).model.arch)
    return archs


def smoke(recipe: Recipe) -> Recipe:
    """The smoke form of `recipe` (validated like any recipe; idempotent)."""
    d = to_dict(recipe)
    info = INFOS[recipe.data.dataset]
    data = d["data"]
    augment = dict(data["augment"], random_resized_crop=False)  # the memory backend crops by padding
    d["data"] = {
        "dataset": "synthetic",
        "backend": "memory",
        "image_size": smoke_image_size(recipe),
        "num_classes": data["num_classes"] or info.num_classes,
        "channels": data["channels"] or info.channels,
        "synthetic_size": STEPS * BATCH,  # the validation split gets a quarter of it: 1 image
        "batch_size": BATCH,
        "eval_batch_size": BATCH,
        "num_workers": 0,
        "drop_last": False,
        "augment": augment,
    }
    d["schedule"] = dict(d["schedule"], epochs=EPOCHS, warmup_epochs=0)
    d["eval"] = dict(d["eval"], every=1)
    saved = d["checkpoint"]["save_epochs"]
    d["checkpoint"] = {"save_epochs": [EPOCHS] if saved else [], "every_steps": 0}
    d["runtime"] = dict(d["runtime"], device="cpu", compile=False, log_every=1)
    if d.get("teacher") and d["teacher"].get("epoch") is not None:
        d["teacher"]["epoch"] = min(d["teacher"]["epoch"], EPOCHS)
    _no_downloads(d)
    name = recipe.name or "recipe"
    d["name"] = name if name.endswith(SUFFIX) else name + SUFFIX
    source = f"{recipe.source} (smoke)" if recipe.source else "smoke"
    out = from_mapping(d, d["name"], source)
    out.source = recipe.source  # teacher paths stay relative to the original file
    return out


def _no_downloads(d: dict) -> None:
    """timm pretrained weights stand in as random ones of the smoke data's shape: a student
    starts from random weights, a pretrained teacher loads a random-weights file (seed 0) through
    timm's overlay as its real file would load. A smoke run needs no network and no cache."""
    model = d["model"]
    if model.get("pretrained") or model.get("pretrained_file"):
        model["pretrained"], model["pretrained_file"] = False, None
    teacher = d.get("teacher")
    if (
        teacher
        and teacher.get("run") is None
        and (teacher.get("pretrained") or teacher.get("pretrained_file"))
    ):
        data = d["data"]
        teacher["pretrained_file"] = str(
            random_weights(teacher["arch"], data["num_classes"], data["channels"])
        )


def random_weights(arch: str, num_classes: int, channels: int) -> Path:
    """A state_dict file of `arch` at seed 0 (kept in the temporary folder, made once)."""
    from harness.models.build import build_model

    base = arch.split(".")[0]
    path = Path(tempfile.gettempdir()) / "harness-smoke-weights" / f"{base}-{num_classes}-{channels}.pt"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with torch.random.fork_rng():
            torch.manual_seed(0)
            state = build_model(base, num_classes, channels).state_dict()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)
    return path


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one CPU thread, then restore the previous count.

    Smoke-sized steps (batch 2, 16-64 px) gain nothing from more threads, and on a busy machine
    several threads per op wait on one another: a DenseNet-121 smoke run measured 22 s of CPU
    with 2 threads against 1.1 s with one (on 2 cores shared with other jobs).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_smoke(
    recipe: Recipe,
    runs_dir: Path | None = None,
    *,
    device: str | None = None,
    progress: bool | None = False,
    resume: bool = False,
    restart: bool = False,
) -> RunResult:
    """Train `smoke(recipe)` (and its teachers, smoke-transformed too) and return the RunResult.

    Without `runs_dir` the runs go to a temporary folder, removed afterwards (the result's
    `run_dir` then names a folder that no longer exists).
    """
    options = RunOptions(device=device, progress=progress, resume=resume, restart=restart, transform=smoke)
    with one_thread():
        if runs_dir is not None:
            return train(smoke(recipe), runs_dir, options)
        tmp = Path(tempfile.mkdtemp(prefix="harness-smoke-"))
        try:
            return train(smoke(recipe), tmp, options)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
