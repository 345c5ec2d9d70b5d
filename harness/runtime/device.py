"""Where and how a run computes: the device, seeds and kernels, bf16 autocast, channels-last.

`resolve_device` picks the device (under `torchrun`, this rank's GPU); `configure_runtime` seeds
every generator and chooses deterministic kernels where the recipe asks; `autocast_dtype` and
`use_channels_last` turn the recipe's `runtime.amp` and `runtime.channels_last` (`auto`: on CUDA
only) into what the training step and evaluation use; `autocast` enters it.
"""

from __future__ import annotations

import contextlib

import torch

from harness.config.recipe import RuntimeConfig
from harness.errors import HarnessError
from harness.runtime import distributed


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
    """Channels-last memory format: on CUDA by default, on CPU only when asked."""
    return runtime.channels_last == "on" or (runtime.channels_last == "auto" and device.type == "cuda")


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """`torch.autocast` to `dtype` on `device`, or nothing when `dtype` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
