"""Where a run's numbers came from: versions, code commit, machine, command line."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import timm
import torch

import harness
from harness.models import pretrained
from harness.store.files import write_json


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


def scheduler() -> dict[str, Any]:
    """Where the run was placed: the Slurm job id, array index, node and allocated devices, or the
    sweep's worker slot (`--jobs N`: its GPU or its CPU cores); {} for a plain `harness run`."""
    env = os.environ
    facts: dict[str, Any] = {}
    if "SLURM_JOB_ID" in env:
        array_job, index = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
        facts = {
            "name": "slurm",
            "job_id": f"{array_job}_{index}" if array_job and index else env["SLURM_JOB_ID"],
            "raw_job_id": env["SLURM_JOB_ID"],
            "array_job_id": array_job,
            "array_index": int(index) if index else None,
            "node": env.get("SLURMD_NODENAME") or env.get("SLURM_NODELIST"),
            "gpus": env.get("SLURM_JOB_GPUS"),
            "cpus_per_task": env.get("SLURM_CPUS_PER_TASK"),
            "restart_count": int(env.get("SLURM_RESTART_COUNT") or 0),
        }
    elif "HARNESS_WORKER_CPUS" in env or "HARNESS_WORKER_SLOT" in env:
        facts = {"name": "local", "slot": env.get("HARNESS_WORKER_SLOT")}
    if facts:
        facts["cuda_visible_devices"] = env.get("CUDA_VISIBLE_DEVICES")
        if hasattr(os, "sched_getaffinity"):
            facts["cpus"] = sorted(os.sched_getaffinity(0))
    return facts


def environment(device: torch.device, world_size: int, amp: torch.dtype | None) -> dict[str, Any]:
    """Where a run trains, as its metrics rows record it: device type, world size, autocast
    dtype ("off" without), the package versions and the git commit."""
    return {
        "device": device.type,
        "world_size": world_size,
        "amp": str(amp).replace("torch.", "") if amp else "off",
        **versions(),
        "git_commit": git_commit(),
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
        "scheduler": scheduler(),
    }


def report_pretrained(
    origins: dict[str, dict[str, Any] | None], say: Callable[[str], None], provenance_path: Path | None
) -> None:
    """Where the run's pretrained weights came from (`origins`: model, teacher; None where not
    pretrained): one line each through `say`, and into `provenance_path` where given and present."""
    found = {k: v for k, v in origins.items() if v}
    for key, value in found.items():
        say(f"{key} weights: timm pretrained {pretrained.describe(value)}")
    if found and provenance_path is not None and provenance_path.exists():
        record_pretrained(provenance_path, found)


def record_pretrained(provenance_path: Path, origins: dict[str, dict[str, Any]]) -> None:
    """Add the weights' origins to a run's provenance.json."""
    record(provenance_path, "pretrained", origins)


def record(provenance_path: Path, key: str, value: Any) -> None:
    """Set `key` of a run's provenance.json (rewritten atomically) where the file exists."""
    if not provenance_path.exists():
        return
    try:
        data = json.loads(provenance_path.read_text())
    except (OSError, json.JSONDecodeError):
        data = {}
    data[key] = value
    write_json(provenance_path, data)
