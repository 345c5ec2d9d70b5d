"""The nightly history judged as a whole: each group's series, its steps, its baseline.

A night is not compared with the night before it alone (a regression would become tomorrow's
baseline, and a slow drift under the floor would never be seen) but with the group's last healthy
state, found by step detection over all its nights (`harness.sweeps.steps`):

1. The group's series: its nights since its last acceptance (`accept`), oldest first; for
   images/s only the nights on tonight's device. Each night's value is the mean over its seeds,
   weighted by n / sigma^2, with sigma the night's seed standard deviation, at least the noise the
   allowance tolerates from one seed (floor / k points of top-1; tolerance / k of the night's
   images/s).
2. The fit: the optimal piecewise-constant segmentation with penalty k^2 / 2 per step (two
   single-seed nights are split exactly when they differ by more than the allowance).
3. The baseline walks the segments oldest first: it starts at the first; a segment above it by
   more than the allowance is an improvement (a step up) and, once it has held two nights,
   becomes the baseline; a segment below it by more is regressed; one within the allowance
   leaves it where it is (so small drops add up).
4. Tonight regresses when the last segment (the one holding tonight) is below the baseline by
   more than the allowance. The step's first night is the first of the trailing run of regressed
   segments; the last good night the one before it; their `git_commit`s are the range to bisect.

The allowance: top-1 max(k s, floor) points, with s the seeds' standard deviation pooled over
the nights of the baseline and of the last segment, each night's seeds about their own mean
(`leaderboard.stats.pooled_std` over two nights); images/s tolerance x the baseline's level.

`accept` records that a group's current level is intended (who, when, why) in
`<history>/accepted.jsonl`; its series then starts at the accepted step's first night.
A snapshot that cannot be read is moved to `<history>/set-apart/` with one line in the report.
"""

from __future__ import annotations

import getpass
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from harness.errors import HarnessError
from harness.leaderboard.stats import finite, is_number, sample_std, sample_variance
from harness.store.files import atomic_write_bytes
from harness.sweeps.steps import Segment, fit_steps

ACCEPTED_FILE = "accepted.jsonl"
#: the columns the judgement reads (a file without them is set apart)
SNAPSHOT_COLUMNS = ("group", "top1", "img_per_s", "device_name", "git_commit")
SET_APART_DIR = "set-apart"
#: acceptances and improvements stay listed in the report for this many nights
LISTED_NIGHTS = 30
#: a step up becomes the baseline once its level has held this many nights (one lucky night does
#: not raise the bar for the nights after it)
HELD_NIGHTS = 2


# ------------------------------------------------------------------------------ the history
@dataclass
class History:
    """Every readable snapshot, by night (sorted), and what was set apart on the way."""

    nights: list[str] = field(default_factory=list)
    rows: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # night -> group -> row
    set_apart: list[str] = field(default_factory=list)
    accepted: list[Acceptance] = field(default_factory=list)

    def series(self, group: str, until: str | None = None) -> list[dict[str, Any]]:
        """The group's rows, oldest first, up to night `until` (inclusive)."""
        return [
            self.rows[n][group]
            for n in self.nights
            if (until is None or n <= until) and group in self.rows[n]
        ]


@dataclass(frozen=True)
class Acceptance:
    """A group's current level declared intended: its baseline starts at `start`."""

    group: str
    night: str  # the last night of the history when it was accepted
    start: str  # the first night of the accepted level
    by: str
    at: str  # UTC, ISO 8601
    reason: str


def load_history(history: Path) -> History:
    """Every snapshot of `history`; an unreadable one is moved to `set-apart/` with one line."""
    out = History()
    for path in sorted(history.glob("*.parquet")):
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as exc:
            out.set_apart.append(_set_apart(history, path, f"unreadable: {exc}"))
            continue
        missing = [c for c in SNAPSHOT_COLUMNS if c not in table.column_names]
        if missing:
            out.set_apart.append(_set_apart(history, path, f"not a nightly snapshot: no column {missing[0]}"))
            continue
        out.nights.append(path.stem)
        out.rows[path.stem] = {r["group"]: {**r, "night": path.stem} for r in table.to_pylist()}
    out.accepted = read_acceptances(history, out.set_apart)
    return out


