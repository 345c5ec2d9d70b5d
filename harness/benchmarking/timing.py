"""Interleaved timing: every case is measured in each round, in rotating order, and the
median over rounds is kept, so drifts of the machine (other load, thermal) hit all cases alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

#: How a benchmark may time its cases. `wall` (time.perf_counter) is what a user waits; `cpu`
#: (time.process_time, the CPU seconds of this process) is what the work itself costs, steadier
#: than wall time on a machine that other jobs share (with one torch thread: spinning threads
#: count as CPU time too).
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


@dataclass
class Timing:
    """Per-round seconds for one case (each round runs `work` units, e.g. training steps)."""

    case: str
    rounds: list[float]
    work: int

    @property
    def median(self) -> float:
        """Median seconds per unit of work."""
        return statistics.median(self.rounds) / self.work

    @property
    def spread(self) -> float:
        """(max - min) / median of the rounds: how noisy the measurement was."""
        med = statistics.median(self.rounds)
        return (max(self.rounds) - min(self.rounds)) / med if med > 0 else float("nan")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(
    cases: dict[str, Callable[[], float | None]],
    *,
    rounds: int,
    work: int,
    warmup: int = 1,
    device: torch.device | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Timing]:
    """Time `work` calls of each case per round, cases rotating order each round.

    A case that returns a number reports the seconds it measured itself (an epoch as the runner
    times it, without the evaluation and the writes that follow it in the same call): a round of
    it counts the sum of those, not the time of its calls on `clock`.
    """
    names: Sequence[str] = list(cases)
    for name in names:
        for _ in range(warmup):
            cases[name]()
    results = {name: Timing(name, [], work) for name in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            if device is not None:
                sync(device)
            start = clock()
            own = [cases[name]() for _ in range(work)]
            if device is not None:
                sync(device)
            taken = clock() - start
            reported = [t for t in own if isinstance(t, float)]
            results[name].rounds.append(sum(reported) if len(reported) == work else taken)
    return results
