"""The baselines every strategy is compared with, declared once.

Each setting of the leaderboard picks one row per baseline (see `aggregate`) and every other row
gets its gain over it. A baseline is named by

* `kind`: the short key of `Setting.baselines` and `Row.gains`, and of the output columns
  (`baseline_<kind>`, `gain_<kind>`, ...);
* `method`: the strategy (registry name in `harness.strategies`) whose runs are its candidates;
* `name`: how prose names it ("the label-smoothing baseline");
* `short`: how a column header names it ("Δ vs LS").

`BASELINES` is in column order: label smoothing first (the matched comparison this leaderboard
exists for), then plain cross-entropy, which also anchors the confidence deltas (Sultan 2023).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Baseline:
    """One baseline strategy of the leaderboard."""

    kind: str
    method: str
    name: str
    short: str


LS = Baseline(kind="ls", method="label_smoothing", name="label-smoothing", short="LS")
CE = Baseline(kind="ce", method="ce", name="CE", short="CE")
BASELINES: tuple[Baseline, ...] = (LS, CE)
