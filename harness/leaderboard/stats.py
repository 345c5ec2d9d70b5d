"""Summary statistics over seeds and Welch's confidence interval for a difference of means.

* `mean`, `sample_std`: the arithmetic mean and the sample standard deviation (ddof = 1,
  Bessel's correction) of the finite values; `None` when there are too few.
* `pooled_std`: the pooled standard deviation of two samples,
  s_p = sqrt(((n_a - 1) s_a^2 + (n_b - 1) s_b^2) / (n_a + n_b - 2)); `None` when
  n_a + n_b <= 2 (a sample of one value adds no spread and no degree of freedom).
* `throughput`: a run's training images per second, sum(train_samples) / sum(epoch_time_s)
  over all its epochs (the first, with its warm-up, included: it is time the run took). The one
  definition of a run's images/s in the leaderboard, the nightly snapshots and the sweep plan.
* `welch_interval`: the 95% confidence interval of mean(a) - mean(b) for two independent samples
  with unequal variances (Welch 1947), with the Welch–Satterthwaite degrees of freedom

      se^2 = s_a^2 / n_a + s_b^2 / n_b
      df   = se^4 / ((s_a^2 / n_a)^2 / (n_a - 1) + (s_b^2 / n_b)^2 / (n_b - 1))
      CI   = diff -/+ t_{1 - (1 - level) / 2, df} * se

* `t_quantile`: the Student t quantile for any real df > 0, by bisection on `t_cdf`, which uses
  the regularised incomplete beta function (continued fraction, DLMF 8.17.22):
  P(T <= t) = 1 - I_{df / (df + t^2)}(df / 2, 1 / 2) / 2 for t >= 0.

Everything is plain Python floats, deterministic, with no dependency beyond `math`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

SIGNIFICANT = "significant"
NOT_SIGNIFICANT = "not significant"
NOT_COMPUTABLE = "not computable"


def is_number(x: Any) -> bool:
    """A finite int or float (not a bool, not None, not NaN or infinite)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def finite(values: Iterable[float | None]) -> list[float]:
    """The values that are numbers and finite, in order."""
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def mean(values: Iterable[float | None]) -> float | None:
    """Arithmetic mean of the finite values (exactly rounded sum); None if there are none."""
    xs = finite(values)
    return math.fsum(xs) / len(xs) if xs else None


def sample_variance(values: Iterable[float | None]) -> float | None:
    """Sample variance with ddof = 1 of the finite values; None for fewer than two."""
    xs = finite(values)
    if len(xs) < 2:
        return None
    m = math.fsum(xs) / len(xs)
    return math.fsum((x - m) ** 2 for x in xs) / (len(xs) - 1)


def sample_std(values: Iterable[float | None]) -> float | None:
    """Sample standard deviation (ddof = 1) of the finite values; None for fewer than two."""
    var = sample_variance(values)
    return None if var is None else math.sqrt(var)


def pooled_std(a: Iterable[float | None], b: Iterable[float | None]) -> float | None:
    """sqrt(((n_a - 1) s_a^2 + (n_b - 1) s_b^2) / (n_a + n_b - 2)) over the finite values; None for
    n_a + n_b <= 2."""
    xa, xb = finite(a), finite(b)
    dof = len(xa) + len(xb) - 2
    if dof <= 0:
        return None
    spread = math.fsum((len(xs) - 1) * (sample_variance(xs) or 0.0) for xs in (xa, xb))
    return math.sqrt(spread / dof)


def throughput(rows: Sequence[dict[str, Any]]) -> float | None:
    """Images trained per second over a run's epochs: sum(train_samples) / sum(epoch_time_s).

    Falls back to the mean of the per-epoch `img_per_s` when a sample count or time is missing;
    None when that is missing too.
    """
    pairs = [
        (r.get("train_samples"), r.get("epoch_time_s"))
        for r in rows
        if is_number(r.get("train_samples")) and is_number(r.get("epoch_time_s")) and r["epoch_time_s"] > 0
    ]
    if pairs and len(pairs) == len(rows):
        return math.fsum(p[0] for p in pairs) / math.fsum(p[1] for p in pairs)
    return mean(r.get("img_per_s") for r in rows)


# ------------------------------------------------------------------------------ Student t
def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function, evaluated by the modified Lentz method."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            step = c * d
            h *= step
        if abs(step - 1.0) < 1e-15:
            break
    return h


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = a * math.log(x) + b * math.log1p(-x) - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` > 0 degrees of freedom."""
    if df <= 0 or math.isnan(df):
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    tail = 0.5 * regularized_incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p (0 < p < 1), by bisection to machine precision."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"probability must be in (0, 1), got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    if p == 0.5:
        return 0.0
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


# ------------------------------------------------------------------------------ Welch
@dataclass(frozen=True)
class Interval:
    """mean(a) - mean(b) with its Welch confidence interval and a verdict.

    `status` is `significant` (the interval excludes 0), `not significant` (it contains 0) or
    `not computable` (fewer than two values on a side, or no variance on either side); `reason`
    says why in the last case.
    """

    diff: float | None
    lo: float | None
    hi: float | None
    df: float | None
    n_a: int
    n_b: int
    status: str
    reason: str = ""


def welch_interval(a: Iterable[float | None], b: Iterable[float | None], level: float = 0.95) -> Interval:
    """Welch's `level` confidence interval of mean(a) - mean(b) (Welch–Satterthwaite df)."""
    xa, xb = finite(a), finite(b)
    na, nb = len(xa), len(xb)
    if na == 0 or nb == 0:
        return Interval(None, None, None, None, na, nb, NOT_COMPUTABLE, "no values on a side")
    diff = math.fsum(xa) / na - math.fsum(xb) / nb
    if na < 2 or nb < 2:
        return Interval(diff, None, None, None, na, nb, NOT_COMPUTABLE, "fewer than 2 seeds on a side")
    va, vb = sample_variance(xa) / na, sample_variance(xb) / nb  # type: ignore[operator]
    se2 = va + vb
    if se2 == 0.0:
        return Interval(diff, None, None, None, na, nb, NOT_COMPUTABLE, "no variance on either side")
    df = se2 * se2 / (va * va / (na - 1) + vb * vb / (nb - 1))
    half = t_quantile(1.0 - (1.0 - level) / 2.0, df) * math.sqrt(se2)
    lo, hi = diff - half, diff + half
    status = SIGNIFICANT if lo > 0.0 or hi < 0.0 else NOT_SIGNIFICANT
    return Interval(diff, lo, hi, df, na, nb, status)
