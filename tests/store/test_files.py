"""Atomic writes and file locks (harness.store.files) on the real file system."""

from __future__ import annotations

import errno
import json
import os
import threading
import time

import pytest

from harness.store.files import FileLock, atomic_write_bytes, held_elsewhere, write_json


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_atomic_files_get_ordinary_permissions(tmp_path, umask, mode):
    target = tmp_path / "f.txt"
    old = os.umask(umask)
    try:
        atomic_write_bytes(target, lambda fh: fh.write(b"x"))
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o777 == mode
    assert target.read_bytes() == b"x"


def test_a_failed_write_names_the_file_and_keeps_the_previous_version(tmp_path):
    target = tmp_path / "sub" / "data.json"
    write_json(target, {"b": 1, "a": [2]})
    assert target.read_text() == '{\n  "a": [\n    2\n  ],\n  "b": 1\n}\n'

    def full_disk(fh):
        fh.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as info:
        atomic_write_bytes(target, full_disk)
    assert info.value.filename == str(target) and info.value.errno == errno.ENOSPC
    assert json.loads(target.read_text()) == {"a": [2], "b": 1}
    assert sorted(p.name for p in target.parent.iterdir()) == ["data.json"]  # no temporary left


def test_a_lock_is_exclusive_and_seen_from_outside(tmp_path):
    path = tmp_path / ".lock"
    assert not held_elsewhere(path) and not path.exists()  # asking creates nothing
    first, second = FileLock(path), FileLock(path)
    assert first.acquire() and first.held
    assert not second.acquire() and not second.held
    assert held_elsewhere(path)
    first.release()
    assert not held_elsewhere(path)
    with second as lock:
        assert lock.held and held_elsewhere(path)
    assert not second.held and not held_elsewhere(path)


def test_a_waiting_lock_is_granted_when_the_holder_lets_go(tmp_path):
    path = tmp_path / ".lock"
    holder = FileLock(path)
    assert holder.acquire()
    timer = threading.Timer(0.3, holder.release)
    timer.start()
    start = time.perf_counter()
    with FileLock(path, wait=True) as waiter:
        waited = time.perf_counter() - start
        assert waiter.held
    timer.join()
    assert waited >= 0.25
