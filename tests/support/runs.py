"""Real runs for the resume tests: started in a subprocess, struck at a chosen checkpoint, compared exactly.

A recipe with `tests.support.recipes.SMALL` data trains `STEPS_PER_EPOCH` steps an epoch; `exact`
keeps the columns that must match bit for bit between an interrupted-then-resumed run and an
uninterrupted one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from tests.support.recipes import REPO, SMALL

EXACT = ("top1", "top5", "nll", "ece", "entropy", "max_prob", "stability", "train_loss", "step", "epoch")
STEPS_PER_EPOCH = SMALL["train_subset"] // SMALL["batch_size"]


def exact(rows: list[dict]) -> list[tuple]:
    """The metrics rows' columns that a resumed run reproduces exactly."""
    return [tuple(r[k] for k in EXACT) for r in rows]


def start_run(path: Path, runs_dir: Path, *extra: str) -> subprocess.Popen:
    """`harness run PATH --runs-dir RUNS_DIR EXTRA...` in a subprocess, its output piped."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "harness", "run", str(path), "--runs-dir", str(runs_dir), *extra],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def strike_when(
    proc: subprocess.Popen, last: Path, ready: Callable[[dict], bool], sig: int, timeout: float = 240
) -> dict:
    """Send `sig` to `proc` as soon as its last.pt satisfies `ready(state)`; returns that state.

    The run is frozen (SIGSTOP) the moment a new last.pt appears and before it is read, so a fast
    machine cannot train past the chosen step, or finish, while the test loads the checkpoint: the
    strike lands at most a stat() poll after the checkpoint's rename. The signal is queued while the
    run is stopped and delivered on SIGCONT.
    """
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended before the strike:\n{proc.communicate()[1]}"
        try:
            st = last.stat()
        except FileNotFoundError:
            st = None
        if st is not None and (st.st_ino, st.st_mtime_ns) != seen:
            proc.send_signal(signal.SIGSTOP)
            try:
                state = torch.load(last, map_location="cpu", weights_only=True)
                seen = (st.st_ino, st.st_mtime_ns)
            except Exception:  # replaced between stat and load: read the new one
                state = None
            if state is not None and ready(state):
                proc.send_signal(sig)
                proc.send_signal(signal.SIGCONT)
                return state
            proc.send_signal(signal.SIGCONT)
        time.sleep(0.001)
    proc.kill()
    raise AssertionError("the run never reached the chosen step")
