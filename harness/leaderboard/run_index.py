"""The run index: one Parquet file caching what the leaderboard reads from every run folder.

`<runs-dir>/.index/runs.parquet` holds, per run folder, the modification time (ns) and size of
its `metrics.parquet` and `status.json` (-1 when absent), the leaderboard's decision (a completed
run, or set apart with its status and reason) and, for a completed run, its rows: exactly the
columns `runs.read_run` reads (`runs.WANTED`), one Parquet row per epoch, sorted by epoch.

`load_indexed_runs(runs_dir)` answers as `runs.load_runs` does: it lists the folders (one
`os.scandir`, then a `stat` of metrics.parquet per folder, and of status.json where the decision
read it), takes every folder whose files are unchanged from the index, reads only new or changed
folders, drops removed ones and, when anything changed, rewrites the index atomically
(`store.files.atomic_write_bytes`: temporary file, fsync, rename).

The runs' files stay the record and the index is a cache: **deleting it is safe** and changes
nothing but speed (the next regeneration reads every run and writes it again; the outputs are
byte-identical either way). An index that is missing, of another version or schema, or
unreadable is rebuilt (one log line for the last two, never an error); a runs folder the index
cannot be written into (read-only) is read whole every time, with one log line. Two processes
regenerating at once each write a complete index by rename, without a lock: the last writer
wins, and either file is a valid cache, since every folder in it carries the stat signature it
was read at (a file that changes while it is read gets a signature that no longer matches, so it
is read again next time).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from harness.leaderboard.runs import (
    WANTED,
    WANTED_TYPES,
    Run,
    SetApart,
    list_folders,
    read_folder,
    split_outcomes,
    table_rows,
)
from harness.store.files import atomic_write_bytes

log = logging.getLogger(__name__)

#: The index file, relative to the runs folder (a hidden folder: never read as a run).
INDEX_PATH = Path(".index") / "runs.parquet"
#: Bumped whenever what the index holds or how `read_run` decides changes: an older index is rebuilt.
INDEX_VERSION = "1"
_VERSION_KEY = b"harness.run_index.version"

#: A folder's signature: (metrics mtime_ns, metrics size, status.json mtime_ns, status.json size).
Signature = tuple[int, int, int, int]
_SIGNATURE_COLUMNS = ("metrics_mtime_ns", "metrics_size", "status_mtime_ns", "status_size")
_OUTCOME_COLUMNS = ("outcome", "apart_run_id", "apart_status", "apart_reason")
INDEX_SCHEMA = pa.schema(
    [
        pa.field("folder", pa.string()),
        *(pa.field(c, pa.int64()) for c in _SIGNATURE_COLUMNS),
        *(pa.field(c, pa.string()) for c in _OUTCOME_COLUMNS),
        *(pa.field(c, WANTED_TYPES[c]) for c in WANTED),
    ],
    metadata={_VERSION_KEY: INDEX_VERSION.encode()},
)


def load_indexed_runs(runs_dir: Path) -> tuple[list[Run], list[SetApart]]:
    """`runs.load_runs(runs_dir)`, reading only the folders the index lacks or holds stale."""
    runs_dir = Path(runs_dir)
    names = list_folders(runs_dir)
    path = runs_dir / INDEX_PATH
    table = read_index(path)
    cached = _cached_outcomes(table) if table is not None else {}
    outcomes: list[Run | SetApart | None] = []
    fresh: dict[str, tuple[Signature, Run | SetApart]] = {}
    for name in names:
        hit = cached.get(name)
        metrics = _stat(runs_dir / name / "metrics.parquet")
        if hit is not None and hit[0][:2] == metrics != (-1, -1) and not _reads_status(hit[1]):
            outcomes.append(hit[1])  # decided from metrics.parquet alone: status.json not even stat'ed
            continue
        signature = (*metrics, *_stat(runs_dir / name / "status.json"))
        if hit is not None and hit[0] == signature:
            outcomes.append(hit[1])
            continue
        outcome = read_folder(runs_dir / name) if signature != _ABSENT else None
        outcomes.append(outcome)
        if outcome is not None and _indexable(outcome):
            fresh[name] = (signature, outcome)
    kept = [n for n in names if n in cached and n not in fresh]
    if fresh or len(kept) != len(cached):
        _write_index(path, _updated_index(table, kept, fresh))
    return split_outcomes(outcomes)


_ABSENT: Signature = (-1, -1, -1, -1)


def _stat(path: Path) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return -1, -1
    return st.st_mtime_ns, st.st_size


def read_index(path: Path) -> pa.Table | None:
    """The index table at `path`, or None when it is missing, stale or corrupt (one log line)."""
    if not path.exists():
        return None
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        log.warning("run index %s: unreadable (%s), rebuilding it", path, first)
        return None
    version = (table.schema.metadata or {}).get(_VERSION_KEY, b"").decode(errors="replace")
    if version != INDEX_VERSION or not table.schema.equals(INDEX_SCHEMA, check_metadata=False):
        log.warning("run index %s: version %r, not %s, rebuilding it", path, version, INDEX_VERSION)
        return None
    return table


def _cached_outcomes(table: pa.Table) -> dict[str, tuple[Signature, Run | SetApart]]:
    """Each indexed folder's signature and outcome (a folder's rows are contiguous, by epoch)."""
    folders = table.column("folder").to_pylist()
    signatures = list(zip(*(table.column(c).to_pylist() for c in _SIGNATURE_COLUMNS), strict=True))
    outcome, run_id, status, reason = (table.column(c).to_pylist() for c in _OUTCOME_COLUMNS)
    is_run = pc.equal(table.column("outcome"), "run")
    rows = iter(table_rows(table.filter(is_run)))
    out: dict[str, tuple[Signature, Run | SetApart]] = {}
    start = 0
    for i in range(1, len(folders) + 1):
        if i < len(folders) and folders[i] == folders[start]:
            continue
        name = folders[start]
        if outcome[start] == "run":
            result: Run | SetApart = Run(name, tuple(next(rows) for _ in range(i - start)))
        else:
            result = SetApart(name, run_id[start], str(status[start]), str(reason[start]))
        out[name] = (signatures[start], result)
        start = i
    return out


def _reads_status(outcome: Run | SetApart) -> bool:
    """Whether `runs.read_folder` read status.json to decide `outcome` (a failed run's error, or a
    folder without metrics), so that a change to it alone must be re-read."""
    return isinstance(outcome, SetApart) and (
        outcome.status == "failed" or outcome.reason.startswith("no metrics")
    )


def _indexable(outcome: Run | SetApart) -> bool:
    """Whether the index can hold `outcome` as it is (a status.json may hold a run id of any type)."""
    if isinstance(outcome, Run):
        return True
    return (outcome.run_id is None or isinstance(outcome.run_id, str)) and isinstance(outcome.status, str)


def _updated_index(
    table: pa.Table | None, kept: Sequence[str], fresh: dict[str, tuple[Signature, Run | SetApart]]
) -> pa.Table:
    """The index of the `kept` folders of `table` and the `fresh` outcomes, sorted by folder."""
    records = []
    for name, (signature, outcome) in fresh.items():
        key = dict(zip(("folder", *_SIGNATURE_COLUMNS), (name, *signature), strict=True))
        if isinstance(outcome, Run):
            records += [key | {"outcome": "run"} | row for row in outcome.rows]
        else:
            records.append(
                key
                | {
                    "outcome": "apart",
                    "apart_run_id": outcome.run_id,
                    "apart_status": outcome.status,
                    "apart_reason": outcome.reason,
                }
            )
    parts = [pa.Table.from_pylist(records, schema=INDEX_SCHEMA)]
    if table is not None and kept:
        keep = pc.is_in(table.column("folder"), value_set=pa.array(kept, pa.string()))
        parts.insert(0, table.filter(keep).replace_schema_metadata(INDEX_SCHEMA.metadata))
    merged = pa.concat_tables(parts)
    return merged.take(pc.sort_indices(merged.column("folder")))  # stable: epochs stay in order


def _write_index(path: Path, table: pa.Table) -> None:
    """Replace the index by rename; a folder that cannot be written is one log line."""
    try:
        atomic_write_bytes(path, lambda fh: pq.write_table(table, fh))
    except OSError as exc:
        reason = exc.strerror or exc
        log.warning("run index %s: not written (%s); the runs were read all the same", path, reason)
