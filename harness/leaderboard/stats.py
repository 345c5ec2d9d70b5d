"""Summary statistics over seeds, confidence intervals and tests for a difference of means,
Holm's correction and the seeds a test needs. Distributions come from scipy (`scipy.special`'s
Student and noncentral t functions, which `scipy.stats.t` and `scipy.stats.nct` evaluate).

* `mean`, `sample_std`: the arithmetic mean and the sample standard deviation (ddof = 1,
  Bessel's correction) of the finite values; `None` when there are too few.
* `pooled_std`: the pooled standard deviation of two samples,
  s_p = sqrt(((n_a - 1) s_a^2 + (n_b - 1) s_b^2) / (n_a + n_b - 2)); `None` when
  n_a + n_b <= 2 (a sample of one value adds no spread and no degree of freedom).
* `throughput`: a run's training images per second, sum(train_samples) / sum(epoch_time_s)
  over all its epochs (the first, with its warm-up, included: it is time the run took). The one
  definition of a run's images/s in the leaderboard, the nightly snapshots and the sweep plan.
* `welch_interval`: the 95% confidence interval of mean(a) - mean(b) for two independent samples
  with unequal variances (Welch 1947), with the Welch–Satterthwaite degrees of freedom, and the
  two-sided p-value of Welch's t test (`scipy.stats.ttest_ind(a, b, equal_var=False)`):

      se^2 = s_a^2 / n_a + s_b^2 / n_b
      df   = se^4 / ((s_a^2 / n_a)^2 / (n_a - 1) + (s_b^2 / n_b)^2 / (n_b - 1))
      CI   = diff -/+ t_{1 - (1 - level) / 2, df} * se,   p = 2 P(T_df >= |diff| / se)

* `paired_interval`: the paired t interval and test (Student 1908; `scipy.stats.ttest_rel`) on
  the per-pair differences d_i = a_i - b_i of n pairs: mean(d) -/+ t_{1 - (1 - level) / 2, n - 1}
  * s_d / sqrt(n), p = 2 P(T_{n-1} >= |mean(d)| / (s_d / sqrt(n))).
* `holm`: Holm's (1979) step-down adjusted p-values of one family of m tests: with the p-values
  sorted p_(1) <= ... <= p_(m), p~_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)) (as
  `statsmodels.stats.multitest.multipletests(method="holm")`). Rejecting where p~ < alpha keeps
  the family-wise error rate at alpha under any dependence between the tests.
* `seeds_needed_paired`, `seeds_needed_unpaired`: the smallest number of seeds n >= 2 at which a
  two-sided `alpha` t test detects a true difference `diff` with probability `power`, given the
  spread `sd` (Cohen 1988, ch. 2; the noncentral t, `scipy.stats.nct`). With d = |diff| / sd and
  c = t_{1 - alpha / 2, df}, power(n) = P(T'_{df, nc} > c) + P(T'_{df, nc} < -c), where

      paired (one-sample t on the differences, sd = s_d):  df = n - 1,   nc = d sqrt(n)
      unpaired (two-sample t, n per arm, sd = s_p):        df = 2n - 2,  nc = d sqrt(n / 2)

  as `statsmodels.stats.power.TTestPower` / `TTestIndPower(ratio=1)`. Power grows with n: the
  search walks from the normal approximation to the exact n; beyond `SEEDS_CAP` it is "more than
  SEEDS_CAP". No difference
  (d = 0) never resolves; no spread (sd = 0) or an unknown spread (fewer than two values) has no
  answer: `SeedsNeeded.why` says which.

Everything returns plain Python floats, deterministic for the same inputs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from scipy import special as _special

SIGNIFICANT = "significant"
NOT_SIGNIFICANT = "not significant"
NOT_COMPUTABLE = "not computable"

#: The seeds-needed search stops here: a larger answer reads "more than SEEDS_CAP".
SEEDS_CAP = 1000


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
def t_quantile(p: float, df: float) -> float:
    """The t with P(T_df <= t) = p (`scipy.special.stdtrit`, what `scipy.stats.t.ppf` evaluates)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"probability must be in (0, 1), got {p}")
    if not df > 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    return float(_special.stdtrit(df, p))


