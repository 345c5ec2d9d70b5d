"""What every executor shares: `SweepOptions` (how to run a sweep), the `Executor` interface the
sweep calls, and the leaderboard regenerated at the end.

The executors: `harness.sweeps.local` (`SerialExecutor`, one run after another; `SlotsExecutor`,
`--jobs N` at once) and `harness.sweeps.slurm.executor` (`SlurmExecutor`, one Slurm job per run);
`harness.sweeps.sweep.executor_for` picks one. May import the plan and the summary, and
`harness.leaderboard` (lazily, at the end); never an executor.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from harness.sweeps.plan import PlannedRun
from harness.sweeps.summary import SweepSummary


@dataclass
class SweepOptions:
    """How to run a sweep (none of it changes a run's identity)."""

    device: str | None = None
    keep_going: bool = True
    leaderboard: bool = True
    leaderboard_out: Path | None = None  # default: <runs-dir>/leaderboard
    python: str = sys.executable
    jobs: int = 1  # runs at once on this machine (harness.sweeps.local.SlotsExecutor)

    def leaderboard_dir(self, runs_dir: Path) -> Path:
        """Where the leaderboard is regenerated: --leaderboard-out, else RUNS_DIR/leaderboard."""
        return Path(self.leaderboard_out) if self.leaderboard_out else runs_dir / "leaderboard"


class Executor(Protocol):
    """Trains, skips or submits a sweep's runs."""

    def run(self, runs: list[PlannedRun], summary: SweepSummary) -> None:
        """Settle every run of `runs` in `summary.runs_dir`, filling its record (`summary.runs`,
        in the same order) and saving the summary as runs end; set `summary.interrupted` when a
        signal stopped the sweep, and `summary.leaderboard` when the executor took care of it
        (the sweep regenerates it otherwise)."""
        ...


def regenerate_leaderboard(runs_dir: Path, out_dir: Path) -> dict[str, Any]:
    """`harness.leaderboard.generate(runs_dir, out_dir)`, reported rather than raised."""
    if importlib.util.find_spec("harness.leaderboard") is None:
        return {"status": "skipped", "reason": "harness.leaderboard is not part of this installation"}
    try:
        from harness.leaderboard import generate

        generate(runs_dir, out_dir)
    except Exception as exc:  # the runs are done and recorded; report the leaderboard's failure
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return {"status": "failed", "out": str(out_dir), "error": f"{type(exc).__name__}: {first}"}
    return {"status": "written", "out": str(out_dir)}
