"""The run index (`harness/leaderboard/run_index.py`): the leaderboard's outputs are byte for byte
those of reading every run folder, whatever state the index is in.

The runs are the committed study's real run folders (`leaderboard/runs/`), copied, with a few
folders the leaderboard sets apart beside them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from harness.leaderboard import OUTPUT_FILES, generate
from harness.leaderboard.run_index import INDEX_PATH, INDEX_SCHEMA
from harness.store.metrics_file import read_metrics, write_metrics
from tests.support.recipes import REPO

LOGGER = "harness.leaderboard.run_index"


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """A copy of the study's run folders, plus a failed, a starting and a corrupt one."""
    runs = tmp_path / "runs"
    shutil.copytree(REPO / "leaderboard" / "runs", runs, ignore=shutil.ignore_patterns(".index"))
    some = sorted(p for p in runs.iterdir() if p.is_dir())[0]
    rows = read_metrics(some / "metrics.parquet")
    for r in rows:
        r.update(run_id="dead", status="failed")
    write_metrics(runs / "dead" / "metrics.parquet", rows)
    (runs / "dead" / "status.json").write_text(json.dumps({"status": "failed", "error": "OSError: disk"}))
    (runs / "starting").mkdir()
    (runs / "starting" / "status.json").write_text(json.dumps({"status": "running", "run_id": "starting"}))
    (runs / "garbage").mkdir()
    (runs / "garbage" / "metrics.parquet").write_bytes(b"PAR1 not parquet" * 8)
    return runs


def outputs(runs: Path, out: Path, *, use_index: bool = True) -> dict[str, bytes]:
    """The leaderboard's files for `runs` (and the runs set apart, which the Markdown lists too)."""
    shutil.rmtree(out, ignore_errors=True)
    generate(runs, out, use_index=use_index)
    return {name: (out / name).read_bytes() for name in OUTPUT_FILES}


def a_run(runs: Path) -> Path:
    """One of the study's completed runs."""
    return sorted(p for p in runs.iterdir() if p.is_dir() and p.name.startswith("resnet18_"))[0]


def test_outputs_with_the_index_are_those_without_it(runs, tmp_path):
    """Built, used, a run changed, a run deleted: every time the files of reading every folder."""
    want = outputs(runs, tmp_path / "plain", use_index=False)
    assert not (runs / INDEX_PATH).exists()  # reading without the index writes nothing
    assert outputs(runs, tmp_path / "built") == want
    index = runs / INDEX_PATH
    table = pq.read_table(index)
    assert table.schema.equals(INDEX_SCHEMA) and table.schema.metadata[b"harness.run_index.version"] == b"1"
    apart = dict(zip(*(table.column(c).to_pylist() for c in ("folder", "apart_reason")), strict=True))
    assert apart["dead"].startswith("failed after epoch") and apart["dead"].endswith(": OSError: disk")
    assert apart["starting"] == "no metrics.parquet yet (status running)"
    assert "unreadable metrics.parquet" in apart["garbage"]

    # unchanged: the index is used as it is (not rewritten), so a run's file is not even opened
    written = index.stat().st_mtime_ns
    metrics = a_run(runs) / "metrics.parquet"
    real, st = metrics.read_bytes(), metrics.stat()
    metrics.write_bytes(b"\0" * len(real))  # same size, and the same mtime below: unchanged to a stat
    os.utime(metrics, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert outputs(runs, tmp_path / "warm") == want
    assert index.stat().st_mtime_ns == written
    metrics.write_bytes(real)

    # a run's metrics rewritten: re-read (its last top-1 moves the table)
    rows = read_metrics(metrics)
    rows[-1]["top1"] -= 5.0
    write_metrics(metrics, rows)
    changed = outputs(runs, tmp_path / "changed-plain", use_index=False)
    assert changed != want
    assert outputs(runs, tmp_path / "changed") == changed

    # a failed run's status.json rewritten (its metrics untouched): its reason is read again
    (runs / "dead" / "status.json").write_text(json.dumps({"status": "failed", "error": "CUDA error"}))
    failed = outputs(runs, tmp_path / "failed-plain", use_index=False)
    assert b"CUDA error" in failed["leaderboard.md"]
    assert outputs(runs, tmp_path / "failed") == failed

    # a run deleted: gone from the outputs and from the index
    shutil.rmtree(metrics.parent)
    deleted = outputs(runs, tmp_path / "deleted-plain", use_index=False)
    assert outputs(runs, tmp_path / "deleted") == deleted != failed
    assert metrics.parent.name not in set(pq.read_table(index).column("folder").to_pylist())


@pytest.mark.parametrize("damage", ["corrupt", "stale"])
def test_a_corrupt_or_stale_index_is_rebuilt_with_one_line(runs, tmp_path, caplog, damage):
    want = outputs(runs, tmp_path / "plain", use_index=False)
    outputs(runs, tmp_path / "built")
    index = runs / INDEX_PATH
    if damage == "corrupt":
        index.write_bytes(index.read_bytes()[: index.stat().st_size // 2])
    else:  # an index of another version: its rows may mean something else
        table = pq.read_table(index)
        pq.write_table(table.replace_schema_metadata({b"harness.run_index.version": b"0"}), index)
    with caplog.at_level(logging.WARNING, LOGGER):
        assert outputs(runs, tmp_path / "rebuilt") == want
    (line,) = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert str(index) in line and "rebuilding" in line
    assert pq.read_table(index).schema.metadata[b"harness.run_index.version"] == b"1"  # written again


def test_a_runs_folder_the_index_cannot_be_written_into(runs, tmp_path, caplog):
    """Read-only for the index (here: a file stands where its folder would): one line, same files."""
    want = outputs(runs, tmp_path / "plain", use_index=False)
    (runs / INDEX_PATH.parent).write_text("not a folder")
    with caplog.at_level(logging.WARNING, LOGGER):
        assert outputs(runs, tmp_path / "indexed") == want
    (line,) = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert "not written" in line
    assert (runs / INDEX_PATH.parent).read_text() == "not a folder"


def test_two_writers_at_once_leave_a_valid_index(runs, tmp_path, caplog):
    """Last writer wins: two regenerations at once, runs touched meanwhile, and the index after them
    reads cleanly and gives the files of reading every folder."""
    want = outputs(runs, tmp_path / "plain", use_index=False)
    metrics = a_run(runs) / "metrics.parquet"
    errors: list[BaseException] = []

    def regenerate(name: str) -> None:
        try:
            for i in range(3):
                assert outputs(runs, tmp_path / f"{name}{i}") == want
        except BaseException as exc:  # reported below, from the main thread
            errors.append(exc)

    threads = [threading.Thread(target=regenerate, args=(name,)) for name in ("a", "b")]
    with caplog.at_level(logging.WARNING, LOGGER):
        for thread in threads:
            thread.start()
        for i in range(20):  # new mtimes while they run: each writer re-reads and rewrites
            os.utime(metrics, ns=(i + 1, i + 1))
        for thread in threads:
            thread.join()
        assert not errors, errors
        assert outputs(runs, tmp_path / "after") == want
    assert not [r for r in caplog.records if r.name == LOGGER]  # never a corrupt index
    assert not list((runs / INDEX_PATH.parent).glob("*.tmp"))  # no temporary left behind
