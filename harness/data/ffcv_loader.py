"""The `ffcv` backend: train and evaluate from FFCV `.beton` files (`harness data convert`).

Pipelines follow `harness.data.pipeline.Plan`. Training decodes with `SeededCropDecoder`
(`harness.data.ffcv_views`): ImageNet with a random-resized crop (or the centre crop),
progressive resolution by epoch as in ffcv-imagenet, CIFAR and Fashion-MNIST at the stored
size with the padded random crop; every sample's crop, flip and angle come from
(view_seed, epoch, sample index), so two runs with the same seeds see the same images, a resumed
run is exact, and each batch records its views (`Batch.views`) for a teacher cache. Evaluation
decodes with ffcv's centre-crop decoder at `val_crop_ratio` (ImageNet) or as stored. Every ffcv
operation works on uint8 pixels; the batch leaves ffcv as a uint8 channels-last tensor and
`DeviceStage` flips and rotates (from the views) and normalises it on the device: on the CPU
ffcv's own flip costs about a quarter of the loader's time (harness/benchmarking/loader.py,
`ffcv-cpuflip`).

ffcv 1.0.2's traps, and what this module does about each:

1. A numba operation placed after a torch operation in a pipeline hangs the loader (upstream
   issue #396). `check_pipeline` enforces numba operations only, then `ToTensor` last; nothing
   (not even `NormalizeImage`) runs after it inside ffcv.
2. An exception in ffcv's loader thread never reaches the consumer, which waits forever.
   `WatchedLoader` (`harness.data.ffcv_ops`) runs each epoch in a thread that catches the
   exception and hands it over: the training loop gets a `DataError` naming the .beton. A thread
   that ends without a word, or produces no batch for `data.loader_timeout_s`, is an error as
   well, never a hang.
3. ffcv writes each batch into one of `batches_ahead + 2` buffers it reuses. The batches this
   loader yields are new tensors (device images, copied labels and indices): safe to keep.
4. numba compiles the pipeline in every process (~20 s at the first batch on a 2-core
   machine); `harness.data.ffcv_env` caches what numba can cache and compiles each operation
   once per process. It also stops ffcv 1.0.2 from corrupting numba's shared array types.

Order and sharding: each training epoch is a permutation seeded by (seed, epoch); rank r of w
takes the r-th of w equal slices (`n // w` samples, as the memory backend does), so every rank
runs the same number of steps. Evaluation reads `indices[rank::world_size]` in order (each
sample counted once). `Batch.indices` are positions in the split (after `train_subset` /
`val_subset`), as the memory backend's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from harness.config.recipe import DataConfig
from harness.data.augment import epoch_generator
from harness.data.base import Batch, DataBundle
from harness.data.datasets import INFOS
from harness.data.ffcv_env import require_ffcv
from harness.data.ffcv_views import CENTRE, RRC, TRANSLATE, ViewSpec, ViewState, seeded_decoder
from harness.data.pipeline import RRC_RATIO, DeviceStage, Plan, build_bundle
from harness.errors import DataError

BATCHES_AHEAD = 3


# ------------------------------------------------------------------------------ ffcv itself
def ffcv_api() -> ModuleType:
    """`harness.data.ffcv_ops`: ffcv's pieces and our subclasses of them (ffcv is an optional
    extra, imported on first use)."""
    require_ffcv()  # cheap once imported; keeps numba's expected cache warnings quiet
    from harness.data import ffcv_ops

    return ffcv_ops


# ------------------------------------------------------------------------------ pipelines
def check_pipeline(ops: list) -> list:
    """Raise unless `ops` are ffcv numba operations followed by `ToTensor` (upstream issue #396:
    a numba operation after a torch one hangs the loader)."""
    api = ffcv_api()
    if not ops or not isinstance(ops[-1], api.ToTensor):
        raise ValueError("an ffcv pipeline must end with ToTensor (normalisation runs on the device)")
    for op in ops[:-1]:
        if isinstance(op, api.TORCH_OPERATIONS) or not isinstance(op, api.Operation):
            raise ValueError(
                f"{type(op).__name__} before ToTensor: only numba operations may come first (ffcv #396)"
            )
    return ops


def view_spec(plan: Plan) -> ViewSpec:
    """How the training views of `plan` are drawn."""
    if plan.random_resized_crop:
        mode = RRC
    elif plan.kind == "imagenet":
        mode = CENTRE
    else:
        mode = TRANSLATE
    return ViewSpec(
        mode,
        scale_min=plan.scale_min,
        ratio=RRC_RATIO,
        padding=plan.crop_padding,
        centre_ratio=plan.val_crop_ratio,
        hflip=plan.hflip,
        rotation_degrees=plan.rotation_degrees,
    )


def image_pipeline(
    plan: Plan,
    train: bool,
    stored: tuple[int, int] | None,
    cpu_flip: bool = False,
    views: ViewState | None = None,
) -> tuple[list, Any]:
    """(ffcv operations, the decoder) for the images of one split; flips happen on the device
    unless `cpu_flip` (ffcv's numba flip, for comparison). Training with `views` decodes with
    the seeded crop decoder (reproducible views); without, with ffcv's unseeded ones."""
    api = ffcv_api()
    if train and views is not None:
        size = None
        if plan.decodes_to_size:
            size = plan.train_size or (stored[0] if stored else INFOS[plan.dataset].image_size)
        decoder = seeded_decoder(None if size is None else (size, size), view_spec(plan), views)
        ops = [decoder]
        if plan.hflip and cpu_flip:
            ops.append(api.RandomHorizontalFlip())
        return check_pipeline([*ops, api.ToTensor()]), decoder
    if plan.kind == "imagenet" and not train:
        decoder = api.CenterCropRGBImageDecoder((plan.val_size, plan.val_size), ratio=plan.val_crop_ratio)
    elif train and plan.random_resized_crop:
        size = plan.train_size or (stored[0] if stored else INFOS[plan.dataset].image_size)
        decoder = api.RandomResizedCropRGBImageDecoder(
            (size, size), scale=(plan.scale_min, 1.0), ratio=RRC_RATIO
        )
    elif plan.kind == "imagenet":
        decoder = api.CenterCropRGBImageDecoder((plan.train_size, plan.train_size), ratio=plan.val_crop_ratio)
    else:
        decoder = api.SimpleRGBImageDecoder()
    ops: list = [decoder]
    if train and plan.crop_padding:
        ops.append(api.RandomTranslate(padding=plan.crop_padding))
    if train and plan.hflip and cpu_flip:
        ops.append(api.RandomHorizontalFlip())
    ops.append(api.ToTensor())
    return check_pipeline(ops), decoder


# ------------------------------------------------------------------------------ .beton files
@dataclass(frozen=True)
class BetonInfo:
    path: Path
    samples: int
    labels: np.ndarray
    heights: np.ndarray
    widths: np.ndarray

    @property
    def one_size(self) -> tuple[int, int] | None:
        """(h, w) if every image has it, else None."""
        if len(self.heights) == 0:
            return None
        h, w = int(self.heights[0]), int(self.widths[0])
        return (h, w) if (self.heights == h).all() and (self.widths == w).all() else None


def inspect_beton(path: Path, key: str, dataset: str = "imagenet") -> BetonInfo:
    """Open a .beton's header and metadata; errors name the recipe key `key` or the file."""
    api = ffcv_api()
    if not path.is_file():
        from harness.data.hints import convert_command

        raise DataError(f"{key}: {path} not found; write it with: {convert_command(dataset, key, path)}")
    try:
        reader = api.Reader(str(path))
        meta = reader.metadata
    except Exception as exc:
        raise DataError(f"{path}: not a readable FFCV .beton file ({type(exc).__name__}: {exc})") from None
    handlers = reader.handlers
    image_ok = isinstance(handlers.get("image"), api.RGBImageField)
    if not image_ok or not isinstance(handlers.get("label"), api.IntField):
        found = ", ".join(f"{k} ({type(v).__name__})" for k, v in handlers.items())
        expected = "the fields image (RGBImageField) and label (IntField)"
        raise DataError(f"{path}: expected {expected}, found {found}")
    names = list(handlers)
    image = meta[f"f{names.index('image')}"]
    labels = np.asarray(meta[f"f{names.index('label')}"], dtype=np.int64)
    sizes = np.asarray(image["height"]), np.asarray(image["width"])
    return BetonInfo(path, int(reader.num_samples), labels, *sizes)


# ------------------------------------------------------------------------------ the loader
class FfcvLoader:
    """One split of a .beton as `Batch`es on the device (the `Loader` protocol)."""

    def __init__(
        self,
        info: BetonInfo,
        *,
        plan: Plan,
        train: bool,
        batch_size: int,
        indices: np.ndarray,
        stage: DeviceStage,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        drop_last: bool = False,
        timeout_s: float = 600.0,
        image_ops: list | None = None,
        view_seed: int | None = None,
        sequential: bool = False,
    ) -> None:
        api = ffcv_api()
        self.info = info
        self.path = info.path
        self.plan = plan
        self.train = train
        self.stage = stage
        self.seed = seed
        self.view_seed = seed if view_seed is None else view_seed
        self.epoch = 0
        self.batch_size = batch_size
        self._options = {"num_workers": num_workers, "timeout_s": timeout_s}
        self.split_indices = np.asarray(indices, dtype=np.int64)  # .beton positions of the split
        self._position = np.full(info.samples, -1, dtype=np.int64)  # .beton position -> split position
        self._position[self.split_indices] = np.arange(len(self.split_indices))
        self.spec = view_spec(plan) if train else None
        self.views_state = ViewState(self.view_seed) if train and image_ops is None else None
        self._ordered: FfcvLoader | None = None
        self._ordered_key: tuple[int, int, int] | None = None
        ops, self.decoder = image_pipeline(plan, train, info.one_size, views=self.views_state)
        if image_ops is not None:  # a caller's own pipeline (tests, benchmarks); still checked
            ops, self.decoder = check_pipeline(image_ops), image_ops[0]
        if sequential:  # every sample of the split in order (a teacher cache's pass)
            order = api.OrderOption.SEQUENTIAL
            self._samples = len(indices)
        elif train:
            order = api.ShardedShuffle(seed, rank, world_size)
            self._samples = len(indices) // world_size
        else:
            indices = indices[rank::world_size]
            order = api.OrderOption.SEQUENTIAL
            self._samples = len(indices)
        self._loader = api.WatchedLoader(
            str(info.path),
            batch_size=batch_size,
            num_workers=num_workers or (os.cpu_count() or 1),
            os_cache=True,
            order=order,
            seed=seed,
            indices=np.asarray(indices, dtype=np.int64),
            pipelines={
                "image": ops,
                "label": [api.IntDecoder(), api.ToTensor()],
                "index": api.PipelineSpec(
                    "label", decoder=api.SampleIndexDecoder(), transforms=[api.ToTensor()]
                ),
            },
            drop_last=drop_last,
            batches_ahead=BATCHES_AHEAD,
        )
        self._loader.stall_timeout_s = timeout_s

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self._loader)

    @property
    def num_samples(self) -> int:
        return self._samples

    def host_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(uint8 images (N, C, H, W) channels-last, labels (N, 1), indices (N, 1)) as ffcv makes
        them: views of buffers ffcv reuses a few batches later (copy what you keep)."""
        self._loader.next_epoch = self.epoch  # the order of this epoch
        if self.views_state is not None:
            self.views_state.set_epoch(self.epoch)  # read by the compiled decoder
        if self.train and self.plan.progressive is not None:
            res = self.plan.train_resolution(self.epoch)
            self.decoder.output_size = (res, res)
        epoch = iter(self._loader)
        try:
            for images, labels, index in epoch:
                yield images.permute(0, 3, 1, 2), labels, index
        finally:
            epoch.close()

    def __iter__(self) -> Iterator[Batch]:
        g = epoch_generator(self.seed, self.epoch, stream=1)  # device-side flips and rotations
        for images, labels, index in self.host_batches():
            where = index.reshape(-1).numpy()
            positions = torch.from_numpy(self._position[where])
            if self.views_state is None:
                x = self.stage.images(self.stage.upload(images), g)
                views = None
            else:
                host = self.spec.views(self.view_seed, self.epoch, where, self.info.heights, self.info.widths)
                views = torch.from_numpy(host)
                x = self.stage.images(
                    self.stage.upload(images), g, flips=views[:, 4] > 0.5, angles=views[:, 5]
                )
                views = views.to(self.stage.device)
            yield Batch(
                images=x,
                targets=self.stage.labels(labels),
                indices=self.stage.labels(positions),
                views=views,
            )

    # -------------------------------------------------------------- replayable views
    def epoch_views(self, epoch: int) -> torch.Tensor:
        """(N, 6) views of every sample of the split at `epoch`, by position in the split
        (`harness.data.ffcv_views`): they depend on (view_seed, epoch) alone."""
        assert self.spec is not None, "evaluation has no random views"
        host = self.spec.views(self.view_seed, epoch, self.split_indices, self.info.heights, self.info.widths)
        return torch.from_numpy(host)

    def identity(self) -> dict[str, Any]:
        """What a teacher cache of this split's views must match besides the recipe's pipeline."""
        stat = self.path.stat()
        return {
            "beton": {"name": self.path.name, "bytes": stat.st_size, "samples": int(self.info.samples)},
            "views": None if self.spec is None else self.spec.identity(),
        }

    def ordered_batches(
        self, epoch: int, batch_size: int, rank: int = 0, world_size: int = 1
    ) -> Iterator[Batch]:
        """The split in position order, seen through its views at `epoch`, in batches of
        `batch_size`; rank r of w decodes the batches r, r + w, ... only: a teacher cache's pass."""
        key = (batch_size, rank, world_size)
        if self._ordered is None or self._ordered_key != key:
            if self._ordered is not None:
                self._ordered.close()
            starts = range(rank * batch_size, len(self.split_indices), world_size * batch_size)
            if not starts:
                return
            mine = np.concatenate([self.split_indices[s : s + batch_size] for s in starts])
            self._ordered = FfcvLoader(
                self.info,
                plan=self.plan,
                train=True,
                batch_size=batch_size,
                indices=mine,
                stage=self.stage,
                seed=self.seed,
                view_seed=self.view_seed,
                sequential=True,
                **self._options,
            )
            self._ordered._position = self._position  # positions in the whole split
            self._ordered_key = key
        self._ordered.set_epoch(epoch)
        yield from self._ordered

    def close(self) -> None:
        if self._ordered is not None:
            self._ordered.close()
            self._ordered = None


