"""Checkpoints: written atomically (temporary file, fsync, rename), read with weights_only=True.

A checkpoint holds plain tensors and containers only, so `torch.load(weights_only=True)` can
read it: model, optimizer, scheduler, RNG states (torch, CUDA, Python, NumPy) and the loop
position (epoch, step, batch within the epoch, partial-epoch loss sums). There is no grad scaler
to save: mixed precision is bf16 autocast, which needs no loss scaling.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.errors import RunStateError, TeacherError
from harness.store.files import atomic_write_bytes

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
    """Every global generator training may draw from: torch (CPU and each CUDA device), Python's
    `random` and NumPy's legacy global generator (timm's mixup, user code), as plain tensors and
    lists so that `torch.load(weights_only=True)` reads them back."""
    py_version, py_internal, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [py_version, list(py_internal), py_gauss],
        "numpy": [np_kind, torch.from_numpy(np_keys.astype(np.int64)), np_pos, np_has_gauss, np_gauss],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` saved (checkpoints from before the Python/NumPy states load too)."""
    torch.set_rng_state(state["torch"])
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
