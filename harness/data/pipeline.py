"""What the torch and ffcv backends share: the pipeline a recipe asks for, and the device stage.

`Plan.from_config` reads `data` once, so both backends apply the same semantics:

* `imagenet` pipelines decode each image to a target size: training with a random-resized crop
  (`augment.random_resized_crop`, scale in [`scale_min`, 1], aspect ratio in [3/4, 4/3]) or
  else a centre crop, then a random flip (`augment.hflip`); evaluation with the centre crop
  whose side is `val_crop_ratio` (224/256) of the shorter side, resized to the eval size.
  Progressive resizing (`data.progressive`) changes the training size by epoch.
* `small` pipelines (CIFAR, Fashion-MNIST, generated data) keep the stored size: training with
  a random crop of the zero-padded image (`augment.crop_padding`) and a random flip.
* Both normalise with `data.normalize` where a recipe gives it (the cited code's constants),
  else with the data set's statistics (`INFOS`).

Loaders hand uint8 batches (N, C, H, W) to `DeviceStage`, which moves them to the device
and only there turns them into normalised floats (flipping, resizing small images to
`image_size` and rotating by `augment.rotation_degrees` first, where asked). Doing this on the
device is what keeps ffcv fast: its CPU threads then only decode and crop uint8 pixels, and
four times less data crosses to the GPU than as floats. The ffcv backend flips there too (a
seeded flip, where ffcv's own is not); the torch backend flips in its workers, as torchvision
pipelines do. On a CUDA device the copy runs on a side stream and completes
before the batch is returned, so the loader may reuse its host buffer at once; the device
tensors are new for every batch and safe to keep.

`build_bundle` assembles either backend's `DataBundle` (subsets, device stages, loader options,
shapes and the log line): a backend passes only what differs, its loader and its source.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from harness.config.recipe import DataConfig, ProgressiveConfig
from harness.data.augment import rotate
from harness.data.base import DataBundle, Loader
from harness.data.datasets import INFOS, subset_indices
from harness.data.holdout import carve

RRC_RATIO = (3 / 4, 4 / 3)  # aspect-ratio range of the random-resized crop (torchvision, ffcv)


def per_channel(stat: tuple[float, ...], channels: int) -> list[float]:
    """A statistic for `channels` channels (one value repeated, or the mean of several)."""
    if len(stat) == channels:
        return list(stat)
    if len(stat) == 1:
        return list(stat) * channels
    return [sum(stat) / len(stat)] * channels


def normalization(cfg: DataConfig) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) of [0, 1] pixels: the recipe's `data.normalize`, else the data set's."""
    if cfg.normalize is not None:
        return tuple(cfg.normalize.mean), tuple(cfg.normalize.std)
    info = INFOS[cfg.dataset]
    return info.mean, info.std


def progressive_resolution(p: ProgressiveConfig, epoch: int) -> int:
    """ffcv-imagenet's ramp: min_res up to start_epoch, max_res from end_epoch, linear between
    (rounded to a multiple of `step`)."""
    if epoch <= p.start_epoch:
        return p.min_res
    if epoch >= p.end_epoch:
        return p.max_res
    t = (epoch - p.start_epoch) / (p.end_epoch - p.start_epoch)
    res = p.min_res + t * (p.max_res - p.min_res)
    return round(res / p.step) * p.step


