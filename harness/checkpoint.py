"""Checkpoints: written atomically (temporary file, fsync, rename), read with weights_only=True.

A checkpoint holds plain tensors and containers only, so `torch.load(weights_only=True)` can
read it: model, optimizer, scheduler, RNG states and the loop position (epoch and step).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from harness.errors import RunStateError, TeacherError
from harness.metrics import atomic_write_bytes

FORMAT = 1


def save(path: Path, state: dict[str, Any]) -> None:
    """Atomically write `state` to `path`."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buffer)
    atomic_write_bytes(path, lambda fh: fh.write(buffer.getbuffer()))


def load(path: Path, *, error: type[Exception] = RunStateError) -> dict[str, Any]:
    """Read a checkpoint safely (weights_only=True); problems raise `error` naming the file."""
    if not path.exists():
        raise error(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise error(f"{path}: not a readable checkpoint ({first})") from None
    if not isinstance(state, dict):
        raise error(f"{path}: not a harness checkpoint (got {type(state).__name__})")
    return state


def model_state(path: Path) -> dict[str, torch.Tensor]:
    """The model weights in a harness checkpoint or a bare state_dict file."""
    state = load(path, error=TeacherError)
    weights = state.get("model", state)
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise TeacherError(f"{path}: holds no model state_dict")
    return weights


def rng_state() -> dict[str, Any]:
    """The torch RNG states (CPU and every CUDA device)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` saved."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
