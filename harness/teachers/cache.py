"""An augmentation-aware teacher cache: soft targets stored per sample AND per view.

Caching teacher outputs by sample index alone (as torchdistill does) is wrong under random
augmentation: later epochs would get the logits of another view (Beyer et al. 2022: the teacher
must see the student's exact view). Here every epoch's views are replayable from
(view_seed, epoch) (`MemoryLoader.epoch_views`, and the ffcv backend's seeded crops:
`FfcvLoader.epoch_views`), so the cache records, for each epoch, every
sample's view parameters and the teacher's output on that view; a student run with the same
view seed replays the same views and reads the soft targets instead of running the teacher.
Many students and seeds share one cache (fix `data.view_seed`).

Layout of a cache folder:
    meta.json              what it was made for (teacher weights hash, data, views, storage)
    epoch_<e>.arrow        Arrow IPC, one row per sample in index order: index, view (4 floats;
                           ffcv: 6, `harness.data.ffcv_views`),
                           then `logits` (K float32) or `topk_values` (k float16),
                           `topk_indices` (k int32) and `logsumexp` (float32)

`open_or_build` is what a run (and `harness cache-teacher`) calls: it checks the cache against
the teacher, data and views, builds it first where it is missing, and returns the
`CachedTeacher` that reads it.

With full logits a cached run equals the live-teacher run exactly (on CPU, when every batch has
the cache's batch size: oneDNN picks kernels by batch size). With top-k the other classes share
the remaining probability mass (at T = 1), which changes soft targets slightly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from harness.config.recipe import Recipe
from harness.data import DataBundle
from harness.data.base import Batch, BatchMaker, Identified, OrderedPass, Replayable
from harness.errors import RecipeError, TeacherError
from harness.runtime import distributed
from harness.runtime.runtime import Runtime
from harness.store.files import atomic_write_bytes, write_json
from harness.teachers.teacher import Teacher

log = logging.getLogger("harness")

FORMAT = 1


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes (identifies the teacher's weights)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def expected_meta(
    *,
    teacher_arch: str,
    teacher_source: str,
    weights: Path,
    data_identity: dict[str, Any],
    view_seed: int,
    num_samples: int,
    num_classes: int,
    topk: int | None,
    batch_size: int,
) -> dict[str, Any]:
    """What a cache for this teacher, data and views must say about itself."""
    data = {k: v for k, v in data_identity.items() if k != "augment"}
    return {
        "format": FORMAT,
        "teacher": {"arch": teacher_arch, "source": teacher_source, "weights_sha256": file_sha256(weights)},
        "data": data,
        "augmentation": {"augment": data_identity.get("augment"), "view_seed": view_seed},
        "num_samples": num_samples,
        "num_classes": num_classes,
        "storage": {"kind": "logits"} if topk is None or topk >= num_classes else {"kind": "topk", "k": topk},
        "batch_size": batch_size,
    }


def require_readers(recipe: Recipe) -> str | None:
    """Refuse to build ahead a cache that the recipe's runs would never read, and say which seeds
    do read it (the note, or None when every seed does).

    A run reads the cache only with `teacher.cache: true` (`harness.training.loop`), from the
    folder `open_or_build` finds: `teacher.cache_path`, else under its runs folder by the hash
    of its data, views and storage (`default_folder`). Its views replay from `data.view_seed`,
    which defaults to the run's seed: unset, the cache serves the runs of the recipe's seed alone.
    """
    where = f" in {recipe.source}" if recipe.source else ""
    if recipe.teacher is None:
        raise RecipeError(f"teacher: the recipe{where} names no teacher, so there is nothing to cache")
    if not recipe.teacher.cache:
        raise RecipeError(
            f"teacher.cache: false{where}, so its runs would never read this cache; set teacher.cache: "
            "true (or --set teacher.cache=true) with a fixed data.view_seed to share it across seeds"
        )
    if recipe.data.view_seed is None:
        return (
            f"data.view_seed is unset{where}: the cache holds the views of seed {recipe.seed} and serves "
            "the runs of that seed alone; fix data.view_seed to share it across seeds"
        )
    return None


def default_folder(root: Path, meta: dict[str, Any]) -> Path:
    """`<root>/<teacher source>-<hash of data, views and storage>`: one cache per combination."""
    blob = json.dumps(
        [meta["data"], meta["augmentation"], meta["storage"], meta["num_samples"]], sort_keys=True
    )
    safe = re.sub(r"[^A-Za-z0-9_.@-]", "_", meta["teacher"]["source"])[:80]
    return root / f"{safe}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


#: Fields a cache must agree on with the run that reads it (the message names the first that differs).
MATCHED = ("format", "teacher", "data", "augmentation", "num_samples", "num_classes", "storage")


def check_meta(folder: Path, found: dict[str, Any], expected: dict[str, Any], epochs: int) -> None:
    """Refuse a cache made for another teacher, data, views or storage, or too few epochs."""
    for key in MATCHED:
        if found.get(key) != expected[key]:
            what = key.replace("_", " ")
            raise TeacherError(
                f"{folder}: stale teacher cache: made for another {what} "
                f"({json.dumps(found.get(key), sort_keys=True)[:160]} != "
                f"{json.dumps(expected[key], sort_keys=True)[:160]}); rebuild it with "
                "`harness cache-teacher RECIPE --rebuild` or remove teacher.cache_path"
            )
    if found.get("epochs", 0) < epochs:
        raise TeacherError(
            f"{folder}: teacher cache holds {found.get('epochs', 0)} epochs, the run needs {epochs}; "
            "rebuild it with `harness cache-teacher RECIPE --rebuild`"
        )


def read_meta(folder: Path) -> dict[str, Any]:
    """The cache's meta.json (a clear error if unreadable)."""
    try:
        data = json.loads((folder / "meta.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise TeacherError(f"{folder}: unreadable teacher cache meta.json ({exc})") from None
    if not isinstance(data, dict):
        raise TeacherError(f"{folder}: not a teacher cache")
    return data


# ------------------------------------------------------------------------------ writing
def _fixed(values: np.ndarray, arrow_type: pa.DataType) -> pa.FixedSizeListArray:
    width = values.shape[1]
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1), type=arrow_type), width)


