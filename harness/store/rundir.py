"""A run's folder: its files, its status and the lock that keeps two processes out of it.

    <runs-dir>/<run_id>/
        recipe.yaml        the resolved recipe
        provenance.json    versions, git commit, device, command line
        metrics.parquet    one row per evaluated epoch (rewritten atomically)
        status.json        running | completed | interrupted | failed | diverged, and where
        log.txt            the run's log lines
        .lock              locked by the process that trains the run (holds its pid)
        .sweep.lock        locked by a local sweep while it starts or trains the run
        checkpoints/       last.pt (resume), epoch_<N>.pt (kept epochs), final.pt (weights)

Every file is replaced atomically (harness.store.files), so a crash at any point leaves the previous
version intact.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from harness.errors import RunBusyError, RunStateError
from harness.store.files import FileLock, held_elsewhere, write_json

STATUSES = ("running", "completed", "interrupted", "failed", "diverged")


class RunDir:
    """Paths and state of one run folder."""

    def __init__(self, runs_dir: Path, run_id: str) -> None:
        self.root = Path(runs_dir) / run_id
        self.run_id = run_id
        self._lock = FileLock(self.root / ".lock")

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

    @property
    def sweep_lock(self) -> Path:
        """The file a local sweep locks while it starts or trains the run (`sweep.claim`)."""
        return self.root / ".sweep.lock"

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
        if not self._lock.acquire():
            raise RunBusyError(f"{self.root}: run is locked by another process (a concurrent run or sweep)")
        assert self._lock.fd is not None
        os.ftruncate(self._lock.fd, 0)  # the holder's pid, for whoever finds the run busy
        os.write(self._lock.fd, str(os.getpid()).encode())
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
        self._lock.release()

    def locked_elsewhere(self) -> bool:
        """True if another process holds this run's lock right now."""
        return held_elsewhere(self._lock.path)

    def __enter__(self) -> RunDir:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
