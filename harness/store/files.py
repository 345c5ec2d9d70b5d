"""Files written whole or not at all, and the advisory locks that keep processes apart.

* `atomic_write_bytes(path, write)`: `write(fileobj)` fills a temporary file beside `path`
  (`.<name>.<random>.tmp`, same folder so the rename is atomic), which is flushed, fsynced and
  renamed over `path`; the folder is then fsynced so the rename itself survives a power cut. A
  crash at any point leaves the previous `path` intact (and perhaps a temporary file, which
  `RunDir.remove_stale_temporaries` deletes). The file gets the ordinary permissions of a new
  file (0o666 less the umask, applied by the kernel at creation): the process-wide umask is never
  changed, so other threads creating files meanwhile are not affected.
* `write_json(path, data)` / `write_text(path, text)`: atomic writes of indented JSON / text.
* `FileLock(path, wait=False)`: an exclusive `flock` on `path` (created if missing). `acquire`
  returns False at once if another open file holds it (or waits its turn with `wait=True`); the
  kernel releases it when the process dies. `held_elsewhere(path)` asks whether someone holds it
  now, without taking it or creating the file.

An OSError raised while writing names the file being written (`exc.filename`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from pathlib import Path
from typing import Any

#: Attempts at a fresh temporary name before giving up (as tempfile's TMP_MAX bounds mkstemp).
_NAME_ATTEMPTS = 100


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new, exclusively created `.<name>.<random>.tmp` beside `path`: (descriptor, path)."""
    for _ in range(_NAME_ATTEMPTS):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{path}: no free temporary name after {_NAME_ATTEMPTS} attempts")


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (best effort: not every file system allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: Path, write: Any) -> None:
    """Write through `write(fileobj)` to a temporary file beside `path`, fsync, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # a full disk fails inside write(): name the file it was writing
        tmp.unlink(missing_ok=True)
        if exc.filename is None:
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def write_json(path: Path, data: Any) -> None:
    """Atomically write `data` as indented JSON (sorted keys, `str` for other types)."""
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    write_text(path, text)


def write_text(path: Path, text: str) -> None:
    """Atomically write a text file (UTF-8)."""
    atomic_write_bytes(path, lambda fh: fh.write(text.encode()))


class FileLock:
    """An exclusive advisory lock (`flock`) on one file, held from `acquire` to `release`.

    Locks belong to an open file, so a second `FileLock` on the same path conflicts even within
    one process. The descriptor is not inherited by child processes (os.open's default), so a
    worker started while the lock is held does not keep it alive.
    """

    def __init__(self, path: Path, *, wait: bool = False) -> None:
        self.path = Path(path)
        self.wait = wait
        self.fd: int | None = None

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self.fd is not None

    def acquire(self, *, create: bool = True) -> bool:
        """Take the lock: True if taken, False if another holder has it (never with `wait`)."""
        assert self.fd is None, f"{self.path}: lock already held"
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        fd = os.open(self.path, flags, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        return True

    def release(self) -> None:
        """Let the lock go (nothing if not held)."""
        fd, self.fd = self.fd, None
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def held_elsewhere(path: Path) -> bool:
    """True if another open file holds the lock on `path` now (False if there is no such file)."""
    lock = FileLock(path)
    try:
        if not lock.acquire(create=False):
            return True
    except FileNotFoundError:
        return False
    lock.release()
    return False
