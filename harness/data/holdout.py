"""The held-out validation split: a seeded, class-stratified share of the training split.

`carve(spec, labels)` splits the positions of the training split into the positions a run may
train on and the held-out ones (`Holdout`); every backend calls it on the whole split's labels
before `data.train_subset` is drawn from the rest, so the subset never holds a held-out image and
the same spec on the same data always holds out the same images, whatever the backend, batch or
world size. Under DDP the train positions are sharded by the training loader and the held-out
ones by the evaluation loader (each rank a disjoint slice), so a sample is in exactly one shard
and never both trained on and held out.

Allocation: each class keeps `round(n_c * fraction)` of its `n_c` samples (`size`: the largest
remainder method over `size * n_c / n`, so the total is exactly `size`); the samples of a class
are a random permutation's first ones (numpy's PCG64 seeded with `spec.seed`, classes in label
order). A class left with no training or no held-out sample is an error naming the field.

`Holdout.digest` (sha256 of the sorted held-out positions, 16 hex digits) goes into the run's
provenance, the `holdout_hash` column and the teacher cache's identity.

May import: numpy, `harness.config.recipe` (the spec), `harness.errors`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from harness.config.recipe import HoldoutConfig
from harness.errors import DataError

FIELD = "data.holdout"


@dataclass(frozen=True)
class Holdout:
    """The positions (in the whole training split) to train on and to hold out, both sorted."""

    train: np.ndarray
    held_out: np.ndarray

    @property
    def digest(self) -> str:
        """sha256[:16] of the held-out positions (int64, little-endian, sorted)."""
        return positions_digest(self.held_out)


def positions_digest(positions: np.ndarray) -> str:
    """sha256[:16] of sorted int64 positions: the same set gives the same digest everywhere."""
    data = np.sort(np.asarray(positions, dtype="<i8"))
    return hashlib.sha256(data.tobytes()).hexdigest()[:16]


def class_quota(counts: np.ndarray, spec: HoldoutConfig) -> np.ndarray:
    """Held-out samples per class: `round(n_c * fraction)`, or `size` shared in proportion to the
    classes' sizes by the largest remainder method (ties to the lower label)."""
    n = int(counts.sum())
    if spec.fraction is not None:
        return np.floor(counts * spec.fraction + 0.5).astype(np.int64)
    assert spec.size is not None
    if spec.size >= n:
        raise DataError(f"{FIELD}.size: {spec.size} is not smaller than the training split ({n} samples)")
    exact = counts * (spec.size / n)
    quota = np.floor(exact).astype(np.int64)
    rest = spec.size - int(quota.sum())
    order = np.lexsort((np.arange(len(counts)), -(exact - quota)))  # largest remainder first
    quota[order[:rest]] += 1
    return quota


def carve(spec: HoldoutConfig | None, labels: np.ndarray) -> Holdout:
    """Split the positions of a training split with `labels` into trained and held-out ones."""
    labels = np.asarray(labels, dtype=np.int64)
    everything = np.arange(len(labels))
    if spec is None:
        return Holdout(everything, everything[:0])
    present, counts = np.unique(labels, return_counts=True)
    quota = class_quota(counts, spec)
    what = f"fraction {spec.fraction:g}" if spec.fraction is not None else f"size {spec.size}"
    for label, n_c, q in zip(present.tolist(), counts.tolist(), quota.tolist(), strict=True):
        if q == 0 or q >= n_c:
            side = "no held-out" if q == 0 else "no training"
            raise DataError(
                f"{FIELD}: {what} leaves class {label} ({n_c} training samples) with {side} sample; "
                "each class needs at least one of each"
            )
    rng = np.random.Generator(np.random.PCG64(spec.seed))
    held: list[np.ndarray] = []
    for label, q in zip(present.tolist(), quota.tolist(), strict=True):
        members = np.flatnonzero(labels == label)
        held.append(members[rng.permutation(len(members))[:q]])
    held_out = np.sort(np.concatenate(held))
    keep = np.ones(len(labels), dtype=bool)
    keep[held_out] = False
    return Holdout(everything[keep], held_out)
