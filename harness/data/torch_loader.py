"""The `torch` backend: torchvision Datasets + a DataLoader, for machines without ffcv.

It reads the data sets themselves, not .beton files: `imagenet` from ImageFolder trees
`data.root/train` and `data.root/val` (decoded by `torchvision.io.decode_image`), `cifar10` /
`cifar100` from their python batches in `data.root`, `fashion_mnist` from its IDX files
(`data.root` or the embedded copy), `synthetic` generated. The pipeline is the ffcv backend's
(`harness.data.pipeline.Plan`): the same crops and flips, applied by torchvision's v2
transforms to uint8 tensors in the workers; batches stay uint8 until `DeviceStage` normalises
them on the device. The same `train_subset` / `val_subset` samples as the other backends.

Sharding: training uses a `DistributedSampler` (shuffled by seed and epoch, `drop_last`, so
every rank gets `n // world_size` samples and the same number of steps); evaluation reads
`indices[rank::world_size]` in order, each sample once. A worker that fails or stalls for
`data.loader_timeout_s` becomes a one-line `DataError`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from harness.config.recipe import DataConfig
from harness.data.augment import epoch_generator
from harness.data.base import Batch, DataBundle
from harness.data.datasets import (
    INFOS,
    ImageFolderIndex,
    list_image_folder,
    load_configured_split,
)
from harness.data.pipeline import RRC_RATIO, DeviceStage, Plan, build_bundle
from harness.errors import DataError

Transform = Callable[[torch.Tensor], torch.Tensor]


# ------------------------------------------------------------------------------ transforms
class CentreCrop:
    """The centre square whose side is `ratio` of the shorter side, resized to `size` (as ffcv's
    centre-crop decoder does: 224/256 gives the usual resize-256 / crop-224 evaluation)."""

    def __init__(self, size: int, ratio: float) -> None:
        self.size, self.ratio = size, ratio

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[-2:]
        side = max(1, int(self.ratio * min(h, w)))
        img = TF.center_crop(img, [side, side])
        return TF.resize(img, [self.size, self.size], antialias=True)


def train_transform(plan: Plan, stored: tuple[int, int] | None, size: int | None) -> Transform:
    """The training crop and flip of `plan` on uint8 CHW tensors (`size`: decode size)."""
    ops: list = []
    if plan.random_resized_crop:
        target = size or (stored[0] if stored else INFOS[plan.dataset].image_size)
        ops.append(v2.RandomResizedCrop(target, scale=(plan.scale_min, 1.0), ratio=RRC_RATIO, antialias=True))
    elif plan.kind == "imagenet":
        ops.append(CentreCrop(size, plan.val_crop_ratio))
    if plan.crop_padding:
        ops.append(_PadCrop(plan.crop_padding))
    if plan.hflip:
        ops.append(v2.RandomHorizontalFlip())
    return v2.Compose(ops) if ops else _identity


def val_transform(plan: Plan) -> Transform:
    if plan.kind == "imagenet":
        return CentreCrop(plan.val_size, plan.val_crop_ratio)
    return _identity


class _PadCrop:
    """A random crop of the image's own size from the zero-padded image (ffcv's RandomTranslate)."""

    def __init__(self, padding: int) -> None:
        self.padding = padding

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[-2:]
        return v2.RandomCrop((h, w), padding=self.padding)(img)


def _identity(img: torch.Tensor) -> torch.Tensor:
    return img


# ------------------------------------------------------------------------------ data sets
class TensorImages(Dataset):
    """uint8 (N, C, H, W) images in memory: (transformed image, label, index)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        return self.transform(self.images[i]), int(self.labels[i]), i

    @property
    def stored_size(self) -> tuple[int, int]:
        return int(self.images.shape[-2]), int(self.images.shape[-1])


