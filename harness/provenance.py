"""Where a run's numbers came from: versions, code commit, machine, command line."""

from __future__ import annotations

import platform
import socket
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import timm
import torch

import harness


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """Commit of the harness checkout (suffixed `-dirty` with local changes); None outside git."""
    root = Path(harness.__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if dirty else head


def device_name(device: torch.device) -> str:
    """Human-readable device: the GPU's name, or the CPU's architecture and core count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import os

    return f"cpu {platform.machine()} x{os.cpu_count()}"


def versions() -> dict[str, str]:
    return {
        "harness_version": harness.__version__,
        "torch_version": torch.__version__,
        "timm_version": timm.__version__,
    }


def collect(device: torch.device, recipe_hash: str, world_size: int) -> dict[str, Any]:
    """The provenance record saved as provenance.json."""
    return {
        **versions(),
        "python": sys.version.split()[0],
        "git_commit": git_commit(),
        "device": device.type,
        "device_name": device_name(device),
        "world_size": world_size,
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "recipe_hash": recipe_hash,
        "command": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
