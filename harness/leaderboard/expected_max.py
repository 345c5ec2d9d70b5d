"""Expected maximum validation performance (Dodge et al., 2019, "Show Your Work: Improved Reporting
of Experimental Results", EMNLP, section 3).

A tuning study ran N trials; how good would the best of n of them be, n = 1..N? Dodge et al.
answer with the expected maximum of n trials drawn i.i.d. (with replacement) from the empirical
distribution of the N observed objective values. With the values sorted, v_(1) <= ... <= v_(N),
the maximum of n draws is v_(i) with probability P_i(n) = (i/N)^n - ((i-1)/N)^n, so

    E[max_n] = sum_i v_(i) [(i/N)^n - ((i-1)/N)^n]

and its variance is Var[max_n] = E[max_n^2] - E[max_n]^2 = sum_i P_i(n) (v_(i) - E[max_n])^2
(the same quantity, summed in the form that loses no digits to cancellation). The leaderboard
draws the curve E[max_n] against n with the band E[max_n] ± sqrt(Var[max_n]). Ties need no
care: equal values at neighbouring ranks add up their probabilities. Pure Python (`math.fsum`),
no torch, no numpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["expected_max", "max_probabilities"]


def max_probabilities(n_values: int, n: int) -> list[float]:
    """P_i(n) = (i/N)^n - ((i-1)/N)^n for i = 1..N: the chance that the maximum of `n` i.i.d. draws
    from N equally likely sorted values is the i-th smallest."""
    if n_values < 1 or n < 1:
        raise ValueError(f"need at least one value and one draw (got N={n_values}, n={n})")
    return [(i / n_values) ** n - ((i - 1) / n_values) ** n for i in range(1, n_values + 1)]


def expected_max(values: Sequence[float]) -> list[tuple[float, float]]:
    """(E[max_n], std of max_n) for n = 1..len(values) (Dodge et al. 2019, module docstring).

    Empty `values` give an empty list; every value must be finite.
    """
    ordered = sorted(float(v) for v in values)
    if not all(math.isfinite(v) for v in ordered):
        raise ValueError("expected_max: every value must be finite")
    curve = []
    for n in range(1, len(ordered) + 1):
        p = max_probabilities(len(ordered), n)
        mean = math.fsum(pi * v for pi, v in zip(p, ordered, strict=True))
        var = math.fsum(pi * (v - mean) ** 2 for pi, v in zip(p, ordered, strict=True))
        curve.append((mean, math.sqrt(max(var, 0.0))))
    return curve
