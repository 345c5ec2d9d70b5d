"""Every row's gain over each baseline: which top-1, which test, the family, the mark.

**Which top-1.** A gain compares the rows' per-run top-1 on the evaluation split at each run's
*selected* epoch (the epoch of its best held-out top-1: chosen on the validation split, never the
test split) when every run of both rows has a held-out split; otherwise (runs written before the
held-out split existed, or recipes without one) at the last epoch. `Comparison.basis` says which
(`selected` or `last`), and each board states it.

**Intervals.** Every gain gets Welch's 95% interval over all seeds of the two rows (unpaired), and
the paired 95% t interval of the per-seed differences over the *shared* seeds (the seeds both
rows ran: runs of one seed are paired by construction, with the same initial weights, data order
and augmented views). The test behind a row's mark is the **paired t test where at least 2 seeds
pair, else Welch's**; both intervals and p-values are in leaderboard.parquet/csv.

**Multiplicity.** A setting's comparisons with its label-smoothing baseline form one family, its
comparisons with its CE baseline another (each non-baseline row with a computable test is one
member). Within a family the p-values of the marks' tests are adjusted by Holm's step-down
procedure (Holm 1979), which keeps the family-wise error rate at 5%. A gain is **significant**
(`*` on the pages) when its Holm-adjusted p < 0.05; the interval shown stays the unadjusted 95%
interval of the same test, so an interval that excludes 0 can still be marked `ns` after the
correction.

**Seeds needed.** For a row that is not significant the pages show `ns, ~N seeds to resolve`: the
seeds at which a two-sided 5% t test of the same kind (paired: one-sample t on the per-seed
differences at their sd; unpaired: two-sample t with N seeds per row at the pooled sd) would
detect a true difference of the observed size with 80% power (`stats.seeds_needed_paired`,
`stats.seeds_needed_unpaired`); leaderboard.parquet also has it for a fixed 0.3 points, the margin
papers in this field usually claim. It is capped at `stats.SEEDS_CAP` (`>1000`), and says
`no difference`, `no spread` or `fewer than 2 seeds` where there is no number. These are for one
5% test: a row may already have that many seeds and still be `ns` after Holm's correction, so
leaderboard.parquet also gives the seeds at level 0.05 / m for a family of m (Bonferroni's level,
the strictest step of Holm's procedure: enough whatever the other p-values).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from harness.leaderboard.stats import (
    NOT_COMPUTABLE,
    NOT_SIGNIFICANT,
    SIGNIFICANT,
    Interval,
    SeedsNeeded,
    holm,
    paired_interval,
    seeds_needed_paired,
    seeds_needed_unpaired,
    welch_interval,
)


class Seeds(Protocol):
    """What a comparison reads of a row (`aggregate.Row`): its seeds and per-run values."""

    @property
    def seeds(self) -> list[int]: ...

    def column(self, name: str) -> list[float | None]: ...


#: Significance level of every mark, after Holm's correction within a family.
ALPHA = 0.05
#: Power at which `seeds` and `seeds_margin` are computed.
POWER = 0.8
#: The fixed difference (points of top-1) of `seeds_margin`: the field's usual claimed margin.
MARGIN = 0.3
#: The per-run value a gain compares, by basis.
BASIS_VALUES = {"selected": "top1_selected", "last": "top1_last"}


@dataclass(frozen=True)
class Comparison:
    """One row against one baseline: both intervals, the test used, Holm's p and seeds needed."""

    basis: str  # "selected" (validation-selected epoch) | "last" (last epoch)
    welch: Interval  # over all seeds of the two rows
    paired: Interval  # over the shared seeds
    test: str  # "paired" (>= 2 shared seeds) | "welch"
    seeds: SeedsNeeded  # to detect the observed difference
    seeds_margin: SeedsNeeded  # to detect MARGIN points
    p_holm: float | None = None
    family: int = 0  # members of the family the Holm correction ran over
    seeds_family: SeedsNeeded = SeedsNeeded(None, "fewer than 2 seeds")  # at ALPHA / family

    @property
    def used(self) -> Interval:
        """The interval of the test behind the mark."""
        return self.paired if self.test == "paired" else self.welch

    @property
    def diff(self) -> float | None:
        """The gain: the row's mean minus the baseline's, over all their seeds."""
        return self.welch.diff

    @property
    def p(self) -> float | None:
        """The unadjusted two-sided p-value of the test used."""
        return self.used.p

    @property
    def status(self) -> str:
        """significant (Holm-adjusted p < ALPHA) | not significant | not computable."""
        if self.used.status == NOT_COMPUTABLE or self.p_holm is None:
            return NOT_COMPUTABLE
        return SIGNIFICANT if self.p_holm < ALPHA else NOT_SIGNIFICANT


def basis_for(row: Seeds, base: Seeds) -> str:
    """`selected` when every run of both rows has a validation-selected top-1, else `last`."""
    values = row.column(BASIS_VALUES["selected"]) + base.column(BASIS_VALUES["selected"])
    return "selected" if values and all(v is not None for v in values) else "last"


def compare(row: Seeds, base: Seeds) -> Comparison:
    """The row's gain over `base` (Holm's p is set later, per family, by `adjust_family`)."""
    basis = basis_for(row, base)
    value = BASIS_VALUES[basis]
    welch = welch_interval(row.column(value), base.column(value))
    mine = dict(zip(row.seeds, row.column(value), strict=True))
    theirs = dict(zip(base.seeds, base.column(value), strict=True))
    shared = sorted(set(mine) & set(theirs))
    paired = paired_interval([(mine[s], theirs[s]) for s in shared])  # type: ignore[misc]
    test = "paired" if paired.n_a >= 2 else "welch"
    if test == "paired":
        margin = seeds_needed_paired(MARGIN, paired.sd, ALPHA, POWER)
    else:
        margin = seeds_needed_unpaired(MARGIN, welch.sd, ALPHA, POWER)
    draft = Comparison(basis, welch, paired, test, SeedsNeeded(None), margin)
    return replace(draft, seeds=_seeds_at(draft, ALPHA))


def adjust_family(comparisons: Sequence[Comparison | None]) -> list[Comparison | None]:
    """The family's comparisons with Holm-adjusted p-values (None entries stay None)."""
    ps = [c.p if c is not None and c.used.status != NOT_COMPUTABLE else None for c in comparisons]
    adjusted = holm(ps)
    m = sum(p is not None for p in ps)
    return [
        None if c is None else replace(c, p_holm=q, family=m, seeds_family=_seeds_at(c, ALPHA / max(m, 1)))
        for c, q in zip(comparisons, adjusted, strict=True)
    ]


def _seeds_at(c: Comparison, alpha: float) -> SeedsNeeded:
    """Seeds for the comparison's test to detect its observed difference at level `alpha`."""
    if c.test == "paired":
        return seeds_needed_paired(c.paired.diff, c.paired.sd, alpha, POWER)
    return seeds_needed_unpaired(c.welch.diff, c.welch.sd, alpha, POWER)
