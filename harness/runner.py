"""The one training loop: any strategy, any teacher, any loader; no per-strategy branches.

`train(recipe, runs_dir)` builds the data, the timm student, the strategy (and the teacher it
needs), the timm optimizer and scheduler, then trains epoch by epoch. After each evaluated epoch
it appends a metrics row and rewrites `metrics.parquet` atomically, and checkpoints. A finished
run is never retrained; an interrupted one resumes from its last checkpoint with `resume=True`
and ends, on CPU, with exactly the metrics of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2

from harness import checkpoint, distributed, pretrained, provenance, strategies, teacher_cache
from harness.data import DataBundle, build_data
from harness.data.preflight import check_data_files
from harness.distributed import World
from harness.errors import DivergedError, HarnessError, InterruptedRun, RunStateError, TeacherError
from harness.features import WithFeatures, feature_shapes, resolve_stages, split_output
from harness.files import write_json, write_text
from harness.metrics import MetricAccumulator, read_metrics, write_metrics
from harness.models import build_student, count_parameters
from harness.recipe import Recipe, RuntimeConfig
from harness.rundir import RunDir
from harness.strategies import StepInputs
from harness.teacher import RecipeTransform, Teacher, load_teacher, resolve_weights

log = logging.getLogger("harness")

METRIC_COLUMNS = (
    "top1",
    "top5",
    "nll",
    "ece",
    "entropy",
    "max_prob",
    "stability",
    "reliability_count",
    "reliability_confidence",
    "reliability_accuracy",
)


@dataclass
class RunOptions:
    """How to execute a recipe (never part of the run's identity)."""

    device: str | None = None  # overrides recipe.runtime.device
    resume: bool = False  # continue an unfinished run from its last checkpoint
    restart: bool = False  # set an existing run aside (renamed, never deleted) and start over
    progress: bool | None = None  # progress bar; None: only on a terminal
    transform: RecipeTransform | None = None  # applied to teacher recipes too (e.g. smoke mode)


@dataclass
class RunResult:
    """What a finished (or already finished) run produced."""

    run_id: str
    run_dir: Path
    status: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: bool = False  # it had completed before


# ------------------------------------------------------------------------------ set-up pieces
def resolve_device(preference: str) -> torch.device:
    """'auto' -> cuda if available else cpu; 'cuda' without a GPU is an error."""
    world = distributed.world_from_env()
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise HarnessError("--device cuda: no CUDA device is available (use --device cpu)")
        return torch.device("cuda", world.local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def configure_runtime(runtime: RuntimeConfig, device: torch.device, seed: int) -> None:
    """Seed every generator and choose deterministic kernels where asked."""
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    torch.backends.cudnn.benchmark = not runtime.deterministic
    torch.backends.cudnn.deterministic = runtime.deterministic
    if runtime.deterministic and device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)


def autocast_dtype(runtime: RuntimeConfig, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA by default; none on CPU unless asked."""
    if runtime.amp == "off" or (runtime.amp == "auto" and device.type != "cuda"):
        return None
    return torch.bfloat16


def use_channels_last(runtime: RuntimeConfig, device: torch.device) -> bool:
    return runtime.channels_last == "on" or (runtime.channels_last == "auto" and device.type == "cuda")


def build_optimizer(recipe: Recipe, model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    """timm optimizer; `sgd` maps to timm's `momentum` (plain) or `nesterov`."""
    cfg = recipe.optim
    name = cfg.name
    if name == "sgd":
        name = "nesterov" if cfg.nesterov else "momentum"
    kwargs = dict(cfg.kwargs)
    if name in ("momentum", "nesterov"):
        kwargs["momentum"] = cfg.momentum
    return create_optimizer_v2(
        model,
        opt=name,
        lr=lr,
        weight_decay=cfg.weight_decay,
        filter_bias_and_bn=not cfg.decay_bias_and_norm,
        **kwargs,
    )


def build_scheduler(recipe: Recipe, optimizer: torch.optim.Optimizer, updates_per_epoch: int):
    """timm scheduler stepped per update (None for a constant learning rate)."""
    s = recipe.schedule
    if s.name == "constant" and s.warmup_epochs == 0:
        return None
    scheduler, _ = create_scheduler_v2(
        optimizer,
        sched="step" if s.name == "constant" else s.name,
        num_epochs=s.epochs,
        decay_epochs=s.decay_epochs if s.name != "constant" else s.epochs + 1,
        decay_milestones=s.milestones,
        decay_rate=s.decay_rate if s.name != "constant" else 1.0,
        min_lr=s.min_lr,
        warmup_lr=s.warmup_lr,
        warmup_epochs=s.warmup_epochs,
        step_on_epochs=False,
        updates_per_epoch=updates_per_epoch,
    )
    return scheduler


# ------------------------------------------------------------------------------ evaluation
@torch.no_grad()
def evaluate(
    model: Callable[[torch.Tensor], torch.Tensor],
    loader: Any,
    num_classes: int,
    n_bins: int,
    amp: torch.dtype | None,
    channels_last: bool,
    device: torch.device,
) -> dict[str, float]:
    """Every metric of `harness.metrics` over the whole split (summed exactly across ranks).

    A module is evaluated in eval mode (BatchNorm running statistics, no dropout) and given back
    in the mode it came in.
    """
    was_training = isinstance(model, torch.nn.Module) and model.training
    if was_training:
        model.eval()
    try:
        acc = MetricAccumulator(num_classes, n_bins, device)
        loader.set_epoch(0)
        for batch in loader:
            x = batch.images.contiguous(memory_format=torch.channels_last) if channels_last else batch.images
            with autocast(device, amp):
                logits = model(x)
            acc.update(logits.float(), batch.targets)
    finally:
        if was_training:
            model.train()
    distributed.all_reduce_sum(acc.tensors())
    return acc.compute()


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


# ------------------------------------------------------------------------------ loss tracking
class LossTracker:
    """Sums of the loss parts over an epoch, kept on the device (no sync per step).

    It also remembers the first step whose loss was not finite, without synchronising.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0
        self.samples = 0  # samples of all ranks, as of the last means()
        self.bad_step = torch.full((), -1, dtype=torch.int64, device=device)

    def add(self, parts: dict[str, torch.Tensor], n: int, step: int) -> None:
        finite = torch.isfinite(parts["loss"].detach())
        self.bad_step = torch.where((self.bad_step < 0) & ~finite, step, self.bad_step)
        for name, value in parts.items():
            v = value.detach().double() * n
            self.sums[name] = self.sums[name] + v if name in self.sums else v
        self.count += n

    def merge(self, all_reduce_sum: Callable[[list[torch.Tensor]], None], keep: bool) -> None:
        """Sum the partial epoch over all ranks into this rank if `keep` (rank 0, which saves the
        checkpoint), else empty it: the epoch's means stay exact, and a resume that hands the
        saved sums to rank 0 alone counts every rank's samples once."""
        names = sorted(self.sums)
        packed = torch.stack(
            [self.sums[k] for k in names]
            + [torch.tensor(float(self.count), dtype=torch.float64, device=self.device)]
        )
        all_reduce_sum([packed])
        if not keep:
            packed.zero_()
        self.sums = dict(zip(names, packed[:-1].unbind(), strict=True))
        self.count = int(packed[-1])

    def first_bad_step(self) -> int | None:
        step = int(self.bad_step.item())
        return None if step < 0 else step

    def state(self) -> dict[str, Any]:
        return {
            "sums": {k: v.cpu() for k, v in self.sums.items()},
            "count": self.count,
            "bad_step": self.bad_step.cpu(),
        }

    def load(self, state: dict[str, Any]) -> None:
        self.sums = {k: v.to(self.device) for k, v in state["sums"].items()}
        self.count = int(state["count"])
        self.bad_step = state["bad_step"].to(self.device)

    def means(self) -> dict[str, float]:
        """Mean of each part over the samples of all ranks."""
        names = sorted(self.sums)
        if not names:
            return {}
        packed = torch.stack(
            [self.sums[k] for k in names]
            + [torch.tensor(float(self.count), dtype=torch.float64, device=self.device)]
        )
        distributed.all_reduce_sum([packed])
        total = float(packed[-1])
        self.samples = int(total)  # of all ranks
        return {k: float(v) / max(total, 1.0) for k, v in zip(names, packed[:-1].tolist(), strict=True)}


# ------------------------------------------------------------------------------ signals
class StopSignal:
    """SIGTERM/SIGINT set a flag; the loop stops at the next step boundary and checkpoints."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        self.signum = signum

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
            # A run nested in another (a teacher trained first) hands the signal to the outer
            # run's handler, which it had replaced: the outer run must stop too.
            outer = getattr(handler, "__self__", None)
            if self.signum is not None and isinstance(outer, StopSignal) and outer.signum is None:
                outer.signum = self.signum

    #: Under DDP the ranks agree on stopping every this many steps (a collective costs a sync).
    AGREE_EVERY = 10

    def requested(self, step: int | None = None) -> bool:
        """Whether to stop now. Alone: the local flag. Under DDP: every rank must stop at the same
        step, so they agree through an all-reduce, at epoch ends (step None) and every
        AGREE_EVERY steps."""
        if not distributed.world_from_env().distributed:
            return self.signum is not None
        if step is not None and step % self.AGREE_EVERY:
            return False
        return distributed.all_reduce_max(int(self.signum is not None)) > 0


# ------------------------------------------------------------------------------ the run
class Trainer:
    """One run of one recipe: build everything, train, evaluate, write, checkpoint."""

    def __init__(self, recipe: Recipe, runs_dir: Path, options: RunOptions, world: World) -> None:
        self.recipe = recipe
        self.runs_dir = Path(runs_dir)
        self.options = options
        self.world = world
        self.run = RunDir(self.runs_dir, recipe.run_id)
        runtime = recipe.runtime
        self.device = resolve_device(options.device or runtime.device)
        self.amp = autocast_dtype(runtime, self.device)
        self.channels_last = use_channels_last(runtime, self.device)
        self.rows: list[dict[str, Any]] = []
        self.rebuild_cache = False  # `harness cache-teacher --rebuild`
        self.step = 0
        self.epoch = 0  # epochs completed

    # -------------------------------------------------------------- building
    def build(self) -> None:
        r = self.recipe
        distributed.init(self.world, self.device)
        configure_runtime(r.runtime, self.device, r.seed)
        self.data: DataBundle = build_data(
            r.data,
            device=self.device,
            seed=r.seed,
            rank=self.world.rank,
            world_size=self.world.world_size,
        )
        torch.manual_seed(r.seed)  # identical initial weights on every rank
        model, origin = build_student(r, self.data.num_classes, self.data.channels)
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        if self.world.distributed and r.model.sync_bn:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model
        self.strategy = strategies.build_from(r.strategy.name, r.strategy.params)
        self.features = self.strategy.features
        # The student's declared features come from its one forward pass (timm's
        # forward_intermediates): DDP and compile wrap that forward.
        net: torch.nn.Module = model
        if self.features.student:
            resolve_stages(model, self.features.student, r.model.arch, "strategy.params", "student")
            net = WithFeatures(model, self.features.student)
        self.train_model: torch.nn.Module = self._wrap(net)
        if r.runtime.compile:
            self.train_model = torch.compile(self.train_model)
        self.teacher: Teacher | None = None
        if self.strategy.needs_teacher:
            arch, kwargs, weights, source = resolve_weights(
                r, self.runs_dir, self._train_teacher, self.options.transform
            )
            self.teacher = load_teacher(
                arch,
                kwargs,
                weights,
                source,
                num_classes=self.data.num_classes,
                in_chans=self.data.channels,
                device=self.device,
                channels_last=self.channels_last,
            )
        self._record_pretrained({"model": origin, "teacher": getattr(self.teacher, "origin", None)})
        self.global_batch = r.data.batch_size * self.world.world_size
        self.lr = r.optim.lr * (self.global_batch / r.optim.lr_base_batch if r.optim.lr_base_batch else 1.0)
        self.setup_strategy()
        self.optimizer = build_optimizer(r, self.model, self.lr)
        for group in self.strategy.param_groups(self.lr, r.optim.weight_decay):
            self.optimizer.add_param_group(group)
        self.scheduler = build_scheduler(r, self.optimizer, len(self.data.train))
        self.setting_key, self.pipeline = r.setting()
        self.teacher_metrics = self._teacher_metrics()
        if self.teacher is not None and r.teacher is not None and r.teacher.cache:
            self.teacher = self._cached_teacher(self.teacher, weights)
        # Training randomness (dropout, drop-path) starts here, apart per rank, whatever the
        # teacher's own training or evaluation did to the global generator.
        torch.manual_seed(r.seed + 1000 * self.world.rank)

    def _record_pretrained(self, origins: dict[str, dict | None]) -> None:
        """Where pretrained weights came from, into the log and provenance.json."""
        origins = {k: v for k, v in origins.items() if v}
        for key, value in origins.items():
            self._say(f"{key} weights: timm pretrained {pretrained.describe(value)}")
        if origins and self.world.is_main and self.run.provenance.exists():
            pretrained.record(self.run.provenance, origins)

    def _wrap(self, module: torch.nn.Module, **ddp: Any) -> torch.nn.Module:
        """`module` for training: under DDP wrapped so its gradients are averaged across ranks."""
        if not self.world.distributed:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids, **ddp)

    def setup_strategy(self) -> None:
        """Give the strategy its shapes (one eval-mode pass where it wants features), let it build
        its modules and state, move them to the device and wrap its trainable part for DDP."""
        r, d = self.recipe, self.data
        sample = torch.zeros(2, d.channels, d.image_size, d.image_size, device=self.device)
        teacher_shapes = {}
        if self.features.teacher:
            assert self.teacher is not None
            t = self.teacher
            resolve_stages(t.model, self.features.teacher, t.arch, "strategy.params", "teacher")
            teacher_shapes = feature_shapes(self.teacher.model, self.features.teacher, sample)
        info = strategies.SetupInfo(
            num_classes=d.num_classes,
            train_size=d.train_size,
            epochs=r.schedule.epochs,
            steps_per_epoch=len(d.train),
            student_shapes=feature_shapes(self.model, self.features.student, sample),
            teacher_shapes=teacher_shapes,
        )
        self.strategy.setup(info)
        self.strategy.to(self.device)
        trainable = any(p.requires_grad for p in self.strategy.parameters())
        # broadcast_buffers off: a strategy's buffers are its own state, reduced where it says
        self.train_strategy: torch.nn.Module = (
            self._wrap(self.strategy, broadcast_buffers=False) if trainable else self.strategy
        )

    def teacher_forward(self, images: torch.Tensor) -> torch.Tensor:
        """The teacher exactly as a training step calls it (memory format, autocast)."""
        assert self.teacher is not None
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.amp):
            return self.teacher(images)

    def _cached_teacher(self, teacher: Teacher, weights: Path) -> Teacher:
        """Open (building it first if missing) the per-view cache of this teacher's soft targets."""
        cfg, loader = self.recipe.teacher, self.data.train
        assert cfg is not None
        if not hasattr(loader, "epoch_views"):
            raise TeacherError("teacher.cache: needs data.backend memory or ffcv (replayable views)")
        meta = teacher_cache.expected_meta(
            teacher_arch=teacher.arch,
            teacher_source=teacher.source,
            weights=weights,
            data_identity={**json.loads(self.pipeline), **(getattr(loader, "identity", dict)())},
            view_seed=loader.view_seed,
            num_samples=self.data.train_size,
            num_classes=self.data.num_classes,
            topk=cfg.cache_topk,
            batch_size=self.recipe.data.batch_size,
        )
        root = self.runs_dir / "teacher-cache"
        folder = Path(cfg.cache_path) if cfg.cache_path else teacher_cache.default_folder(root, meta)
        if self.rebuild_cache and folder.exists() and self.world.is_main:
            teacher_cache.remove(folder)
        distributed.barrier()
        if not (folder / "meta.json").exists():
            if cfg.cache_path and folder.exists() and any(folder.iterdir()):
                raise TeacherError(f"teacher.cache_path: {folder} is not a complete teacher cache")
            self._say(f"building teacher cache {folder} ({self.recipe.schedule.epochs} epochs)")
            teacher_cache.build(
                folder,
                meta,
                teacher,
                loader,
                self.recipe.schedule.epochs,
                self.teacher_metrics,
                forward=self.teacher_forward,
                rank=self.world.rank,
                world_size=self.world.world_size,
            )
            distributed.barrier()
        found = teacher_cache.read_meta(folder)
        teacher_cache.check_meta(folder, found, meta, self.recipe.schedule.epochs)
        self._say(f"teacher soft targets from cache {folder}")
        return teacher_cache.CachedTeacher(
            model=teacher.model,
            arch=teacher.arch,
            source=teacher.source,
            folder=folder,
            num_classes=self.data.num_classes,
            views_of=loader.epoch_views,
            device=self.device,
        )

    def _train_teacher(self, teacher_recipe: Recipe) -> RunDir:
        options = RunOptions(
            device=self.options.device,
            resume=True,
            progress=self.options.progress,
            transform=self.options.transform,
        )
        result = train(teacher_recipe, self.runs_dir, options)
        return RunDir(self.runs_dir, result.run_id)

    def _teacher_metrics(self) -> dict[str, Any]:
        if self.teacher is None:
            return {}
        m = evaluate(
            self.teacher,
            self.data.val,
            self.data.num_classes,
            self.recipe.eval.ece_bins,
            self.amp,
            self.channels_last,
            self.device,
        )
        self._say(
            f"teacher {self.teacher.arch} ({self.teacher.source}): top1 {m['top1']:.2f} "
            f"nll {m['nll']:.3f} ece {m['ece']:.3f} entropy {m['entropy']:.3f}"
        )
        out = {"teacher_arch": self.teacher.arch, "teacher_source": self.teacher.source}
        for key in ("top1", "nll", "ece", "entropy", "max_prob", "stability"):
            out[f"teacher_{key}"] = m[key]
        return out

    # -------------------------------------------------------------- state
    def state(self, step_in_epoch: int, tracker: LossTracker, elapsed: float) -> dict[str, Any]:
        return {
            "run_id": self.recipe.run_id,
            "recipe_hash": self.recipe.hash(),
            "epoch": self.epoch,
            "step": self.step,
            "step_in_epoch": step_in_epoch,
            "elapsed_in_epoch": elapsed,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "tracker": tracker.state(),
            "rng": checkpoint.rng_state(),
            "strategy": self.strategy.state_dict(),
        }

    def save_checkpoint(self, step_in_epoch: int, tracker: LossTracker, elapsed: float) -> None:
        self.strategy.merge_partial_sums(distributed.all_reduce_sum, keep=self.world.is_main)
        if self.world.distributed:
            tracker.merge(distributed.all_reduce_sum, keep=self.world.is_main)
        if self.world.is_main:
            checkpoint.save(self.run.last_checkpoint, self.state(step_in_epoch, tracker, elapsed))
        distributed.barrier()

    def restore(self) -> tuple[int, LossTracker, float]:
        """Load last.pt: returns (step within epoch, partial-epoch loss sums, elapsed seconds)."""
        state = checkpoint.load(self.run.last_checkpoint)
        if state.get("recipe_hash") != self.recipe.hash():
            raise RunStateError(f"{self.run.last_checkpoint}: checkpoint belongs to another recipe")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        checkpoint.set_rng_state(state["rng"])
        if "strategy" in state:
            self.strategy.load_state_dict(state["strategy"])
            if not self.world.is_main:  # the saved partial sums are all ranks' totals, kept on rank 0
                self.strategy.merge_partial_sums(lambda tensors: None, keep=False)
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        tracker = LossTracker(self.device)
        if self.world.is_main:  # the saved loss sums are all ranks' totals, kept on rank 0
            tracker.load(state["tracker"])
        if self.run.metrics.exists():
            self.rows = [r for r in read_metrics(self.run.metrics) if r["epoch"] <= self.epoch]
        return int(state["step_in_epoch"]), tracker, float(state["elapsed_in_epoch"])

    # -------------------------------------------------------------- records
    def _say(self, line: str) -> None:
        if self.world.is_main:
            log.info(line)
            self.run.log(line)

    def _row(
        self,
        metrics: dict[str, float],
        losses: dict[str, float],
        lr: float,
        epoch_time: float,
        eval_time: float,
        samples: int,
    ) -> dict[str, Any]:
        r = self.recipe
        return {
            "run_id": r.run_id,
            "recipe_name": r.name,
            "recipe_hash": r.hash(),
            "config_hash": r.config_hash(),
            "method": r.label,
            "strategy": r.strategy.name,
            "strategy_params": json.dumps(self.strategy.param_dict(), sort_keys=True),
            "dataset": r.data.dataset,
            "arch": r.model.arch,
            "seed": r.seed,
            "setting_key": self.setting_key,
            "data_pipeline": self.pipeline,
            "epochs": r.schedule.epochs,
            "batch_size": r.data.batch_size,
            "global_batch_size": self.global_batch,
            "lr_scaled": self.lr,
            "train_samples": samples,
            "eval_split": self.data.eval_split,
            "eval_samples": metrics["n"],
            "epoch": self.epoch,
            "step": self.step,
            **{k: metrics[k] for k in METRIC_COLUMNS},
            "train_loss": losses.get("loss", math.nan),
            "train_parts": {k: v for k, v in losses.items() if k != "loss"},
            "lr": lr,
            "epoch_time_s": epoch_time,
            "eval_time_s": eval_time,
            "img_per_s": samples / epoch_time if epoch_time > 0 else math.nan,
            **self.teacher_metrics,
            "status": "running",
            "diverged_step": None,
            "device": self.device.type,
            "world_size": self.world.world_size,
            "amp": str(self.amp).replace("torch.", "") if self.amp else "off",
            **provenance.versions(),
            "git_commit": provenance.git_commit(),
        }

    def write_rows(self, status: str, diverged_step: int | None = None) -> None:
        if not self.world.is_main:
            return
        for row in self.rows:
            row["status"] = status
            row["diverged_step"] = diverged_step
        if self.rows:  # no rows read or made: the file on disk (if any) stays as it was
            write_metrics(self.run.metrics, self.rows)

    # -------------------------------------------------------------- training
    def batches(self, start: int) -> Iterator[tuple[int, Any]]:
        loader = self.data.train
        loader.set_epoch(self.epoch)
        for i, batch in enumerate(loader):
            if i >= start:
                yield i, batch

    def step_inputs(self, batch: Any, x: torch.Tensor, i: int, steps: int) -> StepInputs:
        """The student's forward (logits and declared features in one pass), the teacher's
        outputs and where training stands, for batch `i` of `steps` in this epoch."""
        logits, feats = split_output(self.train_model(x))
        t_logits, t_feats = None, {}
        if self.teacher is not None:
            t_logits, t_feats = self.teacher.outputs_for(x, batch, self.epoch, self.features.teacher)
        epochs = self.recipe.schedule.epochs
        return StepInputs(
            student_logits=logits,
            targets=batch.targets,
            teacher_logits=t_logits,
            indices=batch.indices,
            epoch=self.epoch,
            epochs=epochs,
            step=self.step,
            progress=(self.epoch + i / max(steps, 1)) / epochs,
            num_classes=self.data.num_classes,
            student_features=feats,
            teacher_features=t_feats,
        )

    def train_step(self, batch: Any, tracker: LossTracker, i: int = 0, steps: int = 1) -> None:
        x = batch.images
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.amp):
            parts = self.train_strategy(self.step_inputs(batch, x, i, steps))
        self.optimizer.zero_grad(set_to_none=True)
        parts["loss"].backward()
        self.optimizer.step()
        self.step += 1
        if self.scheduler is not None:
            self.scheduler.step_update(num_updates=self.step)
        tracker.add(parts, len(batch), self.step)

    def check_finite(self, tracker: LossTracker) -> None:
        bad = distributed.all_reduce_max(tracker.first_bad_step() or -1)
        if bad >= 0:
            self.write_rows("diverged", bad)
            if self.world.is_main:
                self.run.write_status("diverged", epoch=self.epoch, step=bad, diverged_step=bad)
            raise DivergedError(f"run {self.recipe.run_id} diverged: non-finite loss at step {bad}")

    def fit(self, stop: StopSignal) -> None:
        r = self.recipe
        start, tracker, elapsed = 0, LossTracker(self.device), 0.0
        if self.options.resume and self.run.last_checkpoint.exists():
            start, tracker, elapsed = self.restore()
            if self.world.is_main:  # training restarts now: say so before the epoch ends
                self.run.write_status("running", epoch=self.epoch, step=self.step)
            self._say(f"resuming at epoch {self.epoch + 1}, step {self.step}")
        every = r.checkpoint.every_steps
        from tqdm import tqdm

        # tqdm: disable=None shows the bar on a terminal only
        bar_disabled = (
            True
            if not self.world.is_main or self.options.progress is False
            else (None if self.options.progress is None else False)
        )

        while self.epoch < r.schedule.epochs:
            self.train_model.train()
            self.train_strategy.train()
            t0 = time.perf_counter() - elapsed
            steps = len(self.data.train)
            bar = tqdm(
                total=steps,
                initial=start,
                desc=f"epoch {self.epoch + 1}/{r.schedule.epochs}",
                disable=bar_disabled,
                leave=False,
                dynamic_ncols=True,
            )
            for i, batch in self.batches(start):
                self.train_step(batch, tracker, i, steps)
                bar.update(1)
                if (i + 1) % r.runtime.log_every == 0:
                    self.check_finite(tracker)
                    bar.set_postfix(loss=f"{float(tracker.sums['loss']) / max(tracker.count, 1):.4f}")
                stopping = stop.requested(self.step)
                if i + 1 < steps and (stopping or (every and self.step % every == 0)):
                    self.check_finite(tracker)
                    self.save_checkpoint(i + 1, tracker, time.perf_counter() - t0)
                    if stopping:
                        bar.close()
                        self._interrupted(stop)
            bar.close()
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            epoch_time = time.perf_counter() - t0
            self.strategy.end_epoch(distributed.all_reduce_sum)
            distributed.average_buffers(self.model)  # one set of BN statistics for eval and checkpoints
            self.check_finite(tracker)
            self.epoch += 1
            losses = tracker.means()
            samples = tracker.samples
            lr = self.optimizer.param_groups[0]["lr"]
            if self.epoch % r.eval.every == 0 or self.epoch == r.schedule.epochs:
                t1 = time.perf_counter()
                m = evaluate(
                    self.model,
                    self.data.val,
                    self.data.num_classes,
                    r.eval.ece_bins,
                    self.amp,
                    self.channels_last,
                    self.device,
                )
                self.rows.append(self._row(m, losses, lr, epoch_time, time.perf_counter() - t1, samples))
                self._say(
                    f"epoch {self.epoch}/{r.schedule.epochs} loss {losses.get('loss', math.nan):.4f} "
                    f"top1 {m['top1']:.2f} nll {m['nll']:.4f} ece {m['ece']:.4f} "
                    f"entropy {m['entropy']:.4f} ({epoch_time:.1f} s, {samples / epoch_time:.0f} img/s)"
                )
            done = self.epoch == r.schedule.epochs
            self.write_rows("completed" if done else "running")
            start, tracker, elapsed = 0, LossTracker(self.device), 0.0
            if self.world.is_main:
                if self.epoch in r.checkpoint.save_epochs:
                    checkpoint.save(self.run.epoch_checkpoint(self.epoch), self._weights())
                if done:
                    checkpoint.save(self.run.final_weights, self._weights())
                else:
                    checkpoint.save(self.run.last_checkpoint, self.state(0, tracker, 0.0))
                self.run.write_status("completed" if done else "running", epoch=self.epoch, step=self.step)
                if done:
                    # Only once `completed` is on disk: a kill before this line resumes from
                    # last.pt instead of retraining from scratch over the finished metrics.
                    self.run.last_checkpoint.unlink(missing_ok=True)
            distributed.barrier()
            if not done and stop.requested():
                self._interrupted(stop)

    def _weights(self) -> dict[str, Any]:
        d = self.data
        return {
            "run_id": self.recipe.run_id,
            "epoch": self.epoch,
            "arch": self.recipe.model.arch,
            "num_classes": d.num_classes,
            "in_chans": d.channels,
            "model": self.model.state_dict(),
        }

    def _interrupted(self, stop: StopSignal) -> None:
        name = signal.Signals(stop.signum).name if stop.signum else "a signal on another rank"
        self.write_rows("interrupted")
        if self.world.is_main:
            self.run.write_status("interrupted", epoch=self.epoch, step=self.step, signal=name)
        self._say(f"interrupted by {name} at step {self.step}: checkpoint saved, resume with --resume")
        raise InterruptedRun(f"run {self.recipe.run_id} interrupted by {name}; resume with --resume")

    def start_files(self) -> None:
        if not self.world.is_main:
            return
        write_text(self.run.recipe, self.recipe.to_yaml())
        record = provenance.collect(self.device, self.recipe.hash(), self.world.world_size)
        write_json(self.run.provenance, record)


def _set_aside(run: RunDir) -> Path:
    """Rename a run folder out of the way (nothing is deleted)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = run.root.with_name(f"{run.root.name}.old-{stamp}")
    shutil.move(str(run.root), str(target))
    return target


def train(recipe: Recipe, runs_dir: Path | str, options: RunOptions | None = None) -> RunResult:
    """Train `recipe` into `<runs_dir>/<run_id>/` (or report it done), with resume and signals."""
    options = options or RunOptions()
    runs_dir = Path(runs_dir)
    world = distributed.world_from_env()
    run = RunDir(runs_dir, recipe.run_id)
    status = run.read_status().get("status")
    if status == "completed" and not options.restart:
        log.info("run %s already completed: %s", recipe.run_id, run.root)
        rows = read_metrics(run.metrics) if run.metrics.exists() else []
        return RunResult(recipe.run_id, run.root, "completed", rows, skipped=True)
    fresh = not run.last_checkpoint.exists() and not run.metrics.exists()
    if status is not None and not (options.resume or options.restart or fresh):
        raise RunStateError(
            f"{run.root}: run exists with status {status}; pass --resume to continue it "
            "or --restart to set it aside and start over"
        )
    check_data_files(recipe.data)  # a run that cannot start leaves no folder behind
    if options.restart and run.root.exists() and world.is_main:
        if run.locked_elsewhere():
            raise RunStateError(f"{run.root}: run is locked by another process")
        log.info("previous run set aside as %s", _set_aside(run))
    distributed.barrier()
    lock = run if world.is_main else contextlib.nullcontext()
    with lock, StopSignal() as stop:
        # Another process (a second sweep) may have finished the run between the check above
        # and taking the lock: look again now that the run is ours, so it never trains twice.
        if run.read_status().get("status") == "completed" and not options.restart:
            log.info("run %s already completed: %s", recipe.run_id, run.root)
            rows = read_metrics(run.metrics) if run.metrics.exists() else []
            return RunResult(recipe.run_id, run.root, "completed", rows, skipped=True)
        trainer = Trainer(recipe, runs_dir, options, world)
        log.info("run %s -> %s", recipe.run_id, run.root)
        try:
            trainer.start_files()
            trainer.build()
            trainer._say(
                f"{recipe.model.arch} ({count_parameters(trainer.model) / 1e6:.2f}M params) "
                f"with {trainer.strategy!r} on {trainer.data.describe}, device {trainer.device}"
            )
            if world.is_main and not (options.resume and run.last_checkpoint.exists()):
                run.write_status("running", epoch=0, step=0)
            trainer.fit(stop)
        except (DivergedError, InterruptedRun):
            raise
        except BaseException as exc:
            # A stop signal that surfaced as another error (a teacher run trained inside this
            # one was interrupted and reported as a TeacherError) still means `interrupted`.
            signalled = stop.signum is not None and not isinstance(exc, KeyboardInterrupt)
            # (a full disk may refuse these writes too: the error that stopped the run is the one
            # to report)
            if world.is_main and run.root.exists():
                message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                with contextlib.suppress(OSError):
                    if signalled or isinstance(exc, KeyboardInterrupt):
                        name = signal.Signals(stop.signum).name if signalled else "SIGINT"
                        run.write_status("interrupted", epoch=trainer.epoch, step=trainer.step, signal=name)
                    else:
                        run.write_status(
                            "failed",
                            epoch=trainer.epoch,
                            step=trainer.step,
                            error=f"{type(exc).__name__}: {message}",
                        )
                with contextlib.suppress(Exception):
                    stopped = signalled or isinstance(exc, KeyboardInterrupt)
                    trainer.write_rows("interrupted" if stopped else "failed")
            if signalled and isinstance(exc, Exception):
                raise InterruptedRun(f"run {recipe.run_id} interrupted; resume with --resume") from exc
            raise
        finally:
            if hasattr(trainer, "data"):
                trainer.data.close()
    return RunResult(recipe.run_id, run.root, "completed", trainer.rows)
