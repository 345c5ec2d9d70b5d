"""Reproducible ffcv training views: each sample's crop, flip and angle from (view_seed, epoch, index).

ffcv's own random crops draw from numba's unseeded generator, so no two runs see the same images
and no view can be replayed. Here every random number of a view is a counter-based draw: a
splitmix64 hash (Steele et al. 2014) of (view_seed, epoch, sample index, draw number) turned into
a float in [0, 1). A view is then a pure function of those numbers, whatever thread decodes the
sample, in whatever order and batch:

    view = (top, left, height, width, flip, angle)     (float32, `FFCV_VIEW_DIM` = 6)

the crop in the stored image's pixels (a translate of the zero-padded image has a negative or
overhanging `top`/`left` and the stored size), the horizontal flip (0/1) and the rotation in
degrees. The random-resized crop follows torchvision's and ffcv's `get_random_crop` (ten tries
of a scale in [scale_min, 1] and a log-uniform aspect ratio in [3/4, 4/3], else the centre crop
of the clamped ratio); the translate draws (dy, dx) in [-padding, padding] each.

`SeededCropDecoder` (built by `seeded_decoder`) is an ffcv decoder operation, compiled by numba
like ffcv's own, that decodes and crops with these views. ffcv compiles a pipeline once and
numba freezes captured arrays as constants, so the (view_seed, epoch) pair it reads is held in a
small array the loader updates before each epoch and that the compiled code reads through its
address (`ViewState`). The loader computes the same views on the host for a batch's samples
(`epoch_views`), records them in `Batch.views` and flips and rotates on the device from them, so
a teacher cache can store a view next to the teacher's output on it.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any

import numba as nb
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

FFCV_VIEW_DIM = 6  # top, left, height, width, flip, angle
RRC, TRANSLATE, CENTRE = 0, 1, 2  # how a view's crop is drawn

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


@intrinsic
def _int64_at(typingctx, address, offset):
    """The int64 at `address + 8 * offset` (a host array the compiled code must not freeze)."""
    sig = types.int64(types.uint64, types.int64)

    def codegen(context, builder, signature, args):
        base = builder.inttoptr(args[0], ir.IntType(64).as_pointer())
        return builder.load(builder.gep(base, [args[1]]))

    return sig, codegen


@nb.njit(cache=True)
def _mix(z: np.uint64) -> np.uint64:
    """splitmix64's finaliser: a bijection of 64-bit words that mixes every bit."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@nb.njit(cache=True)
def uniform(seed: int, epoch: int, sample: int, draw: int) -> float:
    """A float in [0, 1) determined by (seed, epoch, sample, draw) alone."""
    z = _mix(np.uint64(seed) + _GOLDEN)
    z = _mix(z ^ (np.uint64(epoch) + _GOLDEN))
    z = _mix(z ^ (np.uint64(sample) + _GOLDEN))
    z = _mix(z ^ (np.uint64(draw) + _GOLDEN))
    return float(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)  # 53 bits