@dataclass(frozen=True)
class Plan:
    """The loader pipeline a recipe asks for (see the module docstring)."""

    dataset: str
    kind: str  # "imagenet" (decode to a size) or "small" (stored size)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channels: int  # channels the model sees (1 for Fashion-MNIST, whose files hold RGB)
    train_size: int | None  # imagenet: decode size; small: device resize target (None: stored size)
    val_size: int | None
    val_crop_ratio: float
    random_resized_crop: bool
    scale_min: float
    crop_padding: int
    hflip: bool
    rotation_degrees: float
    rotation_mode: str  # bilinear or nearest
    progressive: ProgressiveConfig | None

    @classmethod
    def from_config(cls, cfg: DataConfig) -> Plan:
        info = INFOS[cfg.dataset]
        kind = "imagenet" if cfg.dataset == "imagenet" else "small"
        channels = (cfg.channels or info.channels) if cfg.dataset == "synthetic" else info.channels
        train_size = cfg.image_size
        if cfg.progressive is not None:
            train_size = cfg.progressive.max_res
        elif train_size is None and (kind == "imagenet" or cfg.augment.random_resized_crop):
            train_size = info.image_size
        val_size = cfg.val_image_size or cfg.image_size
        if val_size is None and kind == "imagenet":
            val_size = info.image_size
        a = cfg.augment
        mean, std = normalization(cfg)
        return cls(
            dataset=cfg.dataset,
            kind=kind,
            mean=tuple(per_channel(mean, channels)),
            std=tuple(per_channel(std, channels)),
            channels=channels,
            train_size=train_size,
            val_size=val_size,
            val_crop_ratio=cfg.val_crop_ratio,
            random_resized_crop=a.random_resized_crop,
            scale_min=a.scale_min,
            crop_padding=a.crop_padding,
            hflip=a.hflip,
            rotation_degrees=a.rotation_degrees,
            rotation_mode=a.rotation_interpolation or "bilinear",
            progressive=cfg.progressive,
        )

    @property
    def decodes_to_size(self) -> bool:
        """Whether training images are decoded straight to a size (crop decoders)."""
        return self.kind == "imagenet" or self.random_resized_crop

    def train_resolution(self, epoch: int) -> int | None:
        """The training size at `epoch` (progressive), or the fixed one."""
        if self.progressive is not None:
            return progressive_resolution(self.progressive, epoch)
        return self.train_size

    def describe(self, train: bool) -> str:
        if not train:
            if self.kind == "imagenet":
                return f"centre crop {self.val_crop_ratio:.3f} -> {self.val_size}"
            return "stored size" if self.val_size is None else f"resize {self.val_size}"
        parts = []
        if self.random_resized_crop:
            parts.append(f"random-resized crop (scale {self.scale_min:g}-1)")
        elif self.kind == "imagenet":
            parts.append(f"centre crop {self.val_crop_ratio:.3f}")
        if self.crop_padding:
            parts.append(f"pad-{self.crop_padding} crop")
        if self.hflip:
            parts.append("flip")
        if self.rotation_degrees:
            parts.append(f"rotate {self.rotation_degrees:g} deg ({self.rotation_mode})")
        if self.progressive is not None:
            p = self.progressive
            parts.append(f"progressive {p.min_res}->{p.max_res} (epochs {p.start_epoch}-{p.end_epoch})")
        return ", ".join(parts) or "no augmentation"


