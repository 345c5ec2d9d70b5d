"""`Runtime`: where and how this process computes, resolved once per run and handed around.

`Runtime.start(config, seed, device_name)` resolves the device (under `torchrun`, this rank's
GPU), joins the process group and seeds every generator and chooses the kernels, in that order
(the order every run has always used, so results stay bit-identical). What it returns is a frozen
value the training loop, the teacher (its build, evaluation and cache) and `harness eval` share:
the device, the autocast dtype (`amp`, None for none), the memory format (`channels_last`) and
the DDP world; `autocast()` and `prepare(images)` apply the last two the way a training step does.

May import: `harness.config`, `harness.runtime.device`, `harness.runtime.distributed`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch

from harness.config.recipe import RuntimeConfig
from harness.runtime import distributed
from harness.runtime.device import (
    autocast,
    autocast_dtype,
    configure_runtime,
    resolve_device,
    use_channels_last,
)
from harness.runtime.distributed import World


@dataclass(frozen=True)
class Runtime:
    """The device, precision, memory format and DDP world of one process's run."""

    device: torch.device
    amp: torch.dtype | None = None  # autocast dtype (bf16 on CUDA by default); None: full precision
    channels_last: bool = False  # channels-last memory format for models and images
    world: World = field(default_factory=World)

    @classmethod
    def resolve(cls, config: RuntimeConfig, device_name: str | None = None) -> Runtime:
        """What `config` (its device overridden by `device_name`) means on this machine, with
        no side effect: no process group joined, no generator seeded."""
        device = resolve_device(device_name or config.device)
        return cls(
            device=device,
            amp=autocast_dtype(config, device),
            channels_last=use_channels_last(config, device),
            world=distributed.world_from_env(),
        )

    @classmethod
    def start(cls, config: RuntimeConfig, seed: int, device_name: str | None = None) -> Runtime:
        """Resolve the runtime, join the process group (under `torchrun`), then seed every
        generator with `seed` and choose the kernels `config` asks for."""
        runtime = cls.resolve(config, device_name)
        distributed.init(runtime.world, runtime.device)
        configure_runtime(config, runtime.device, seed)
        return runtime

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast to `amp` on the device (nothing when `amp` is None)."""
        return autocast(self.device, self.amp)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """`images` in the memory format the models use."""
        if self.channels_last:
            return images.contiguous(memory_format=torch.channels_last)
        return images

    def place(self, model: torch.nn.Module) -> torch.nn.Module:
        """`model` moved to the device, in the memory format the images come in."""
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model