@nb.njit(cache=True)
def draw_crop(
    mode: int,
    seed: int,
    epoch: int,
    sample: int,
    height: int,
    width: int,
    scale_lo: float,
    log_r_lo: float,
    log_r_hi: float,
    param: float,
) -> tuple[int, int, int, int]:
    """(top, left, h, w) of `sample`'s crop: random-resized (`param` unused), a translate by up
    to `param` pixels, or the centre crop of side `param` x the shorter side."""
    height, width = np.int64(height), np.int64(width)
    if mode == TRANSLATE:
        pad = int(param)
        dy = int(uniform(seed, epoch, sample, 0) * (2 * pad + 1)) - pad
        dx = int(uniform(seed, epoch, sample, 1) * (2 * pad + 1)) - pad
        return dy, dx, height, width
    if mode == CENTRE:
        c = int(param * min(height, width))
        return (height - c) // 2, (width - c) // 2, c, c
    area = height * width
    for attempt in range(10):
        u = uniform(seed, epoch, sample, 4 * attempt)
        target = area * (scale_lo + (1.0 - scale_lo) * u)
        aspect = np.exp(log_r_lo + (log_r_hi - log_r_lo) * uniform(seed, epoch, sample, 4 * attempt + 1))
        w = round(np.sqrt(target * aspect))
        h = round(np.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            i = int(uniform(seed, epoch, sample, 4 * attempt + 2) * (height - h + 1))
            j = int(uniform(seed, epoch, sample, 4 * attempt + 3) * (width - w + 1))
            return i, j, h, w
    ratio = width / height
    lo, hi = np.exp(log_r_lo), np.exp(log_r_hi)
    if ratio < lo:
        w, h = width, round(width / lo)
    elif ratio > hi:
        h, w = height, round(height * hi)
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


@nb.njit(cache=True)
def _views(
    mode: int,
    seed: int,
    epoch: int,
    samples: np.ndarray,
    heights: np.ndarray,
    widths: np.ndarray,
    scale_lo: float,
    log_r_lo: float,
    log_r_hi: float,
    param: float,
    hflip: bool,
    degrees: float,
) -> np.ndarray:
    out = np.zeros((len(samples), 6), dtype=np.float32)
    for k in range(len(samples)):
        s = samples[k]
        i, j, h, w = draw_crop(
            mode, seed, epoch, s, heights[s], widths[s], scale_lo, log_r_lo, log_r_hi, param
        )
        out[k, 0], out[k, 1], out[k, 2], out[k, 3] = i, j, h, w
        if hflip:
            out[k, 4] = 1.0 if uniform(seed, epoch, s, 40) < 0.5 else 0.0
        if degrees > 0:
            out[k, 5] = (uniform(seed, epoch, s, 41) * 2.0 - 1.0) * degrees
    return out


class ViewSpec:
    """How a split's training views are drawn (everything but the seed and the epoch)."""

    def __init__(
        self,
        mode: int,
        *,
        scale_min: float = 0.08,
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        padding: int = 0,
        centre_ratio: float = 1.0,
        hflip: bool = False,
        rotation_degrees: float = 0.0,
    ) -> None:
        self.mode = mode
        self.scale_min = float(scale_min)
        self.log_ratio = (float(np.log(ratio[0])), float(np.log(ratio[1])))
        self.param = float(padding if mode == TRANSLATE else centre_ratio)
        self.hflip = bool(hflip)
        self.rotation_degrees = float(rotation_degrees)

    def identity(self) -> dict[str, Any]:
        return {
            "mode": ("rrc", "translate", "centre")[self.mode],
            "scale_min": self.scale_min,
            "log_ratio": list(self.log_ratio),
            "param": self.param,
            "hflip": self.hflip,
            "rotation_degrees": self.rotation_degrees,
        }

    def views(
        self, seed: int, epoch: int, samples: np.ndarray, heights: np.ndarray, widths: np.ndarray
    ) -> np.ndarray:
        """(len(samples), 6) float32 views of the .beton samples `samples` at `epoch`."""
        return _views(
            self.mode,
            int(seed),
            int(epoch),
            np.ascontiguousarray(samples, dtype=np.int64),
            np.ascontiguousarray(heights, dtype=np.int64),
            np.ascontiguousarray(widths, dtype=np.int64),
            self.scale_min,
            self.log_ratio[0],
            self.log_ratio[1],
            self.param,
            self.hflip,
            self.rotation_degrees,
        )


class ViewState:
    """(view_seed, epoch) where the compiled decoder reads them: set the epoch before iterating."""

    def __init__(self, seed: int) -> None:
        self.values = np.array([seed, 0], dtype=np.int64)
        self.address = np.uint64(self.values.ctypes.data)

    @property
    def seed(self) -> int:
        return int(self.values[0])

    def set_epoch(self, epoch: int) -> None:
        self.values[1] = epoch


@functools.cache
def decoder_class() -> type:
    """`SeededCropDecoder`, built on ffcv's crop decoder (ffcv is imported on first use)."""
    from ffcv.fields.rgb_image import IMAGE_MODES, ResizedCropRGBImageDecoder
    from ffcv.libffcv import imdecode, resize_crop
    from ffcv.pipeline.allocation_query import AllocationQuery
    from ffcv.pipeline.compiler import Compiler

    class SeededCropDecoder(ResizedCropRGBImageDecoder):
        """Decode, then crop each sample with its seeded view: resize the crop to `output_size`
        (random-resized and centre crops) or translate it with zero fill (at the stored size)."""

        def __init__(self, output_size: tuple[int, int], spec: ViewSpec, state: ViewState) -> None:
            super().__init__(output_size)
            self.spec, self.state = spec, state

        @property
        def get_crop_generator(self):  # ffcv's abstract hook; the crops are drawn in `decode`
            return None

        def declare_state_and_memory(self, previous_state):
            if self.spec.mode != TRANSLATE:
                return super().declare_state_and_memory(previous_state)
            heights, widths = self.metadata["height"], self.metadata["width"]
            h, w = int(heights.max()), int(widths.max())
            if int(heights.min()) != h or int(widths.min()) != w:
                raise TypeError("a translated crop keeps the stored size: images must share one size")
            self.output_size = (h, w)
            shape, dtype = (h, w, 3), np.dtype("<u1")
            state = replace(previous_state, jit_mode=True, shape=shape, dtype=dtype)
            return state, (AllocationQuery(shape, dtype), AllocationQuery((h * w * 3,), dtype))

        def generate_code(self):
            jpg = IMAGE_MODES["jpg"]
            mem_read = self.memory_read
            my_range = Compiler.get_iterator()
            imdecode_c = Compiler.compile(imdecode)
            resize_crop_c = Compiler.compile(resize_crop)
            spec = self.spec
            mode, scale_lo, param = spec.mode, spec.scale_min, spec.param
            log_r_lo, log_r_hi = spec.log_ratio
            address = self.state.address
            translate = mode == TRANSLATE

            def decode(batch_indices, my_storage, metadata, storage_state):
                destination, temp_storage = my_storage
                seed, epoch = _int64_at(address, 0), _int64_at(address, 1)
                for dst_ix in my_range(len(batch_indices)):
                    source_ix = batch_indices[dst_ix]
                    field = metadata[source_ix]
                    image_data = mem_read(field["data_ptr"], storage_state)
                    height, width = np.uint32(field["height"]), np.uint32(field["width"])
                    if field["mode"] == jpg:
                        buffer = temp_storage[dst_ix]
                        imdecode_c(image_data, buffer, height, width, height, width, 0, 0, 1, 1, False, False)
                        image = buffer.reshape(-1)[: 3 * height * width].reshape(height, width, 3)
                    else:
                        image = image_data.reshape(height, width, 3)
                    i, j, h, w = draw_crop(
                        mode, seed, epoch, source_ix, height, width, scale_lo, log_r_lo, log_r_hi, param
                    )
                    out = destination[dst_ix]
                    if translate:
                        out[:] = 0
                        r0, r1 = max(0, -i), min(h, height - i)
                        c0, c1 = max(0, -j), min(w, width - j)
                        if r0 < r1 and c0 < c1:
                            out[r0:r1, c0:c1] = image[r0 + i : r1 + i, c0 + j : c1 + j]
                    else:
                        resize_crop_c(image, i, i + h, j, j + w, out)
                return destination[: len(batch_indices)]

            decode.is_parallel = True
            decode.no_disk_cache = True  # it reads (seed, epoch) through an address of this process
            return decode

    return SeededCropDecoder


def seeded_decoder(output_size: tuple[int, int] | None, spec: ViewSpec, state: ViewState) -> Any:
    """A `SeededCropDecoder` (`output_size` None: the stored size, for translates)."""
    return decoder_class()(output_size or (0, 0), spec, state)