def epoch_table(views: torch.Tensor, logits: torch.Tensor, topk: int | None) -> pa.Table:
    """One epoch's rows, in sample-index order."""
    n = views.shape[0]
    columns: dict[str, Any] = {
        "index": pa.array(np.arange(n, dtype=np.int64)),
        "view": _fixed(views.float().cpu().numpy(), pa.float32()),
    }
    logits = logits.float().cpu()
    if topk is None or topk >= logits.shape[1]:
        columns["logits"] = _fixed(logits.numpy(), pa.float32())
    else:
        values, indices = logits.topk(topk, dim=1)
        columns["topk_values"] = _fixed(values.half().numpy(), pa.float16())
        columns["topk_indices"] = _fixed(indices.int().numpy(), pa.int32())
        columns["logsumexp"] = pa.array(torch.logsumexp(logits, dim=1).numpy(), type=pa.float32())
    return pa.table(columns)


def write_table(path: Path, table: pa.Table) -> None:
    def write(fh: Any) -> None:
        with pa.ipc.new_file(fh, table.schema) as writer:
            writer.write_table(table)

    atomic_write_bytes(path, write)


@torch.no_grad()
def build(
    folder: Path,
    meta: dict[str, Any],
    teacher: Teacher,
    loader: Replayable,
    epochs: int,
    teacher_metrics: dict[str, Any],
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> None:
    """Run the teacher on every sample's view of every epoch, in batches of `meta['batch_size']`.

    Under DDP every rank calls this: rank r forwards the batches r, r + w, ... of each epoch and
    leaves them in a part file; rank 0 writes the epoch in position order (one forward per view
    in all).
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta.json").unlink(missing_ok=True)  # incomplete until meta.json is written last
    forward = forward or teacher
    n, batch_size = meta["num_samples"], meta["batch_size"]
    topk = meta["storage"].get("k")
    for epoch in range(epochs):
        views = loader.epoch_views(epoch)
        parts: dict[int, torch.Tensor] = {}
        for start, batch in enumerate_batches(loader, epoch, views, n, batch_size, rank, world_size):
            if batch.views is not None and not torch.equal(
                batch.views.cpu(), views[start : start + len(batch)]
            ):
                raise TeacherError(f"{folder}: the loader's views differ from its replayed views")
            parts[start] = forward(batch.images).float().cpu()
        if world_size > 1:
            parts = gather_parts(folder / f".epoch_{epoch + 1}", parts, rank, world_size)
        if rank == 0:
            logits = torch.cat([parts[k] for k in sorted(parts)])
            if logits.shape[0] != n:
                raise TeacherError(f"{folder}: epoch {epoch + 1} covers {logits.shape[0]} samples, not {n}")
            write_table(folder / f"epoch_{epoch + 1}.arrow", epoch_table(views, logits, topk))
            log.info("teacher cache %s: epoch %d/%d written", folder.name, epoch + 1, epochs)
    if rank == 0:
        write_json(folder / "meta.json", {**meta, "epochs": epochs, "teacher_metrics": teacher_metrics})


def gather_parts(stem: Path, parts: dict[int, torch.Tensor], rank: int, world_size: int) -> dict:
    """Every rank's {first position: logits} on rank 0, through files beside the cache."""
    mine = stem.with_name(f"{stem.name}.part{rank}.pt")
    torch.save(parts, mine)
    distributed.barrier()
    merged: dict[int, torch.Tensor] = {}
    if rank == 0:
        for r in range(world_size):
            path = stem.with_name(f"{stem.name}.part{r}.pt")
            merged.update(torch.load(path, weights_only=True))
            path.unlink()
    distributed.barrier()
    return merged


def enumerate_batches(
    loader: Replayable,
    epoch: int,
    views: torch.Tensor,
    n: int,
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[tuple[int, Batch]]:
    """(first position, batch) over this rank's batches (r, r + w, ...) of the split in position
    order, at `epoch`'s views: the loader's own ordered pass (ffcv decodes the views itself),
    else `make_batch`."""
    if isinstance(loader, OrderedPass):
        for batch in loader.ordered_batches(epoch, batch_size, rank, world_size):
            assert batch.indices is not None
            start = int(batch.indices[0])
            if start % batch_size or not torch.equal(
                batch.indices.cpu(), torch.arange(start, start + len(batch))
            ):
                raise TeacherError("teacher cache: the ordered pass is not in position order")
            yield start, batch
        return
    assert isinstance(loader, BatchMaker), "a replayable loader has ordered_batches or make_batch"
    for k, start in enumerate(range(0, n, batch_size)):
        if k % world_size != rank:
            continue
        idx = torch.arange(start, min(start + batch_size, n), device=loader.device)
        yield start, loader.make_batch(idx, views[start : start + batch_size].to(loader.device))


def remove(folder: Path) -> None:
    """Delete a cache folder, refusing anything that does not look like one."""
    if not (folder / "meta.json").exists() and not any(folder.glob("epoch_*.arrow")):
        raise TeacherError(f"{folder}: not a teacher cache; refusing to delete it")
    shutil.rmtree(folder)


# ------------------------------------------------------------------------------ reading
class EpochFile:
    """One epoch file, memory-mapped: its views, and the logits of the rows a batch asks for.

    Only the views are read at once (24 bytes a sample); logits stay in the mapped file and a
    batch copies its own rows (a top-k row is filled back to K then), so an ImageNet-1k epoch of
    full logits (5.2 GB) never has to fit in memory, let alone on the device.
    """

    def __init__(self, path: Path, num_classes: int) -> None:
        self.path, self.num_classes = path, num_classes
        try:
            self._source = pa.memory_map(str(path))
            table = pa.ipc.open_file(self._source).read_all()
            self.n = table.num_rows
            self.views = torch.from_numpy(self._matrix(table, "view").copy())
            if "logits" in table.column_names:
                self.k = None
                self._logits = self._matrix(table, "logits")
                width = self._logits.shape[1]
            else:
                self._values = self._matrix(table, "topk_values")
                self._indices = self._matrix(table, "topk_indices")
                self._lse = table.column("logsumexp").to_numpy()
                self.k = width = self._values.shape[1]
        except (OSError, KeyError, AttributeError, ValueError, pa.ArrowInvalid) as exc:
            raise TeacherError(
                f"{path}: unreadable teacher cache file ({' '.join(str(exc).split())})"
            ) from None
        if (self.k is None and width != num_classes) or (self.k is not None and self.k > num_classes):
            raise TeacherError(
                f"{path}: unreadable teacher cache file (rows of {width} logits, K = {num_classes})"
            )

    def _matrix(self, table: pa.Table, name: str) -> np.ndarray:
        """A fixed-size-list column as an (N, width) array (a view of the mapped file where it can)."""
        column = table.column(name)
        chunk = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
        width = column.type.list_size
        return chunk.values.to_numpy(zero_copy_only=False).reshape(self.n, width)

    def logits(self, rows: np.ndarray) -> torch.Tensor:
        """Full logits (len(rows), K) of `rows` (positions in the split)."""
        if self.k is None:
            return torch.from_numpy(np.ascontiguousarray(self._logits[rows]))
        values = torch.from_numpy(self._values[rows].astype(np.float32))
        indices = torch.from_numpy(self._indices[rows].astype(np.int64))
        lse = torch.from_numpy(self._lse[rows].astype(np.float32))
        return fill_topk(values, indices, lse, self.num_classes)


def read_epoch(path: Path, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(views (N, V), full logits (N, K)) of one epoch file; top-k rows are filled back to K."""
    epoch = EpochFile(path, num_classes)
    return epoch.views, epoch.logits(np.arange(epoch.n))


def fill_topk(
    values: torch.Tensor, indices: torch.Tensor, lse: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """Logits whose top-k entries are kept and whose other K - k entries share the rest of the
    probability mass equally: c = log((Z - sum_topk e^v) / (K - k)), with log Z = logsumexp."""
    k = values.shape[1]
    top_mass = torch.exp(values - lse[:, None]).sum(dim=1).clamp(max=1 - 1e-7)
    rest = lse + torch.log1p(-top_mass) - torch.log(torch.tensor(float(max(num_classes - k, 1))))
    floor = values.min(dim=1).values - 30.0  # where the rest is (numerically) empty
    fill = torch.maximum(rest, floor)
    out = fill[:, None].expand(-1, num_classes).clone()
    out.scatter_(1, indices, values)
    return out


@dataclass
class CachedTeacher(Teacher):
    """A teacher whose soft targets come from the cache; the model is kept for its metrics."""

    folder: Path | None = None
    num_classes: int = 0
    views_of: Callable[[int], torch.Tensor] | None = None
    device: torch.device | None = None
    _epoch: int = -1
    _file: EpochFile | None = None

    def load_epoch(self, epoch: int) -> None:
        """Open `epoch` (0-based) and check its views are the ones the loader replays."""
        assert self.folder is not None and self.views_of is not None
        opened = EpochFile(self.folder / f"epoch_{epoch + 1}.arrow", self.num_classes)
        if not torch.equal(opened.views, self.views_of(epoch).float().cpu()):
            raise TeacherError(
                f"{self.folder}: stale teacher cache: epoch {epoch + 1}'s stored views differ from "
                "the views this run replays (augmentation or data changed); rebuild it"
            )
        self._file, self._epoch = opened, epoch

    def logits_for(self, images: torch.Tensor, batch: Batch, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            self.load_epoch(epoch)
        assert self._file is not None and batch.indices is not None
        rows = self._file.logits(batch.indices.cpu().numpy())
        return rows.to(self.device, non_blocking=True)


# ------------------------------------------------------------------------------ opening
def open_or_build(
    teacher: Teacher,
    weights: Path,
    data: DataBundle,
    recipe: Recipe,
    *,
    runs_dir: Path,
    runtime: Runtime,
    say: Callable[[str], None],
    forward: Callable[[torch.Tensor], torch.Tensor],
    teacher_metrics: dict[str, Any],
    rebuild: bool = False,
) -> CachedTeacher:
    """Open (building it first if missing; `rebuild`: anew) the per-view cache of `teacher`'s
    soft targets on `data.train`'s views for `recipe` (its `teacher` section: `cache_path`,
    `cache_topk`), under `<runs_dir>/teacher-cache/` by default. `forward` is the teacher as a
    training step calls it; every rank calls this (the build splits the batches), with the
    run's `runtime` (its world, and the device the soft targets go to)."""
    cfg, loader, world = recipe.teacher, data.train, runtime.world
    assert cfg is not None
    if not isinstance(loader, Replayable):
        raise TeacherError("teacher.cache: needs data.backend memory or ffcv (replayable views)")
    epochs = recipe.schedule.epochs
    meta = expected_meta(
        teacher_arch=teacher.arch,
        teacher_source=teacher.source,
        weights=weights,
        data_identity={**json.loads(recipe.setting()[1]), **identity(loader), **holdout_identity(data)},
        view_seed=loader.view_seed,
        num_samples=data.train_size,
        num_classes=data.num_classes,
        topk=cfg.cache_topk,
        batch_size=recipe.data.batch_size,
    )
    folder = Path(cfg.cache_path) if cfg.cache_path else default_folder(runs_dir / "teacher-cache", meta)
    if rebuild and folder.exists() and world.is_main:
        remove(folder)
    distributed.barrier()
    if not (folder / "meta.json").exists():
        if cfg.cache_path and folder.exists() and any(folder.iterdir()):
            raise TeacherError(f"teacher.cache_path: {folder} is not a complete teacher cache")
        say(f"building teacher cache {folder} ({epochs} epochs)")
        build(
            folder,
            meta,
            teacher,
            loader,
            epochs,
            teacher_metrics,
            forward=forward,
            rank=world.rank,
            world_size=world.world_size,
        )
        distributed.barrier()
    check_meta(folder, read_meta(folder), meta, epochs)
    say(f"teacher soft targets from cache {folder}")
    return CachedTeacher(
        model=teacher.model,
        arch=teacher.arch,
        source=teacher.source,
        folder=folder,
        num_classes=data.num_classes,
        views_of=loader.epoch_views,
        device=runtime.device,
    )


def holdout_identity(data: DataBundle) -> dict[str, Any]:
    """The held-out positions' digest, where the run holds some out (its training positions
    depend on it): absent otherwise, so caches made before `data.holdout` existed stay valid."""
    return {} if data.holdout_digest is None else {"holdout_hash": data.holdout_digest}


def identity(loader: Replayable) -> dict[str, Any]:
    """The loader's own facts of its data (`Identified`), none where it has none."""
    return loader.identity() if isinstance(loader, Identified) else {}