def two_sided_p(t: float, df: float) -> float:
    """2 P(T_df >= |t|) = 2 P(T_df <= -|t|) (`scipy.special.stdtr`, the Student t cdf)."""
    return float(min(1.0, 2.0 * _special.stdtr(df, -abs(t))))


# ------------------------------------------------------------------------------ intervals
@dataclass(frozen=True)
class Interval:
    """mean(a) - mean(b) with its confidence interval, the two-sided p-value and a verdict.

    `test` is `welch` or `paired`; for a paired interval `n_a` = `n_b` = the number of pairs.
    `status` is `significant` (the interval excludes 0), `not significant` (it contains 0) or
    `not computable` (fewer than two values on a side, or no variance); `reason` says why in the
    last case. `sd` is the spread the test uses: the sd of the differences (paired) or the pooled
    sd (Welch), for the seeds-needed figures.
    """

    diff: float | None
    lo: float | None
    hi: float | None
    df: float | None
    n_a: int
    n_b: int
    status: str
    reason: str = ""
    p: float | None = None
    test: str = "welch"
    sd: float | None = None


def _verdict(diff: float, se: float, df: float, level: float) -> tuple[float, float, float, str]:
    """(lo, hi, p, status) of a t interval diff -/+ t_{1 - (1 - level) / 2, df} se."""
    half = t_quantile(1.0 - (1.0 - level) / 2.0, df) * se
    lo, hi = diff - half, diff + half
    status = SIGNIFICANT if lo > 0.0 or hi < 0.0 else NOT_SIGNIFICANT
    return lo, hi, two_sided_p(diff / se, df), status


def welch_interval(a: Iterable[float | None], b: Iterable[float | None], level: float = 0.95) -> Interval:
    """Welch's `level` confidence interval of mean(a) - mean(b) (Welch–Satterthwaite df) and p."""
    xa, xb = finite(a), finite(b)
    na, nb = len(xa), len(xb)
    if na == 0 or nb == 0:
        return Interval(None, None, None, None, na, nb, NOT_COMPUTABLE, "no values on a side")
    diff = math.fsum(xa) / na - math.fsum(xb) / nb
    sd = pooled_std(xa, xb)
    if na < 2 or nb < 2:
        reason = "fewer than 2 seeds on a side"
        return Interval(diff, None, None, None, na, nb, NOT_COMPUTABLE, reason, sd=sd)
    va, vb = sample_variance(xa) / na, sample_variance(xb) / nb  # type: ignore[operator]
    se2 = va + vb
    if se2 == 0.0:
        reason = "no variance on either side"
        return Interval(diff, None, None, None, na, nb, NOT_COMPUTABLE, reason, sd=sd)
    df = se2 * se2 / (va * va / (na - 1) + vb * vb / (nb - 1))
    lo, hi, p, status = _verdict(diff, math.sqrt(se2), df, level)
    return Interval(diff, lo, hi, df, na, nb, status, p=p, sd=sd)


def paired_interval(pairs: Iterable[tuple[float, float]], level: float = 0.95) -> Interval:
    """The paired t interval and p-value of mean(a_i - b_i) over the pairs (a_i, b_i)."""
    d = [a - b for a, b in pairs if is_number(a) and is_number(b)]
    n = len(d)
    if n == 0:
        return Interval(None, None, None, None, 0, 0, NOT_COMPUTABLE, "no pairs", test="paired")
    diff = math.fsum(d) / n
    sd = sample_std(d)
    if sd is None:
        return Interval(diff, None, None, None, n, n, NOT_COMPUTABLE, "fewer than 2 pairs", test="paired")
    if sd == 0.0:
        reason = "no variance of the differences"
        return Interval(diff, None, None, None, n, n, NOT_COMPUTABLE, reason, test="paired", sd=sd)
    lo, hi, p, status = _verdict(diff, sd / math.sqrt(n), float(n - 1), level)
    return Interval(diff, lo, hi, float(n - 1), n, n, status, p=p, test="paired", sd=sd)


