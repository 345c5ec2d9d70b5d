"""ffcv's pieces that the ffcv backend uses, and the backend's own ffcv classes:
`SampleIndexDecoder` (each sample's .beton position, for `Batch.indices`), `ShardedShuffle` (the
seeded, sharded training order), `WatchedEpoch` and `WatchedLoader` (trap 2 of
`harness.data.ffcv_loader`: a failing or stuck loader thread becomes a `DataError`, never a hang).
`TORCH_OPERATIONS` are the ffcv operations that run torch code (trap 1: no numba operation may
follow one).

ffcv is an optional extra: this module imports it, so it is imported only when ffcv is wanted,
through `harness.data.ffcv_loader.ffcv_api()`. It calls `require_ffcv()` before its first ffcv
import all the same: numba's cache, torch's thread count and ffcv's numba types (traps 4 and 5)
are set up before ffcv is ever imported, or ffcv's absence is a one-line `DataError`.

May import: ffcv, numpy, torch, `harness.data.ffcv_env`, `harness.errors`.
"""

# ruff: noqa: E402 (ffcv is imported after require_ffcv() on purpose)

from __future__ import annotations

import queue
import time
from dataclasses import replace

import numpy as np
import torch

from harness.data.ffcv_env import require_ffcv
from harness.errors import DataError

require_ffcv()  # before ffcv's first import (see the module's docstring)

from ffcv.fields import IntField, RGBImageField
from ffcv.fields.basics import IntDecoder
from ffcv.fields.rgb_image import (
    CenterCropRGBImageDecoder,
    RandomResizedCropRGBImageDecoder,
    SimpleRGBImageDecoder,
)
from ffcv.loader import Loader, OrderOption
from ffcv.loader.epoch_iterator import IS_CUDA, EpochIterator
from ffcv.pipeline.allocation_query import AllocationQuery
from ffcv.pipeline.compiler import Compiler
from ffcv.pipeline.operation import Operation
from ffcv.pipeline.pipeline_spec import PipelineSpec
from ffcv.reader import Reader
from ffcv.transforms import (
    Convert,
    RandomHorizontalFlip,
    RandomTranslate,
    ToDevice,
    ToTensor,
    ToTorchImage,
    View,
)
from ffcv.transforms.module import ModuleWrapper
from ffcv.traversal_order.base import TraversalOrder

__all__ = [
    "TORCH_OPERATIONS",
    "CenterCropRGBImageDecoder",
    "IntDecoder",
    "IntField",
    "Operation",
    "OrderOption",
    "PipelineSpec",
    "RGBImageField",
    "RandomHorizontalFlip",
    "RandomResizedCropRGBImageDecoder",
    "RandomTranslate",
    "Reader",
    "SampleIndexDecoder",
    "ShardedShuffle",
    "SimpleRGBImageDecoder",
    "ToTensor",
    "WatchedEpoch",
    "WatchedLoader",
]

_POLL_S = 0.25

#: ffcv operations that run torch code: a numba operation after one hangs the loader (ffcv #396).
TORCH_OPERATIONS = (ToTensor, ToDevice, ToTorchImage, Convert, View, ModuleWrapper, torch.nn.Module)


class SampleIndexDecoder(Operation):
    """Decodes nothing: writes each sample's position in the .beton (for `Batch.indices`)."""

    def declare_state_and_memory(self, previous_state):
        shape, dtype = (1,), np.dtype("<i8")
        state = replace(previous_state, jit_mode=True, shape=shape, dtype=dtype)
        return state, AllocationQuery(shape, dtype)

    def generate_code(self):
        def positions(batch_indices, destination, metadata, storage_state):
            for i in range(len(batch_indices)):
                destination[i, 0] = batch_indices[i]
            return destination[: len(batch_indices)]

        return positions


class ShardedShuffle(TraversalOrder):
    """Each epoch a permutation seeded by (seed, epoch); rank r takes the r-th equal slice.

    ffcv's Loader "instantiates" an order instance by calling it with itself.
    """

    def __init__(self, seed: int, rank: int, world_size: int) -> None:
        self.shuffle_seed, self.rank, self.world_size = seed, rank, world_size

    def __call__(self, loader):
        super().__init__(loader)
        self.indices = np.asarray(self.indices)
        return self

    def sample_order(self, epoch: int):
        perm = np.random.default_rng([self.shuffle_seed, epoch]).permutation(len(self.indices))
        share = len(self.indices) // self.world_size
        return self.indices[perm[self.rank * share : (self.rank + 1) * share]]


_FAILED = object()  # what the epoch thread posts when it fails


class WatchedEpoch(EpochIterator):
    """ffcv's epoch thread, with its failure handed to the consumer and a stall timeout."""

    def __init__(self, loader, order) -> None:
        self.failure: BaseException | None = None
        super().__init__(loader, order)  # starts the thread

    def run(self) -> None:
        try:
            super().run()
        except BaseException as exc:
            self.failure = exc
            self._post(_FAILED)

    def _post(self, item) -> None:
        while not self.terminate_event.is_set():
            try:
                self.output_queue.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def _fail(self, message: str, cause: BaseException | None = None):
        self.close()
        raise DataError(f"{self.loader.fname}: {message}") from cause

    def __next__(self):
        started = time.monotonic()
        timeout = self.loader.stall_timeout_s
        while True:
            try:
                item = self.output_queue.get(timeout=_POLL_S)
                break
            except queue.Empty:
                if not self.is_alive() and self.output_queue.empty():
                    self._fail("the ffcv loader thread ended without finishing the epoch")
                if time.monotonic() - started > timeout:
                    self._fail(
                        f"no batch from the ffcv loader in {timeout:g} s (its thread is stuck; "
                        "data.loader_timeout_s sets this limit)"
                    )
        if item is _FAILED:
            exc = self.failure
            text = str(exc).strip().splitlines()[0] if exc is not None and str(exc).strip() else ""
            self._fail(f"the ffcv loader failed: {type(exc).__name__}{': ' + text if text else ''}", exc)
        if item is None:
            self.close()
            raise StopIteration
        slot, result = item
        if IS_CUDA:
            self.current_stream.wait_stream(self.cuda_streams[slot])
        return result


class WatchedLoader(Loader):
    """ffcv's Loader whose epochs run in `WatchedEpoch` threads."""

    stall_timeout_s: float = 600.0

    def __iter__(self):
        Compiler.set_num_threads(self.num_workers)
        order = self.next_traversal_order()
        self.next_epoch += 1
        if self.code is None or self.recompile:
            self.generate_code()
        return WatchedEpoch(self, order[: len(self) * self.batch_size])