class DeviceStage:
    """uint8 batches from a loader -> normalised float batches on the device (safe to keep).

    `images` takes (N, C, H, W) uint8 in either memory format (ffcv's batches are channels-last)
    and returns floats in the same format: `(x / 255 - mean) / std` computed as `x * a + b` in
    one pass over rows of pixels, which is what makes this fast on a CPU as well.
    """

    def __init__(
        self,
        device: torch.device,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        *,
        channels: int,
        size: int | None = None,
        hflip: bool = False,
        rotation_degrees: float = 0.0,
        rotation_mode: str = "bilinear",
    ) -> None:
        self.device = torch.device(device)
        self.channels = channels
        self.size = size
        self.hflip = hflip
        self.rotation_degrees = rotation_degrees
        self.rotation_mode = rotation_mode
        mean_t = torch.tensor(mean, dtype=torch.float32)
        std_t = torch.tensor(std, dtype=torch.float32)
        self.mean = mean_t.to(self.device)
        self.std = std_t.to(self.device)
        self.scale = (1.0 / (255.0 * std_t)).to(self.device)
        self.shift = (-mean_t / std_t).to(self.device)
        self._rows: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._copy_stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None

    # ---------------------------------------------------------------- host -> device
    def upload(self, host: torch.Tensor) -> torch.Tensor:
        """`host` on the device. On CUDA the copy is complete when this returns (the loader may
        then overwrite `host`); on the CPU this is `host` itself (callers must not keep it)."""
        if self._copy_stream is None:
            return host
        with torch.cuda.stream(self._copy_stream):
            out = host.to(self.device, non_blocking=True)
        self._copy_stream.synchronize()  # waits for this copy only, not for queued compute
        out.record_stream(torch.cuda.current_stream(self.device))
        return out

    def labels(self, host: torch.Tensor) -> torch.Tensor:
        """int64 (N,) on the device, never sharing memory with `host`."""
        out = self.upload(host.reshape(-1))
        return out.to(torch.int64, copy=out.data_ptr() == host.data_ptr())

    # ---------------------------------------------------------------- uint8 -> float
    def images(
        self,
        u8: torch.Tensor,
        generator: torch.Generator | None = None,
        flips: torch.Tensor | None = None,
        angles: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Normalised floats from uint8 `u8` (N, C, H, W) on the device; a new tensor.

        Random flips and rotations draw from `generator` (CPU), one flip then one angle per image,
        unless given (`flips` (N,) bool, `angles` (N,) degrees: a replayable view's).
        """
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        if u8.shape[1] != self.channels:
            u8 = u8[:, : self.channels]  # grey images stored as RGB: the channels are equal
        if self.hflip:
            flip = flips if flips is not None else torch.rand(u8.shape[0], generator=g) < 0.5
            flip = flip.to(u8.device)
            u8 = torch.where(flip.view(-1, 1, 1, 1), u8.flip(-1), u8)  # a uint8 copy (loader buffer intact)
        resize = self.size is not None and tuple(u8.shape[-2:]) != (self.size, self.size)
        if not resize and not self.rotation_degrees:
            return self.normalize(u8)
        x = u8.float().div_(255.0)
        if resize:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True)
        if self.rotation_degrees:
            if angles is None:
                angles = (torch.rand(x.shape[0], generator=g) * 2 - 1) * self.rotation_degrees
            x = rotate(x, angles.to(x.device, x.dtype), self.rotation_mode)
        return x.sub_(self.mean.view(1, -1, 1, 1)).div_(self.std.view(1, -1, 1, 1))

    def normalize(self, u8: torch.Tensor) -> torch.Tensor:
        """`(u8 / 255 - mean) / std` in floats, in `u8`'s memory format, as a new tensor."""
        n, c, h, w = u8.shape
        if c > 1 and u8.is_contiguous(memory_format=torch.channels_last):
            scale, shift = self._row_stats(w)
            rows = u8.permute(0, 2, 3, 1).reshape(n, h, w * c).float()  # (N, H, W*C), no copy of u8
            rows.mul_(scale).add_(shift)
            return rows.view(n, h, w, c).permute(0, 3, 1, 2)
        x = u8.float()
        return x.mul_(self.scale.view(1, c, 1, 1)).add_(self.shift.view(1, c, 1, 1))

    def _row_stats(self, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Scale and shift repeated along a row of `width` interleaved pixels."""
        if width not in self._rows:
            self._rows[width] = (self.scale.repeat(width), self.shift.repeat(width))
        return self._rows[width]


# ------------------------------------------------------------------------------ bundle
#: makes one split's loader: `make(split, indices=..., plan=..., train=..., batch_size=..., stage=...,
#: seed=..., rank=..., world_size=..., num_workers=..., drop_last=..., timeout_s=...)`
MakeLoader = Callable[..., Loader]


@dataclass(frozen=True)
class Positions:
    """The positions of each split's samples a run uses: the training ones (`data.holdout`
    removed, then `data.train_subset` of the rest), the held-out ones and the evaluation ones."""

    train: np.ndarray
    held_out: np.ndarray
    val: np.ndarray
    holdout_digest: str | None  # None without a holdout


def split_positions(cfg: DataConfig, train_labels: np.ndarray, val_samples: int) -> Positions:
    """The held-out positions (`harness.data.holdout.carve`, from the whole training split),
    then `data.train_subset` / `val_subset` of the remaining training and the evaluation
    positions, drawn from `subset_seed` (+1 for val), or all of them."""
    holdout = carve(cfg.holdout, train_labels)
    keep = subset_indices(len(holdout.train), cfg.train_subset, cfg.subset_seed)
    train = holdout.train if keep is None else holdout.train[keep.numpy()]
    keep = subset_indices(val_samples, cfg.val_subset, cfg.subset_seed + 1)
    val = np.arange(val_samples) if keep is None else keep.numpy()
    return Positions(train, holdout.held_out, val, holdout.digest if cfg.holdout is not None else None)


def build_bundle(
    cfg: DataConfig,
    plan: Plan,
    *,
    train_labels: np.ndarray,
    val_samples: int,
    make: MakeLoader,
    source: str,
    stored: tuple[int, ...] | None,
    device_hflip: bool,
    device: torch.device,
    seed: int,
    rank: int,
    world_size: int,
) -> DataBundle:
    """The train, held-out and val loaders of a torch or ffcv backend, as one `DataBundle`.

    `train_labels` are the whole training split's labels (the held-out split is stratified on
    them), `val_samples` the evaluation split's size before subsetting, `make` builds one split's
    loader (`"holdout"`: the training split's file or data set read as an evaluation split),
    `source` says where the data comes from in the log line, `stored` is the stored image size
    (None where sizes vary) and `device_hflip` whether the device stage flips (ffcv) or the
    loader's workers do (torch)."""
    info = INFOS[cfg.dataset]
    positions = split_positions(cfg, train_labels, val_samples)
    small = plan.kind == "small"
    train_stage = DeviceStage(
        device,
        plan.mean,
        plan.std,
        channels=plan.channels,
        size=plan.train_size if small and not plan.random_resized_crop else None,
        hflip=plan.hflip and device_hflip,
        rotation_degrees=plan.rotation_degrees,
        rotation_mode=plan.rotation_mode,
    )
    val_stage = DeviceStage(
        device, plan.mean, plan.std, channels=plan.channels, size=plan.val_size if small else None
    )
    common = {
        "plan": plan,
        "seed": seed,
        "rank": rank,
        "world_size": world_size,
        "num_workers": cfg.num_workers,
        "timeout_s": cfg.loader_timeout_s,
    }
    train = make(
        "train",
        indices=positions.train,
        train=True,
        batch_size=cfg.batch_size,
        stage=train_stage,
        drop_last=cfg.drop_last,
        **common,
    )
    evaluation = functools.partial(
        make, train=False, batch_size=cfg.eval_batch_size, stage=val_stage, **common
    )
    val = evaluation("val", indices=positions.val)
    held_out = None if positions.holdout_digest is None else evaluation("holdout", indices=positions.held_out)
    n_train, n_val, n_held = len(positions.train), len(positions.val), len(positions.held_out)
    return DataBundle(
        train=train,
        val=val,
        num_classes=cfg.num_classes or info.num_classes,
        channels=plan.channels,
        image_size=plan.train_size or (stored[0] if stored else info.image_size),
        train_size=n_train,
        val_size=n_val,
        eval_split=info.eval_split,
        holdout=held_out,
        holdout_size=n_held,
        holdout_digest=positions.holdout_digest,
        describe=(
            f"{cfg.dataset} ({source}): {n_train} train / {n_held} held out / {n_val} val; "
            f"train {plan.describe(True)}; eval {plan.describe(False)}"
        ),
    )