class FolderImages(Dataset):
    """Image files of an ImageFolder tree, decoded to uint8 RGB: (transformed image, label, index)."""

    def __init__(self, index: ImageFolderIndex, transform: Transform) -> None:
        self.index, self.transform = index, transform

    def __len__(self) -> int:
        return len(self.index.files)

    @property
    def labels(self) -> np.ndarray:
        return np.asarray(self.index.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        from torchvision.io import ImageReadMode, decode_image, read_file

        path = self.index.files[i]
        try:
            img = decode_image(read_file(str(path)), mode=ImageReadMode.RGB)
        except (RuntimeError, OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot decode image ({str(exc).splitlines()[0]})") from None
        return self.transform(img), int(self.index.labels[i]), i

    stored_size = None


# ------------------------------------------------------------------------------ the loader
def _one_line(exc: BaseException) -> str:
    """The original message of an exception re-raised from a DataLoader worker (last line)."""
    # the raw message: HarnessError.__str__ escapes the newlines of the worker's traceback
    raw = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
    lines = [line for line in raw.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else type(exc).__name__
    for prefix in ("harness.errors.DataError: ", "DataError: "):
        if last.startswith(prefix):
            return last[len(prefix) :]
    return last


class TorchLoader:
    """One split through a torch DataLoader, as `Batch`es on the device (the `Loader` protocol)."""

    def __init__(
        self,
        dataset: TensorImages | FolderImages,
        indices: np.ndarray,
        *,
        plan: Plan,
        train: bool,
        batch_size: int,
        stage: DeviceStage,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        drop_last: bool = False,
        timeout_s: float = 600.0,
        name: str = "data",
    ) -> None:
        self.dataset = dataset
        self.plan = plan
        self.train = train
        self.batch_size = batch_size
        self.stage = stage
        self.seed = seed
        self.num_workers = num_workers
        self.drop_last = drop_last and train
        self.timeout_s = timeout_s
        self.name = name
        self.epoch = 0
        if train:
            self.data = Subset(dataset, indices.tolist())
            self.sampler: DistributedSampler | None = DistributedSampler(
                self.data, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True
            )
            self._samples = len(self.sampler)
        else:
            self.data = Subset(dataset, indices[rank::world_size].tolist())
            self.sampler = None
            self._samples = len(self.data)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        full, rest = divmod(self._samples, self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    @property
    def num_samples(self) -> int:
        return self._samples

    def _loader(self) -> DataLoader:
        if self.sampler is not None:
            self.sampler.set_epoch(self.epoch)
        if self.train and self.plan.progressive is not None:
            res = self.plan.train_resolution(self.epoch)
            self.dataset.transform = train_transform(self.plan, self.dataset.stored_size, res)
        workers = self.num_workers
        return DataLoader(
            self.data,
            batch_size=self.batch_size,
            sampler=self.sampler,
            shuffle=False,
            num_workers=workers,
            pin_memory=self.stage.device.type == "cuda",
            drop_last=self.drop_last,
            timeout=self.timeout_s if workers else 0,
            generator=torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch),
            persistent_workers=False,
        )

    def host_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(uint8 images (N, C, H, W), labels (N,), indices (N,)) as the DataLoader collates them."""
        it = iter(self._loader())
        while True:
            try:
                images, labels, index = next(it)
            except StopIteration:
                return
            except DataError as exc:
                raise DataError(_one_line(exc)) from None
            except RuntimeError as exc:
                text = _one_line(exc)
                if "timed out" in str(exc):
                    text = f"no batch in {self.timeout_s:g} s (data.loader_timeout_s); {text}"
                raise DataError(f"{self.name}: the DataLoader failed: {text}") from None
            yield images, labels, index

    def __iter__(self) -> Iterator[Batch]:
        g = epoch_generator(self.seed, self.epoch, stream=1)  # device-side rotation angles
        for images, labels, index in self.host_batches():
            x = self.stage.images(self.stage.upload(images), g)
            yield Batch(images=x, targets=self.stage.labels(labels), indices=self.stage.labels(index))


# ------------------------------------------------------------------------------ build
def _image_folders(cfg: DataConfig) -> dict[str, ImageFolderIndex]:
    root = Path(cfg.root or "")
    if not root.is_dir():
        raise DataError(f"data.root: {root} not found (a folder holding train/ and val/)")
    folders = {split: list_image_folder(root / split) for split in ("train", "val")}
    if folders["val"].classes != folders["train"].classes:
        raise DataError(f"{root / 'val'}: its class folders differ from those of {root / 'train'}")
    return folders


def _check_labels(labels: np.ndarray, num_classes: int, where: str) -> None:
    if len(labels) == 0:
        raise DataError(f"{where}: the split is empty")
    top = int(labels.max())
    if top >= num_classes:
        raise DataError(f"data.num_classes: labels in {where} go up to {top}, num_classes is {num_classes}")


def build(cfg: DataConfig, *, device: torch.device, seed: int, rank: int, world_size: int) -> DataBundle:
    """Train and validation loaders through torchvision and a DataLoader."""
    plan = Plan.from_config(cfg)
    info = INFOS[cfg.dataset]
    num_classes = cfg.num_classes or info.num_classes
    datasets: dict[str, TensorImages | FolderImages] = {}
    if cfg.dataset == "imagenet":
        for split, folder in _image_folders(cfg).items():
            _check_labels(folder.labels, num_classes, str(folder.root))
            datasets[split] = FolderImages(folder, _identity)
        stored = None
    else:
        for split in ("train", "val"):
            images, labels = load_configured_split(cfg, split)
            _check_labels(labels.numpy(), num_classes, f"{cfg.dataset} {split}")
            datasets[split] = TensorImages(images, labels, _identity)
        stored = datasets["train"].stored_size
    datasets["holdout"] = copy.copy(datasets["train"])  # the training images, seen as evaluation sees them
    datasets["train"].transform = train_transform(plan, stored, plan.train_resolution(0))
    datasets["val"].transform = val_transform(plan)
    datasets["holdout"].transform = val_transform(plan)
    return build_bundle(
        cfg,
        plan,
        train_labels=np.asarray(datasets["train"].labels),
        val_samples=len(datasets["val"]),
        make=lambda split, **options: TorchLoader(datasets[split], name=f"{cfg.dataset} {split}", **options),
        source=f"torch, {cfg.num_workers} workers",
        stored=stored,
        device_hflip=False,  # the workers flip
        device=device,
        seed=seed,
        rank=rank,
        world_size=world_size,
    )
