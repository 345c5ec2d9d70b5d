"""The process group, when launched by `torchrun` (PyTorch DDP), and helpers that are no-ops alone.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; with WORLD_SIZE > 1 we join the default process
group (NCCL on GPUs, gloo on CPU). Only rank 0 writes files.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import NoReturn

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place among the ranks."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launched: bool = False  # started by torchrun (a process group even for one rank)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1 or self.launched


def world_from_env() -> World:
    """Read the ranks torchrun set (a single process when unset)."""
    return World(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        launched="TORCHELASTIC_RUN_ID" in os.environ,
    )


def init(world: World, device: torch.device) -> None:
    """Join the process group if there is more than one rank (idempotent)."""
    if not world.distributed or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, rank=world.rank, world_size=world.world_size)
    if world.is_main:
        logging.getLogger("harness").info(
            "process group: backend %s, %d rank(s)", dist.get_backend(), world.world_size
        )


def strip_option(argv: list[str], name: str) -> list[str]:
    """`argv` without `name VALUE` / `name=VALUE`."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(name + "="):
            out.append(arg)
    return out


def hand_to_torchrun(nproc: int, argv: list[str]) -> NoReturn:
    """Replace this process by `torchrun --standalone --nproc_per_node=N -m harness <argv>`.

    PyTorch's own launcher starts, watches and signals the ranks; harness adds none of its own.
    """
    args = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "harness",
        *strip_option(argv, "--nproc"),
    ]
    os.execv(sys.executable, args)


def shutdown() -> None:
    """Leave the process group if we joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensors: list[torch.Tensor]) -> None:
    """Sum each tensor across ranks in place (exact count-weighted reduction)."""
    if dist.is_available() and dist.is_initialized():
        for t in tensors:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)


def average_buffers(model: torch.nn.Module) -> None:
    """Average floating-point buffers (BatchNorm running statistics) across ranks, in place.

    Each rank updates its running statistics from its own shard during training; before an
    evaluation or a checkpoint every rank must hold the same ones (as timm's `--dist-bn reduce`).
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    world = dist.get_world_size()
    for buf in model.buffers():
        if buf.is_floating_point():
            dist.all_reduce(buf, op=dist.ReduceOp.SUM)
            buf.div_(world)


def all_reduce_max(value: int) -> int:
    """Largest integer across ranks (used to agree on stop flags)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    t = torch.tensor([value], dtype=torch.int64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def barrier() -> None:
    """Wait for every rank (no-op alone)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
