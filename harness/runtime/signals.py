"""Stopping a run cleanly: `StopSignal` turns SIGTERM/SIGINT into a flag the loop checks.

The training loop stops at the next step boundary, checkpoints and ends `interrupted` (a second
Ctrl-C stops at once). Under DDP the ranks agree through an all-reduce, so they all stop at the
same step.
"""

from __future__ import annotations

import signal
import threading
from typing import Any, ClassVar

from harness.runtime import distributed


class StopSignal:
    """SIGTERM/SIGINT set a flag; the loop stops at the next step boundary and checkpoints."""

    #: The StopSignals in force in this process, outermost first.
    active: ClassVar[list[StopSignal]] = []

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        StopSignal.active.append(self)
        return self

    @classmethod
    def pending(cls) -> bool:
        """Whether a stop signal has reached any run in force in this process (for code that
        waits outside the loop, e.g. for another process to let a teacher run go)."""
        return any(s.signum is not None for s in cls.active)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        self.signum = signum

    def __exit__(self, *exc: object) -> None:
        if self in StopSignal.active:
            StopSignal.active.remove(self)
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
            # A run nested in another (a teacher trained first) hands the signal to the outer
            # run's handler, which it had replaced: the outer run must stop too.
            outer = getattr(handler, "__self__", None)
            if self.signum is not None and isinstance(outer, StopSignal) and outer.signum is None:
                outer.signum = self.signum

    #: Under DDP the ranks agree on stopping every this many steps (a collective costs a sync).
    AGREE_EVERY = 10

    def requested(self, step: int | None = None) -> bool:
        """Whether to stop now. Alone: the local flag. Under DDP: every rank must stop at the same
        step, so they agree through an all-reduce, at epoch ends (step None) and every
        AGREE_EVERY steps."""
        if not distributed.world_from_env().distributed:
            return self.signum is not None
        if step is not None and step % self.AGREE_EVERY:
            return False
        return distributed.all_reduce_max(int(self.signum is not None)) > 0
