"""Recipes: the schema of a run, its validation and the identities derived from it.

A recipe pairs a timm architecture with a training strategy and a data loader. Validation is
strict: an unknown key, a wrong type or an out-of-range value fails with one line naming the
dotted path (`optim.lr: must be > 0, got -1`); an unknown architecture or strategy lists close
matches. Reading the YAML, `extends:` and `--set` overrides are `harness.config.loading`'s.

A recipe owns its identities, and every other module asks it for them: `run_id` (name, seed and
`hash()` of the identity: the run's folder), `config_hash()` (the identity without the seed),
`group_key()` (the runs of a sweep that differ only in seed) and `setting()` (the leaderboard's
matched setting and the data pipeline it compares).

May import: `harness.errors`, `harness.schema`, `harness.models.names` (the architectures harness
registers with timm); inside the checks that need them, the strategy registry, `harness.models.pretrained`
(pretrained tags, weights' hashes) and `harness.models.features` (a feature strategy's stages).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from harness.errors import RecipeError
from harness.models.names import HARNESS_ARCHS
from harness.schema import SEED_MAX, between, each, fail, field, ge, gt, suggest, to_dict

Backend = Literal["memory", "torch", "ffcv"]

#: data fields that change how data is loaded, never what a run learns: not part of its identity
LOADER_ONLY = ("num_workers", "eval_batch_size", "loader_timeout_s")
#: data fields outside the leaderboard's setting: the seeds of the views, the batch, the backend
# and where the files are (the same data pipeline whatever they are)
SETTING_FREE_DATA = ("view_seed", "batch_size", "drop_last", "backend", "train_path", "val_path", "root")
#: data fields left out of the identity and setting while unset: recipes (and runs) from before
# they existed keep their run ids and settings
UNSET_OMITTED = ("holdout", "normalize")
#: `data.augment` fields left out of the identity and setting while unset (the same reason)
AUGMENT_UNSET_OMITTED = ("rotation_interpolation",)


#: longest recipe name in UTF-8 bytes: `<name>-s<seed>-<hash8>.old-<stamp>` (a run set aside)
#: must stay under the 255 bytes a folder name may take on Linux and macOS file systems
NAME_MAX_BYTES = 150
#: characters a name may not hold: path separators, and those Windows and SMB shares refuse
NAME_FORBIDDEN = '/\\<>:"|?*'


def safe_name(name: str | None) -> str | None:
    """A recipe name becomes a folder name (`<name>-s<seed>-<hash8>`): 1 to 150 bytes of UTF-8,
    no leading dot, no path separator, none of `<>:"|?*`, no control character."""
    if name is None:
        return None
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return f"must be valid text (UTF-8), got {name!r}"
    if not name or name.startswith(".") or size > NAME_MAX_BYTES:
        return (
            f"must be 1 to {NAME_MAX_BYTES} bytes of UTF-8 (a folder name), not starting with '.', "
            f"got {size} bytes: {name[:40]!r}{'...' if len(name) > 40 else ''}"
        )
    bad = sorted({c for c in name if c in NAME_FORBIDDEN or ord(c) < 32 or 127 <= ord(c) < 160})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        return f'must not contain path separators, control characters or any of <>:"|?*, got {shown}'
    return None


@dataclass(kw_only=True)
class ModelConfig:
    """The student network: a timm architecture (or one registered by harness)."""

    arch: str = field(doc="timm model name, e.g. resnet18")
    kwargs: dict[str, Any] = field({}, doc="extra keyword arguments for timm.create_model")
    sync_bn: bool = field(False, doc="convert BatchNorm to SyncBatchNorm under DDP")
    pretrained: bool | str = field(
        False, doc="start from timm's pretrained weights: true (default tag) or a tag, e.g. a1_in1k"
    )
    pretrained_file: str | None = field(None, doc="those weights from a local file (timm's overlay)")

    def validate(self, path: str) -> None:
        check_arch(self.arch, f"{path}.arch" if path else "arch")
        check_pretrained(self, f"{path}.pretrained" if path else "pretrained")
        for reserved in ("num_classes", "in_chans", "pretrained", "pretrained_cfg_overlay"):
            if reserved in self.kwargs:
                fail(f"{path}.kwargs.{reserved}", "set by harness from the data (remove it)")


@dataclass(kw_only=True)
class AugmentConfig:
    """Training-view augmentation.

    The memory backend applies it all on the device; torch and ffcv crop and flip in the loader
    and rotate on the device.
    """

    crop_padding: int = field(0, check=ge(0), doc="random crop after zero padding (pixels)")
    hflip: bool = field(False, doc="random horizontal flip")
    rotation_degrees: float = field(0.0, check=between(0, 180), doc="random rotation range")
    rotation_interpolation: Literal["bilinear", "nearest"] | None = field(
        None,
        doc="rotation resampling (unset: bilinear); nearest is torchvision RandomRotation's default",
    )
    random_resized_crop: bool = field(False, doc="ImageNet-style crop (torch/ffcv backends)")
    scale_min: float = field(0.08, check=between(0, 1, lo_open=True), doc="RRC minimum scale")


@dataclass(kw_only=True)
class ProgressiveConfig:
    """Progressive resizing as in ffcv-imagenet: low resolution early, high resolution late.

    Epochs count from 0 (ffcv-imagenet's `start_ramp` / `end_ramp`): up to `start_epoch` the
    training crops are `min_res`, from `end_epoch` on `max_res`, in between the linear
    interpolation rounded to a multiple of `step`. Evaluation keeps its own resolution.
    """

    min_res: int = field(check=gt(0), doc="training resolution up to start_epoch")
    max_res: int = field(check=gt(0), doc="training resolution from end_epoch on")
    start_epoch: int = field(check=ge(0), doc="last epoch (from 0) at min_res")
    end_epoch: int = field(check=ge(1), doc="first epoch (from 0) at max_res")
    step: int = field(32, check=ge(1), doc="ramp resolutions are rounded to multiples of this")

    def validate(self, path: str) -> None:
        if self.max_res < self.min_res:
            fail(f"{path}.max_res", f"must be >= min_res ({self.min_res}), got {self.max_res}")
        if self.end_epoch <= self.start_epoch:
            fail(f"{path}.end_epoch", f"must be > start_epoch ({self.start_epoch}), got {self.end_epoch}")


@dataclass(kw_only=True)
class NormalizeConfig:
    """Per-channel statistics the images are normalised with, (x - mean) / std on [0, 1] pixels,
    where a recipe follows code whose constants differ from the data set's defaults (e.g.
    RepDistiller's CIFAR-100 (0.5071, 0.4867, 0.4408) / (0.2675, 0.2565, 0.2761))."""

    mean: list[float] = field(doc="per-channel mean of [0, 1] pixels")
    std: list[float] = field(doc="per-channel standard deviation of [0, 1] pixels")

    def validate(self, path: str) -> None:
        if len(self.mean) != len(self.std):
            fail(f"{path}.std", f"must have as many values as mean ({len(self.mean)}), got {len(self.std)}")
        if not self.mean:
            fail(f"{path}.mean", "must have at least one value")
        if any(s <= 0 for s in self.std):
            fail(f"{path}.std", f"every value must be > 0, got {self.std}")


@dataclass(kw_only=True)
class HoldoutConfig:
    """A held-out validation split carved out of the training split: seeded, class-stratified,
    never trained on, evaluated every epoch beside the evaluation split (`holdout_*` columns).

    Give `fraction` of the whole training split or its `size` in samples (one of the two). It is
    drawn before `train_subset`, from the whole split, so the subset never holds a held-out image.
    """

    fraction: float | None = field(
        None, check=between(0, 1, lo_open=True, hi_open=True), doc="share of the training split held out"
    )
    size: int | None = field(None, check=ge(1), doc="number of training samples held out")
    seed: int = field(0, check=ge(0), int_max=SEED_MAX, doc="seed of the held-out draw")

    def validate(self, path: str) -> None:
        if (self.fraction is None) == (self.size is None):
            fail(path, "give exactly one of fraction or size")


@dataclass(kw_only=True)
class DataConfig:
    """Which data, through which loader, in which batches."""

    dataset: Literal["fashion_mnist", "cifar10", "cifar100", "imagenet", "synthetic"] = field(
        doc="data set name"
    )
    backend: Backend = field("memory", doc="memory | torch | ffcv")
    root: str | None = field(None, doc="data folder (default: the embedded Fashion-MNIST)")
    train_path: str | None = field(None, doc="ffcv: train .beton")
    val_path: str | None = field(None, doc="ffcv: validation .beton")
    image_size: int | None = field(None, check=gt(0), doc="train resolution (default: native)")
    val_image_size: int | None = field(None, check=gt(0), doc="eval resolution (default: same)")
    num_classes: int | None = field(None, check=ge(2), doc="classes (synthetic/imagefolder)")
    channels: int | None = field(None, check=between(1, 4), doc="image channels (synthetic)")
    synthetic_size: int = field(512, check=ge(1), doc="synthetic: training samples")
    train_subset: int | None = field(None, check=ge(1), doc="use a fixed subset of the train split")
    val_subset: int | None = field(None, check=ge(1), doc="use a fixed subset of the val split")
    holdout: HoldoutConfig | None = field(
        None, doc="held-out validation split of the training split (selection and tuning read it)"
    )
    subset_seed: int = field(
        0, check=ge(0), int_max=SEED_MAX, doc="seed of the fixed subsets (same for every run)"
    )
    view_seed: int | None = field(
        None,
        check=ge(0),
        int_max=SEED_MAX,
        doc="seed of the augmented views (default: the run's seed); fix it to share a teacher cache",
    )
    batch_size: int = field(128, check=ge(1), doc="per-rank training batch size")
    eval_batch_size: int = field(512, check=ge(1), doc="per-rank evaluation batch size")
    num_workers: int = field(
        0, check=ge(0), doc="torch: worker processes (0: main process); ffcv: threads (0: one per core)"
    )
    drop_last: bool = field(False, doc="drop the last partial training batch")
    augment: AugmentConfig = field(AugmentConfig, doc="training augmentation")
    normalize: NormalizeConfig | None = field(
        None, doc="normalisation statistics (default: the data set's, harness.data.datasets.INFOS)"
    )
    val_crop_ratio: float = field(
        224 / 256,
        check=between(0, 1, lo_open=True),
        doc="imagenet eval: centre crop side / shorter image side, then resized (224/256)",
    )
    progressive: ProgressiveConfig | None = field(None, doc="progressive training resolution")
    loader_timeout_s: float = field(
        600.0, check=gt(0), doc="torch/ffcv: a batch late by this many seconds is an error (not a hang)"
    )

    def validate(self, path: str) -> None:
        base = f"{path}." if path else ""
        if self.backend == "ffcv":
            for name in ("train_path", "val_path"):
                if getattr(self, name) is None:
                    fail(f"{base}{name}", "required with backend ffcv (a .beton file)")
        if self.dataset == "imagenet" and self.backend == "memory":
            fail(f"{base}backend", "imagenet does not fit in memory; use ffcv or torch")
        if self.dataset == "imagenet" and self.backend == "torch" and self.root is None:
            fail(f"{base}root", "required with backend torch for imagenet (a folder holding train/ and val/)")
        if self.progressive is not None:
            if self.backend == "memory":
                fail(f"{base}progressive", "needs backend torch or ffcv (memory keeps one resolution)")
            if self.dataset != "imagenet" and not self.augment.random_resized_crop:
                fail(f"{base}progressive", "resizes decoded crops: needs imagenet or random_resized_crop")
            if self.image_size is not None:
                fail(f"{base}image_size", "give either image_size or progressive, not both")


@dataclass(kw_only=True)
class StrategyConfig:
    """The training strategy (see `harness.strategies`) and its parameters."""

    name: str = field(doc="registered strategy name: ce, label_smoothing, kd, tfkd_reg, ...")
    params: dict[str, Any] = field({}, doc="the strategy's parameters (checked by the strategy)")

    def validate(self, path: str) -> None:
        from harness import strategies  # fills the registry

        # the name and the Params only: the strategy is built once, by the run that trains it
        strategies.registry.check(self.name, self.params, path or "strategy")


@dataclass(kw_only=True)
class TeacherConfig:
    """Where the teacher comes from: a weights file, or a harness run (at its end or epoch N)."""

    run: str | None = field(None, doc="recipe of the teacher run (relative to this recipe)")
    seed: int | None = field(
        None, check=ge(0), int_max=SEED_MAX, doc="seed of the teacher run (default: the student's seed)"
    )
    epoch: int | None = field(None, check=ge(1), doc="use the run's checkpoint at this epoch")
    train_if_missing: bool = field(True, doc="train the teacher run first when it is missing")
    arch: str | None = field(None, doc="timm architecture (with `weights`)")
    kwargs: dict[str, Any] = field({}, doc="timm.create_model kwargs (with `weights`)")
    weights: str | None = field(None, doc="local state_dict file of `arch`")
    pretrained: bool | str = field(False, doc="timm's pretrained `arch`: true (default tag) or a tag")
    pretrained_file: str | None = field(None, doc="pretrained `arch` weights from a local file")
    cache: bool = field(False, doc="read soft targets from a per-view teacher cache (memory, ffcv)")
    cache_topk: int | None = field(None, check=ge(1), doc="cache the top-k logits only (default: all K)")
    cache_path: str | None = field(None, doc="cache folder (default: <runs-dir>/teacher-cache/...)")

    def validate(self, path: str) -> None:
        timm_weights = bool(self.pretrained) or self.pretrained_file is not None
        if sum((self.run is not None, self.weights is not None, timm_weights)) != 1:
            fail(path, "give exactly one of `run` (a teacher recipe), `weights` (a file) or `pretrained`")
        if timm_weights:
            if self.arch is None:
                fail(f"{path}.arch", "required with `pretrained`")
            check_arch(self.arch, f"{path}.arch")
            check_pretrained(self, f"{path}.pretrained")
            if self.epoch is not None:
                fail(f"{path}.epoch", "only for a teacher `run`")
        elif self.weights is not None:
            if self.arch is None:
                fail(f"{path}.arch", "required with `weights`")
            check_arch(self.arch, f"{path}.arch")
            if self.epoch is not None:
                fail(f"{path}.epoch", "only for a teacher `run`")
        elif self.arch is not None or self.kwargs:
            fail(f"{path}.arch", "comes from the teacher run's recipe; remove it")


@dataclass(kw_only=True)
class OptimConfig:
    """Optimizer, built by timm's `create_optimizer_v2`."""

    name: str = field("sgd", doc="timm optimizer name (sgd, adamw, lamb, ...)")
    lr: float = field(0.1, check=gt(0), doc="learning rate (before batch scaling)")
    lr_base_batch: int | None = field(
        None, check=ge(1), doc="if set, lr scales by global_batch / lr_base_batch"
    )
    momentum: float = field(0.9, check=between(0, 1, hi_open=True), doc="SGD momentum")
    nesterov: bool = field(False, doc="Nesterov momentum (sgd)")
    weight_decay: float = field(5e-4, check=ge(0), doc="weight decay")
    decay_bias_and_norm: bool = field(True, doc="apply weight decay to biases and norm layers too")
    kwargs: dict[str, Any] = field({}, doc="extra optimizer keyword arguments")

    def validate(self, path: str) -> None:
        from timm.optim import list_optimizers

        if self.name not in list_optimizers():
            hint = suggest(self.name, list_optimizers())
            fail(f"{path}.name", f"unknown timm optimizer {self.name!r}{hint}")


@dataclass(kw_only=True)
class ScheduleConfig:
    """Training length and learning-rate schedule (timm's `create_scheduler_v2`)."""

    epochs: int = field(10, check=ge(1), doc="training epochs")
    name: Literal["cosine", "step", "multistep", "constant", "poly", "tanh"] = field(
        "cosine", doc="schedule shape"
    )
    warmup_epochs: int = field(0, check=ge(0), doc="linear warm-up epochs (per step)")
    warmup_lr: float = field(0.0, check=ge(0), doc="learning rate at the start of warm-up")
    milestones: list[int] = field([], check=each(ge(1)), doc="multistep: epochs to decay at")
    decay_epochs: float | None = field(None, check=gt(0), doc="step: decay period in epochs")
    decay_rate: float = field(0.1, check=gt(0), doc="step/multistep decay factor (gamma)")
    min_lr: float = field(0.0, check=ge(0), doc="cosine/poly floor")

    def validate(self, path: str) -> None:
        if self.name == "multistep" and not self.milestones:
            fail(f"{path}.milestones", "required for the multistep schedule")
        if self.name == "step" and self.decay_epochs is None:
            fail(f"{path}.decay_epochs", "required for the step schedule")
        if self.warmup_epochs >= self.epochs and self.warmup_epochs > 0:
            fail(f"{path}.warmup_epochs", f"must be < epochs ({self.epochs})")


@dataclass(kw_only=True)
class EvalConfig:
    """Evaluation on the validation split."""

    every: int = field(1, check=ge(1), doc="evaluate every N epochs (and always the last)")
    ece_bins: int = field(15, check=ge(1), doc="equal-width bins of the ECE")


@dataclass(kw_only=True)
class CheckpointConfig:
    """What the run keeps on disk (never part of the run's identity)."""

    save_epochs: list[int] = field([], check=each(ge(1)), doc="keep checkpoints of these epochs")
    every_steps: int = field(0, check=ge(0), doc="also checkpoint every N steps (0: epoch ends)")


@dataclass(kw_only=True)
class RuntimeConfig:
    """How the run executes (not part of the run's identity)."""

    device: Literal["auto", "cpu", "cuda"] = field("auto", doc="auto: cuda if available")
    amp: Literal["auto", "bf16", "off"] = field("auto", doc="auto: bf16 autocast on CUDA")
    channels_last: Literal["auto", "on", "off"] = field("auto", doc="auto: on for CUDA")
    compile: bool = field(False, doc="torch.compile the student")
    deterministic: bool = field(True, doc="deterministic algorithms (exact CPU reruns)")
    log_every: int = field(50, check=ge(1), doc="steps between progress updates")


Tracker = Literal["tensorboard", "mlflow", "wandb"]


@dataclass(kw_only=True)
class TensorBoardConfig:
    """TensorBoard event files (read with `tensorboard --logdir`)."""

    root: str | None = field(
        None, doc="folder of every run's event files, <root>/<run_id> (default: <run folder>/tensorboard)"
    )


@dataclass(kw_only=True)
class MlflowConfig:
    """An MLflow tracking store: a local folder, a database or a server."""

    tracking_uri: str | None = field(
        None, doc="folder, sqlite:///file.db, http(s)://server (default: the folder <runs-dir>/mlruns)"
    )
    experiment: str | None = field(None, doc="experiment name (default: the run's setting key)")


@dataclass(kw_only=True)
class WandbConfig:
    """A Weights & Biases run: online, or offline in the run folder for `wandb sync` later."""

    project: str = field("harness", doc="W&B project")
    entity: str | None = field(None, doc="W&B entity, a user or team (default: the API key's)")
    tags: list[str] = field([], doc="tags of every run, beside the run's own")
    mode: Literal["auto", "online", "offline"] = field(
        "auto", doc="auto: WANDB_MODE, else online with an API key and a network, else offline"
    )


@dataclass(kw_only=True)
class TrackingConfig:
    """Experiment trackers a run also logs to (never part of the run's identity: Parquet stays
    the record). See docs/tracking.md."""

    trackers: list[Tracker] = field([], doc="tensorboard, mlflow and/or wandb (also --track)")
    group: str | None = field(None, doc="group of runs, W&B group and MLflow tag (a sweep: its name)")
    tensorboard: TensorBoardConfig = field(TensorBoardConfig, doc="TensorBoard event files")
    mlflow: MlflowConfig = field(MlflowConfig, doc="MLflow tracking store and experiment")
    wandb: WandbConfig = field(WandbConfig, doc="Weights & Biases project and mode")

    def validate(self, path: str) -> None:
        twice = sorted({t for t in self.trackers if self.trackers.count(t) > 1})
        if twice:
            fail(f"{path}.trackers", f"lists {twice[0]!r} twice")


@dataclass(kw_only=True)
class Recipe:
    """One training run: model, data, strategy, optional teacher, optimisation, evaluation."""

    name: str | None = field(None, check=safe_name, doc="recipe name (default: the file name)")
    method: str | None = field(None, doc="label on the leaderboard (default: strategy name)")
    description: str = field("", doc="free text; say where the hyper-parameters come from")
    seed: int = field(0, check=ge(0), int_max=SEED_MAX, doc="training seed (0 to 2**32 - 1)")
    model: ModelConfig = field(doc="student model")
    data: DataConfig = field(doc="data set and loader")
    strategy: StrategyConfig = field(doc="training strategy")
    teacher: TeacherConfig | None = field(None, doc="teacher (strategies that need one)")
    optim: OptimConfig = field(OptimConfig, doc="optimizer")
    schedule: ScheduleConfig = field(ScheduleConfig, doc="epochs and learning-rate schedule")
    eval: EvalConfig = field(EvalConfig, doc="evaluation")
    checkpoint: CheckpointConfig = field(CheckpointConfig, doc="checkpoints kept")
    runtime: RuntimeConfig = field(RuntimeConfig, doc="execution")
    tracking: TrackingConfig | None = field(
        None, doc="experiment trackers: TensorBoard, MLflow, W&B (not part of the run's identity)"
    )
    source: str | None = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def validate(self, path: str) -> None:
        from harness import strategies

        needs = strategies.get(self.strategy.name).needs_teacher
        if needs and self.teacher is None:
            fail("teacher", f"required: strategy {self.strategy.name!r} distils from a teacher")
        if not needs and self.teacher is not None:
            fail("teacher", f"strategy {self.strategy.name!r} uses no teacher; remove it")
        if self.teacher is not None and self.teacher.cache and self.data.backend == "torch":
            fail("teacher.cache", "needs data.backend memory or ffcv (replayable views); use a live teacher")
        features = strategies.registry.declared_features(self.strategy.name, self.strategy.params)
        if self.teacher is not None and self.teacher.cache and features.teacher:
            fail(
                "teacher.cache",
                f"strategy {self.strategy.name!r} needs teacher features and the cache holds "
                "logits only; use a live teacher (cache: false)",
            )
        if features.student:
            from harness.models.features import check_arch_stages

            check_arch_stages(self.model.arch, self.model.kwargs, features.student, "student")
        for e in self.checkpoint.save_epochs:
            if e > self.schedule.epochs:
                fail("checkpoint.save_epochs", f"epoch {e} > schedule.epochs ({self.schedule.epochs})")

    # ------------------------------------------------------------------ identity
    @property
    def label(self) -> str:
        return self.method or self.strategy.name

    def identity(self) -> dict[str, Any]:
        """The fields that determine the run's results (runtime, checkpoint, tracking and loader
        settings excluded)."""
        d = to_dict(self)
        for key in ("description", "runtime", "checkpoint", "tracking"):
            d.pop(key)
        for key in LOADER_ONLY:  # how data is loaded, not what is learnt
            d["data"].pop(key)
        omit_unset(d["data"])  # a run without them keeps the identity it had before they existed
        from harness.models.pretrained import identity_section

        for key in ("model", "teacher"):  # pretrained weights: their tag and file hash
            identity_section(d.get(key), recipe_dir(self))
        return d

    def hash(self) -> str:
        """sha256 of the identity (hex); equal recipes give equal hashes."""
        return _sha256_json(self.identity())

    def config_hash(self) -> str:
        """sha256 of the identity without the seed: the runs of one configuration over seeds."""
        identity = self.identity()
        identity.pop("seed")
        return _sha256_json(identity)

    @property
    def run_id(self) -> str:
        """`<name>-s<seed>-<hash8>`: a run is identified by its resolved recipe and seed."""
        return f"{self.name}-s{self.seed}-{self.hash()[:8]}"

    def group_key(self) -> str:
        """`<name>-<config_hash8>`: the runs of a sweep that differ only in their seed."""
        return f"{self.name}-{self.config_hash()[:8]}"

    def setting(self) -> tuple[str, str]:
        """(setting key, data pipeline JSON): the leaderboard compares runs whose data, arch and
        budget match. The key is sha256[:12] of dataset, arch, its kwargs, epochs and the data
        pipeline; the pipeline is the data section without how or where it is loaded, the seeds
        of the views and the batch (a Tf-KD self recipe may use another batch than its baseline)."""
        data = to_dict(self.data)
        for key in (*LOADER_ONLY, *SETTING_FREE_DATA):
            data.pop(key, None)
        omit_unset(data)
        pipeline = json.dumps(data, sort_keys=True)
        blob = json.dumps(
            {
                "dataset": self.data.dataset,
                "arch": self.model.arch,
                "kwargs": self.model.kwargs,
                "epochs": self.schedule.epochs,
                "data": data,
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:12], pipeline

    def to_yaml(self) -> str:
        d = to_dict(self)
        if d["tracking"] is None:  # a run without trackers writes the recipe.yaml it wrote before
            d.pop("tracking")
        return yaml.safe_dump(d, sort_keys=False)


def omit_unset(data: dict[str, Any]) -> None:
    """Drop the unset fields of UNSET_OMITTED and AUGMENT_UNSET_OMITTED from a `data` dict (in place)."""
    for key in UNSET_OMITTED:
        if data.get(key) is None:
            data.pop(key, None)
    augment = data.get("augment") or {}
    for key in AUGMENT_UNSET_OMITTED:
        if augment.get(key) is None:
            augment.pop(key, None)


def _sha256_json(value: Any) -> str:
    """sha256 (hex) of `value` as compact JSON with sorted keys: the form every recipe hash uses."""
    blob = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


# ------------------------------------------------------------------------------ architecture
def check_arch(arch: str, path: str) -> None:
    """Fail with close matches if `arch` is neither a timm model nor one harness registers with
    timm (`harness.models.names`: checked without importing the model code)."""
    import timm

    if arch.split(".", 1)[0] in HARNESS_ARCHS or timm.is_model(arch):  # an arch may carry a `.tag`
        return
    known = sorted({*timm.list_models(), *HARNESS_ARCHS}, key=_natural_key)  # timm.list_models' order
    fail(path, f"unknown timm architecture {arch!r}{suggest(arch, known)}")


def _natural_key(name: str) -> list[int | str]:
    """Sort key that puts `resnet18` before `resnet101`, as timm lists its models."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name.lower())]


def check_pretrained(cfg: ModelConfig | TeacherConfig, path: str) -> None:
    """A pretrained tag timm knows for `cfg.arch` (close matches if not)."""
    if not cfg.pretrained and cfg.pretrained_file is None:
        return
    from harness.models.pretrained import resolve_tag

    assert cfg.arch is not None
    try:
        resolve_tag(cfg.arch, cfg.pretrained or True, path)
    except RecipeError as exc:
        fail(path, str(exc).split(": ", 1)[1])


def recipe_dir(recipe: Recipe) -> Path:
    """Folder of the file `recipe` was loaded from (the current folder if none)."""
    return Path(recipe.source).resolve().parent if recipe.source else Path.cwd()
