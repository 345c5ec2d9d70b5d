"""What a sweep did: one `RunRecord` per run and the `SweepSummary` written as JSON to
`<runs-dir>/sweeps/` after every run and printed at the end; its outcomes and exit status.

May import `harness.store` (atomic JSON) and `harness.errors`; every executor fills the same
records.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import asdict, dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import Any

from harness.errors import InterruptedRun
from harness.store.files import write_json

#: Outcomes of one run in a sweep.
OUTCOMES = ("ran", "skipped", "failed", "diverged", "busy", "interrupted", "pending", "submitted")
FAILED_OUTCOMES = ("failed", "diverged")


@dataclass
class RunRecord:
    """What happened to one run (one item of the summary's `runs`)."""

    run_id: str
    recipe: str
    seed: int | None
    overrides: list[str]
    group: str | None
    outcome: str = "pending"
    status: str | None = None  # the run folder's status afterwards
    error: str | None = None
    earlier: bool = False  # the outcome dates from an earlier invocation (skipped, diverged before)
    resumed: bool = False  # it continued an unfinished run
    exit_code: int | None = None  # the worker's
    seconds: float | None = None
    top1: float | None = None
    epoch: int | None = None
    step: int | None = None
    diverged_step: int | None = None
    teacher_of: str | None = None  # a teacher run the sweep trains for this student (and maybe others)


@dataclass
class SweepSummary:
    """The sweep's record, written as JSON after every run and printed at the end."""

    sweep_id: str
    runs_dir: str
    command: list[str]
    started: float
    finished: float | None = None
    interrupted: str | None = None  # the signal that stopped the sweep
    runs: list[RunRecord] = dc_field(default_factory=list)
    leaderboard: dict[str, Any] = dc_field(default_factory=dict)
    path: Path | None = None

    def counts(self) -> dict[str, int]:
        counts = {o: sum(r.outcome == o for r in self.runs) for o in OUTCOMES}
        if not counts["submitted"]:  # only Slurm sweeps that do not wait have submitted runs
            del counts["submitted"]
        return counts

    @property
    def exit_code(self) -> int:
        """130 if interrupted, 1 if a run failed or diverged (or the leaderboard failed), else 0."""
        if self.interrupted:
            return InterruptedRun.exit_code
        failed = any(r.outcome in FAILED_OUTCOMES for r in self.runs)
        return 1 if failed or self.leaderboard.get("status") == "failed" else 0

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "path"}
        d["counts"] = self.counts()
        d["exit_code"] = self.exit_code
        return d

    def save(self) -> None:
        if self.path is not None:
            write_json(self.path, self.to_dict())

    def render(self) -> str:
        """A few lines for the terminal: counts, then one line per run."""
        counts = ", ".join(f"{n} {o}" for o, n in self.counts().items() if n)
        teachers = sum(r.teacher_of is not None for r in self.runs)
        teachers_said = f" ({teachers} teacher run{'s' if teachers > 1 else ''})" if teachers else ""
        lines = [f"sweep {self.sweep_id}: {len(self.runs)} runs{teachers_said}: {counts}"]
        if self.interrupted:
            lines[0] += f" (interrupted by {self.interrupted})"
        width = max((len(r.run_id) for r in self.runs), default=0)
        for r in self.runs:
            if r.error:
                detail = r.error
            elif r.top1 is not None:
                detail = f"top1 {r.top1:.2f}"
            else:
                detail = ""
            if r.outcome == "diverged" and r.diverged_step is not None:
                detail = f"non-finite loss at step {r.diverged_step}" + (" (earlier)" if r.earlier else "")
            if r.resumed and r.outcome == "ran":
                detail += " (resumed)"
            if r.seconds is not None and not r.earlier:
                detail += f"  {r.seconds:.1f} s"
            if r.teacher_of is not None:
                detail = f"teacher of {r.teacher_of}  {detail}"
            lines.append(f"  {r.outcome:<11} {r.run_id:<{width}}  {detail}".rstrip())
        lb = self.leaderboard
        if lb.get("status") == "written":
            lines.append(f"leaderboard: {lb['out']}")
        elif lb.get("status"):
            lines.append(f"leaderboard {lb['status']}: {lb.get('error') or lb.get('reason', '')}".rstrip())
        if self.path is not None:
            lines.append(f"summary: {self.path}")
        return "\n".join(lines)


def new_sweep_id() -> str:
    """Unique per invocation, also across machines sharing a runs folder: time, host, pid."""
    host = "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname())[:40]
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{host}-{os.getpid()}"