# ------------------------------------------------------------------------------ build
def _check_labels(info: BetonInfo, num_classes: int) -> None:
    if len(info.labels) == 0:
        raise DataError(f"{info.path}: holds no samples")
    lo, hi = int(info.labels.min()), int(info.labels.max())
    if lo < 0:
        raise DataError(f"{info.path}: negative label {lo}")
    if hi >= num_classes:
        raise DataError(
            f"data.num_classes: labels in {info.path} go up to {hi} but num_classes is {num_classes}"
        )


def build(cfg: DataConfig, *, device: torch.device, seed: int, rank: int, world_size: int) -> DataBundle:
    """Train and validation loaders over `data.train_path` / `data.val_path`."""
    ffcv_api()
    plan = Plan.from_config(cfg)
    info = INFOS[cfg.dataset]
    num_classes = cfg.num_classes or info.num_classes
    betons = {
        "train": inspect_beton(Path(cfg.train_path), "data.train_path", cfg.dataset),
        "val": inspect_beton(Path(cfg.val_path), "data.val_path", cfg.dataset),
    }
    for split, beton in betons.items():
        _check_labels(beton, num_classes)
        crops = split == "train" and plan.random_resized_crop
        if plan.kind == "small" and beton.one_size is None and not crops:
            raise DataError(
                f"{beton.path}: images vary in size; the {cfg.dataset} pipeline reads one stored size "
                "(use dataset imagenet for crops of varied images)"
            )
    return build_bundle(
        cfg,
        plan,
        train_labels=betons["train"].labels,
        val_samples=betons["val"].samples,
        make=lambda split, **options: FfcvLoader(
            betons["train" if split == "holdout" else split],
            view_seed=cfg.view_seed if split == "train" else None,
            **options,
        ),
        source=f"ffcv {betons['train'].path.name} / {betons['val'].path.name}",
        stored=betons["train"].one_size,
        device_hflip=True,  # a seeded flip on the device (ffcv's own is not)
        device=device,
        seed=seed,
        rank=rank,
        world_size=world_size,
    )