def _set_apart(history: Path, path: Path, reason: str) -> str:
    """Move an unreadable snapshot out of the way (never delete it); the line says where."""
    target = history / SET_APART_DIR / path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    n = 1
    while target.exists():  # an earlier copy set apart under the same name stays
        n += 1
        target = target.with_name(f"{path.stem}.{n}{path.suffix}")
    path.replace(target)
    return f"{path.name}: set apart to {SET_APART_DIR}/ ({reason})"


def read_acceptances(history: Path, problems: list[str] | None = None) -> list[Acceptance]:
    """The acceptances recorded in `<history>/accepted.jsonl`, oldest first (bad lines skipped)."""
    path = history / ACCEPTED_FILE
    if not path.exists():
        return []
    out = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(Acceptance(**json.loads(line)))
        except (ValueError, TypeError):
            if problems is not None:
                problems.append(f"{ACCEPTED_FILE} line {i}: unreadable, ignored")
    return out


def baseline_start(history: History, group: str) -> str | None:
    """The first night of the group's accepted level (None: never accepted, its whole history)."""
    starts = [a.start for a in history.accepted if a.group == group]
    return starts[-1] if starts else None


# ------------------------------------------------------------------------------ the judgement
@dataclass
class Judgement:
    """One metric of one group over its history (the module docstring's steps 1-4)."""

    nights: list[str]
    values: list[float]
    segments: list[Segment]
    baseline: int  # index into segments
    regressed: bool
    allowance: float
    first_bad: int | None = None  # index into nights: the regression's first night
    improved_at: int | None = None  # index into nights: the last step up (to the baseline or tonight's)
    improving: bool = False  # the group is at that improved level tonight
    steps: list[tuple[int, str]] = field(default_factory=list)  # (night index, up|down): every step
    # beyond the allowance between neighbouring segments (what the trend page marks)

    @property
    def base_level(self) -> float:
        return self.segments[self.baseline].level

    @property
    def level(self) -> float:
        return self.segments[-1].level


def _pooled_seed_std(rows: Sequence[dict[str, Any]], key: str) -> float:
    """The seeds' standard deviation pooled over nights, each night about its own mean:
    sqrt(sum (n_i - 1) s_i^2 / sum (n_i - 1)) (`stats.pooled_std` for two nights); 0 without
    a degree of freedom."""
    spread, dof = 0.0, 0
    for row in rows:
        xs = finite(row[key] or ())
        spread += (len(xs) - 1) * (sample_variance(xs) or 0.0) if xs else 0.0
        dof += max(len(xs) - 1, 0)
    return math.sqrt(spread / dof) if dof else 0.0


def judge_series(
    rows: Sequence[dict[str, Any]], key: str, k: float, allowance_of: Any, min_sigma_of: Any
) -> Judgement | None:
    """Steps 2-4 of the module docstring over rows (one per night) and their per-seed `key`.
    `allowance_of(rows of the two segments compared, the first one's level)`: the allowed drop;
    `min_sigma_of(a night's mean)`: the least seed noise a night is given."""
    kept = [(r, [x for x in r[key] or () if is_number(x) and math.isfinite(x)]) for r in rows]
    kept = [(r, xs) for r, xs in kept if xs]
    if not kept:
        return None
    values = [sum(xs) / len(xs) for _, xs in kept]
    weights = []
    for (_, xs), m in zip(kept, values, strict=True):
        sigma = max(sample_std(xs) or 0.0, min_sigma_of(m), 1e-9)
        weights.append(len(xs) / sigma**2)
    segments = fit_steps(values, weights, k * k / 2)
    nights = [r["night"] for r, _ in kept]

    def allowance(a: int, b: int) -> float:
        """The allowed change between segments a and b (the seeds of both pooled)."""
        picked = [r for i, (r, _) in enumerate(kept) if _in(segments, (a, b), i)]
        return allowance_of(picked, segments[a].level)

    base, improved_at = 0, None
    for j in range(1, len(segments)):
        held = segments[j].end - segments[j].start >= HELD_NIGHTS
        if held and segments[j].level - segments[base].level > allowance(base, j):
            base, improved_at = j, segments[j].start
    last = len(segments) - 1
    allowed = allowance(base, last)
    judgement = Judgement(nights, values, segments, base, False, allowed, improved_at=improved_at)
    judgement.steps = [
        (segments[j].start, "up" if segments[j].level > segments[j - 1].level else "down")
        for j in range(1, len(segments))
        if abs(segments[j].level - segments[j - 1].level) > allowance(j - 1, j)
    ]
    if segments[last].level - segments[base].level > allowed:  # up tonight, not yet held
        judgement.improved_at = segments[last].start
    judgement.improving = judgement.improved_at is not None and judgement.improved_at >= segments[last].start
    if last == base or segments[base].level - segments[last].level <= allowed:
        return judgement
    first = last
    while first - 1 > base and segments[base].level - segments[first - 1].level > allowance(base, first - 1):
        first -= 1
    judgement.regressed, judgement.first_bad = True, segments[first].start
    return judgement


