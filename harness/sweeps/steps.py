"""Step detection over a nightly series: the optimal piecewise-constant fit.

The same idea as airspeed velocity's `step_detect` (a series is a few constant levels plus noise;
find the levels), written for the nightly's weighted means. Given values x_1..x_n with weights
w_i > 0 (the inverse variance of each night's mean) and a penalty beta, the fit is the partition
of 1..n into contiguous segments that minimises

    sum over segments S of  sum_{i in S} w_i (x_i - mu_S)^2  +  beta * (number of segments - 1)

where mu_S is the weighted mean of S. It is found exactly by dynamic programming over the last
segment's start (optimal partitioning, Jackson et al. 2005), in O(n^2) with prefix sums; a few
hundred nights take milliseconds.

Nothing here knows about nights or snapshots: `harness.sweeps.trend` feeds it a group's series.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Segment:
    """Nights start..end-1 of the series (a half-open range) at one level."""

    start: int
    end: int
    level: float  # the weighted mean of its values
    weight: float  # the sum of its weights


class _Prefix:
    """Prefix sums of w, w x and w x^2: the cost of any segment in O(1)."""

    def __init__(self, values: Sequence[float], weights: Sequence[float]) -> None:
        self.w, self.wx, self.wxx = [0.0], [0.0], [0.0]
        for x, w in zip(values, weights, strict=True):
            self.w.append(self.w[-1] + w)
            self.wx.append(self.wx[-1] + w * x)
            self.wxx.append(self.wxx[-1] + w * x * x)

    def level(self, start: int, end: int) -> float:
        return (self.wx[end] - self.wx[start]) / (self.w[end] - self.w[start])

    def cost(self, start: int, end: int) -> float:
        """sum w_i (x_i - mu)^2 over start..end-1 = sum w x^2 - (sum w x)^2 / sum w."""
        w = self.w[end] - self.w[start]
        wx = self.wx[end] - self.wx[start]
        return max(0.0, self.wxx[end] - self.wxx[start] - wx * wx / w)


def fit_steps(values: Sequence[float], weights: Sequence[float], penalty: float) -> list[Segment]:
    """The segments of the optimal piecewise-constant fit (module docstring), oldest first."""
    n = len(values)
    if n == 0:
        return []
    if any(not w > 0 for w in weights):
        raise ValueError("every weight must be positive")
    prefix = _Prefix(values, weights)
    best = [0.0] + [float("inf")] * n  # best[j]: the fit's cost of the first j values
    last_start = [0] * (n + 1)
    for end in range(1, n + 1):
        for start in range(end):
            cost = best[start] + prefix.cost(start, end) + (penalty if start else 0.0)
            if cost < best[end] - 1e-12:
                best[end], last_start[end] = cost, start
    segments = []
    end = n
    while end > 0:
        start = last_start[end]
        segments.append(Segment(start, end, prefix.level(start, end), prefix.w[end] - prefix.w[start]))
        end = start
    return segments[::-1]