# ------------------------------------------------------------------------------ Holm
def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values of one family (None entries are not in the family)."""
    present = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    m = len(present)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(present):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


# ------------------------------------------------------------------------------ seeds needed
@dataclass(frozen=True)
class SeedsNeeded:
    """Seeds a test needs to detect a difference: `n`, or None with `why` (see `text`)."""

    n: int | None
    why: str = ""  # "" | "more than SEEDS_CAP" | "no difference" | "no spread" | "fewer than 2 seeds"

    def text(self) -> str:
        """'12', '>1000', or the reason there is no number."""
        if self.n is not None:
            return str(self.n)
        return f">{SEEDS_CAP}" if self.why.startswith("more than") else self.why


def t_test_power(effect: float, n: int, paired: bool, alpha: float = 0.05) -> float:
    """Power of the two-sided `alpha` t test at standardised effect |diff| / sd and n seeds (per
    arm): one-sample (paired) df = n - 1, nc = d sqrt(n); two-sample df = 2n - 2, nc = d sqrt(n/2).

    The noncentral t cdf is `scipy.special.nctdtr` (what `scipy.stats.nct` evaluates, without its
    per-call overhead: the board computes thousands). It gives NaN for the far tail P(T' < -c) at a
    large nc, where it is below P(T' <= c) and negligible: it counts as 0 there.
    """
    df = n - 1 if paired else 2 * n - 2
    nc = abs(effect) * math.sqrt(n if paired else n / 2.0)
    crit = t_quantile(1.0 - alpha / 2.0, df)
    upper = 1.0 - float(_special.nctdtr(df, nc, crit))
    lower = float(_special.nctdtr(df, nc, -crit))
    return upper + (lower if math.isfinite(lower) else 0.0)


def _seeds_needed(
    diff: float | None, sd: float | None, paired: bool, alpha: float, power: float
) -> SeedsNeeded:
    """Smallest n in [2, SEEDS_CAP] with t_test_power >= power. Power grows with n: the walk
    starts at the normal approximation n ~ k ((z_{1 - alpha/2} + z_power) / d)^2 (k = 1 paired,
    2 per arm unpaired) and steps to the exact answer."""
    if diff is None or sd is None or not math.isfinite(sd):
        return SeedsNeeded(None, "fewer than 2 seeds")
    if sd == 0.0:
        return SeedsNeeded(None, "no spread")
    if diff == 0.0:
        return SeedsNeeded(None, "no difference")
    effect = abs(diff) / sd

    def enough(n: int) -> bool:
        return t_test_power(effect, n, paired, alpha) >= power

    if not enough(SEEDS_CAP):
        return SeedsNeeded(None, f"more than {SEEDS_CAP}")
    z = float(_special.ndtri(1.0 - alpha / 2.0) + _special.ndtri(power))
    n = min(SEEDS_CAP, max(2, math.ceil((1 if paired else 2) * (z / effect) ** 2)))
    if enough(n):
        while n > 2 and enough(n - 1):
            n -= 1
    else:
        while not enough(n):
            n += 1
    return SeedsNeeded(n)


def seeds_needed_paired(
    diff: float | None, sd: float | None, alpha: float = 0.05, power: float = 0.8
) -> SeedsNeeded:
    """Pairs (seeds) for the paired t test to detect `diff` at the differences' sd `sd`."""
    return _seeds_needed(diff, sd, True, alpha, power)


def seeds_needed_unpaired(
    diff: float | None, sd: float | None, alpha: float = 0.05, power: float = 0.8
) -> SeedsNeeded:
    """Seeds per arm for the two-sample t test (equal n) to detect `diff` at pooled sd `sd`."""
    return _seeds_needed(diff, sd, False, alpha, power)
