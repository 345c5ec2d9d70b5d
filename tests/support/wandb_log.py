"""Read a W&B offline run's `.wandb` file: the records `wandb sync` would upload.

The file is W&B's LevelDB-style log (wandb-core's `store` package; the Python `datastore` reader of
older wandb releases): a 7-byte header (`:W&B`, magic 0xBEE1, version 0), then 32 KiB blocks of
chunks, each a CRC32C (4 bytes), a length (2 bytes, little-endian) and a type (1: full, 2: first,
3: middle, 4: last) before its bytes; a block's tail shorter than a chunk header is padding. Every
record is a `wandb.proto.wandb_internal_pb2.Record`, decoded with the wandb package's own protobuf.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

HEADER = b":W&B" + struct.pack("<H", 0xBEE1) + b"\x00"
BLOCK = 32768
CHUNK_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list[Any]:
    """Every `Record` of the `.wandb` file at `path`, in order."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[: len(HEADER)] == HEADER, f"{path}: not a W&B log"
    out, pending, pos = [], b"", len(HEADER)
    while pos + CHUNK_HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < CHUNK_HEADER:  # padding at a block's end
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + CHUNK_HEADER])
        if length == 0 and kind == 0:  # zeros: the file's unwritten end
            break
        chunk = data[pos + CHUNK_HEADER : pos + CHUNK_HEADER + length]
        pos += CHUNK_HEADER + length
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            out.append(record)
    return out


def _items(items: Any) -> dict[str, Any]:
    """History or config items as {key: value} (a nested key joined with `/`)."""
    return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items}


def history(path: Path) -> list[dict[str, Any]]:
    """The `run.log` rows of the file at `path`, each as {key: value}."""
    return [_items(r.history.item) for r in records(path) if r.WhichOneof("record_type") == "history"]


def run_ids(path: Path) -> set[str]:
    """The run ids the file's `run` records name."""
    return {r.run.run_id for r in records(path) if r.WhichOneof("record_type") == "run"}


def config(path: Path) -> dict[str, Any]:
    """The run's config as the file's `config` records set it."""
    values: dict[str, Any] = {}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind in ("config", "run"):
            values.update(_items((record.config if kind == "config" else record.run.config).update))
    return values
