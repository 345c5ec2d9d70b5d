"""A run's folder: its files, its status and the lock that keeps two processes out of it.

    <runs-dir>/<run_id>/
        recipe.yaml        the resolved recipe
        provenance.json    versions, git commit, device, command line
        metrics.parquet    one row per evaluated epoch (rewritten atomically)
        status.json        running | completed | interrupted | failed | diverged, and where
        log.txt            the run's log lines
        checkpoints/       last.pt (resume), epoch_<N>.pt (kept epochs), final.pt (weights)

Every file is replaced atomically, so a crash at any point leaves the previous version intact.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

from harness.errors import RunBusyError, RunStateError
from harness.metrics import atomic_write_bytes

STATUSES = ("running", "completed", "interrupted", "failed", "diverged")


class RunDir:
    """Paths and state of one run folder."""

    def __init__(self, runs_dir: Path, run_id: str) -> None:
        self.root = Path(runs_dir) / run_id
        self.run_id = run_id
        self._lock_fd: int | None = None

    # ------------------------------------------------------------------ paths
    @property
    def recipe(self) -> Path:
        return self.root / "recipe.yaml"

    @property
    def provenance(self) -> Path:
        return self.root / "provenance.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.parquet"

    @property
    def status_file(self) -> Path:
        return self.root / "status.json"

    @property
    def log_file(self) -> Path:
        return self.root / "log.txt"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def final_weights(self) -> Path:
        return self.checkpoints / "final.pt"

    def epoch_checkpoint(self, epoch: int) -> Path:
        return self.checkpoints / f"epoch_{epoch}.pt"

    def saved_epochs(self) -> list[int]:
        """Epochs whose checkpoints are kept."""
        out = []
        for p in self.checkpoints.glob("epoch_*.pt"):
            try:
                out.append(int(p.stem.split("_", 1)[1]))
            except ValueError:
                continue
        return sorted(out)

    # ------------------------------------------------------------------ status
    def exists(self) -> bool:
        return self.status_file.exists()

    def read_status(self) -> dict[str, Any]:
        """The status record ({} if the run never started); a corrupt file is an error."""
        if not self.status_file.exists():
            return {}
        try:
            data = json.loads(self.status_file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise RunStateError(f"{self.status_file}: unreadable run status ({exc})") from None
        if not isinstance(data, dict) or data.get("status") not in STATUSES:
            raise RunStateError(f"{self.status_file}: not a harness run status")
        return data

    @property
    def status(self) -> str | None:
        return self.read_status().get("status")

    def write_status(self, status: str, **fields: Any) -> None:
        """Atomically record `status` with extra fields (epoch, step, error, ...)."""
        assert status in STATUSES, status
        record = {"status": status, "run_id": self.run_id, "updated": time.time(), **fields}
        write_json(self.status_file, record)

    def log(self, line: str) -> None:
        """Append a time-stamped line to log.txt."""
        self.root.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(self.log_file, "a") as fh:
            fh.write(f"{stamp} {line}\n")

    # ------------------------------------------------------------------ lock
    def acquire(self) -> None:
        """Take the run's exclusive lock, or fail at once if another process holds it."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunBusyError(
                f"{self.root}: run is locked by another process (a concurrent run or sweep)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd
        self.remove_stale_temporaries()

    def remove_stale_temporaries(self) -> list[Path]:
        """Delete the temporary files (`.<name>.<random>.tmp`) that a killed writer left behind.

        Only the lock holder calls this: no other process of ours writes into the run, so every
        such file is a leftover of an atomic write that never reached its rename.
        """
        removed = []
        for folder in (self.root, self.checkpoints):
            for tmp in folder.glob(".*.tmp"):
                if tmp.is_file():
                    tmp.unlink(missing_ok=True)
                    removed.append(tmp)
        return removed

    def release(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def locked_elsewhere(self) -> bool:
        """True if another process holds this run's lock right now."""
        lock = self.root / ".lock"
        if not lock.exists():
            return False
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)

    def __enter__(self) -> RunDir:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def write_json(path: Path, data: Any) -> None:
    """Atomically write `data` as indented JSON."""
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    atomic_write_bytes(path, lambda fh: fh.write(text.encode()))


def write_text(path: Path, text: str) -> None:
    """Atomically write a text file."""
    atomic_write_bytes(path, lambda fh: fh.write(text.encode()))