def _in(segments: Sequence[Segment], which: tuple[int, int], i: int) -> bool:
    return any(segments[s].start <= i < segments[s].end for s in which)


@dataclass(frozen=True)
class Policy:
    """When a group's current level is a regression (see the module docstring)."""

    k: float = 2.0  # seed standard deviations a top-1 drop may reach before it counts
    floor: float = 0.5  # top-1 points: smaller drops never count
    throughput_tolerance: float = 0.10  # fraction of the baseline's images/s

    def describe(self) -> str:
        return (
            f"each group against its last healthy level (steps fitted over its nights); top-1 regresses "
            f"when its level drops by more than max({self.k:g} x pooled seed std, {self.floor:g} points), "
            f"throughput when it falls by more than {100 * self.throughput_tolerance:g}% on the same device"
        )

    def judge_top1(self, rows: Sequence[dict[str, Any]]) -> Judgement | None:
        k = self.k

        def allowance(pick: Sequence[dict[str, Any]], base_level: float) -> float:
            return max(k * _pooled_seed_std(pick, "top1"), self.floor)

        return judge_series(rows, "top1", k, allowance, lambda m: self.floor / k if k else self.floor)

    def judge_throughput(self, rows: Sequence[dict[str, Any]]) -> Judgement | None:
        k, tol = self.k, self.throughput_tolerance

        def allowance(pick: Sequence[dict[str, Any]], base_level: float) -> float:
            return tol * base_level

        return judge_series(
            rows, "img_per_s", k, allowance, lambda m: tol * abs(m) / k if k else tol * abs(m)
        )


# ------------------------------------------------------------------------------ acceptance
def accept(
    history_dir: Path, groups: Sequence[str], reason: str, policy: Policy | None = None
) -> list[Acceptance]:
    """Record each group's current level as intended (append to accepted.jsonl); its next nights
    are judged against the nights from the accepted step on."""
    if not reason.strip():
        raise HarnessError("--reason: say why the change is accepted")
    history = load_history(history_dir)
    if not history.nights:
        raise HarnessError(f"{history_dir}: no nightly snapshot to accept from")
    policy = policy or Policy()
    latest = history.nights[-1]
    by = getpass.getuser()
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    made = []
    for group in groups:
        rows = since_accepted(history, group, latest)
        if not rows:
            raise HarnessError(f"{group}: no such group in {history_dir}")
        start = rows[-1]["night"]
        for judgement in (policy.judge_top1(rows), policy.judge_throughput(same_device(rows))):
            if judgement is not None and judgement.regressed and judgement.first_bad is not None:
                start = min(start, judgement.nights[judgement.first_bad])
        made.append(Acceptance(group, latest, start, by, at, reason.strip()))
    path = history_dir / ACCEPTED_FILE
    old = path.read_bytes() if path.exists() else b""
    new = b"".join(json.dumps(asdict(a), sort_keys=True).encode() + b"\n" for a in made)
    atomic_write_bytes(path, lambda fh: fh.write(old + new))
    return made


def since_accepted(history: History, group: str, until: str) -> list[dict[str, Any]]:
    """The group's rows up to `until` from its accepted level's first night on."""
    start = baseline_start(history, group)
    return [r for r in history.series(group, until) if start is None or r["night"] >= start]


def same_device(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows on the last row's device (images/s are compared on one device only)."""
    if not rows:
        return []
    device = rows[-1].get("device_name")
    return [r for r in rows if r.get("device_name") == device]
