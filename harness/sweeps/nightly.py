"""Nightly benchmark: run the nightly sweep, keep a snapshot of the night, flag regressions.

`harness nightly SWEEP.yaml` (what `scripts/nightly.sh` and the scheduled workflow call) runs the
sweep into a folder of its own night, so every night trains afresh, then aggregates the completed
runs into a snapshot and compares it with the previous night's:

    <root>/<night>/                  the night's runs dir: run folders, sweeps/, leaderboard/
    <root>/history/<night>.parquet   snapshot: one row per run group (a recipe over its seeds)
    <root>/reports/<night>.md        the Markdown report (also printed)

A night is named by its UTC date (`--night` to name it otherwise; names sort as dates do). A job
killed at 3 a.m. and started again the same night resumes its runs; the snapshot and the report
are rewritten atomically once the sweep has finished. The previous night is the snapshot whose
name sorts last before tonight's.

Regression rules, per run group present both nights (its runs differ in seed only; the group is
the recipe's name and the hash of its identity without the seed, so a changed recipe is a new
group, not a regression):

* top-1: with m_prev, m_now the mean final top-1 (percent) over the seeds and s_p the pooled
  standard deviation of the two nights' seeds (`leaderboard.stats.pooled_std`,
  s_p = sqrt(((n_prev - 1) s_prev^2 + (n_now - 1) s_now^2) / (n_prev + n_now - 2)), taken as 0
  when both nights have a single seed), a regression is m_prev - m_now > max(k s_p, floor);
  defaults k = 2, floor = 0.5 points. Within-noise wobbles stay quiet; a drop beyond the seeds'
  spread is flagged.
* throughput: with t the group's mean training images per second (per run,
  `leaderboard.stats.throughput`, the leaderboard's definition: images trained / training seconds
  over all its epochs), a regression is t_now < (1 - tolerance) t_prev, default tolerance 10%,
  compared only on the same device (GPU name).

Every statistic comes from `harness.leaderboard.stats`, so a night and the leaderboard agree on
what a run's images/s and a group's standard deviation are.

Exit status: 0 all runs completed and nothing regressed, 1 a regression or a failed run (the
report says which), 130 interrupted, 2 bad input.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from harness.errors import HarnessError, InterruptedRun
from harness.leaderboard.stats import is_number, mean, pooled_std, sample_std, throughput
from harness.store.files import atomic_write_bytes
from harness.store.metrics_file import read_metrics
from harness.store.rundir import RunDir
from harness.sweeps.executor import Executor, SweepOptions
from harness.sweeps.plan import plan_sweep
from harness.sweeps.summary import SweepSummary
from harness.sweeps.sweep import run_sweep

#: One row per run group and night.
SNAPSHOT_SCHEMA = pa.schema(
    [
        pa.field("night", pa.string()),
        pa.field("group", pa.string()),
        pa.field("recipe_name", pa.string()),
        pa.field("method", pa.string()),
        pa.field("dataset", pa.string()),
        pa.field("arch", pa.string()),
        pa.field("setting_key", pa.string()),
        pa.field("device_name", pa.string()),
        pa.field("n", pa.int64()),
        pa.field("seeds", pa.list_(pa.int64())),
        pa.field("top1", pa.list_(pa.float64())),
        pa.field("top1_mean", pa.float64()),
        pa.field("top1_std", pa.float64()),
        pa.field("img_per_s", pa.list_(pa.float64())),
        pa.field("img_per_s_mean", pa.float64()),
        pa.field("harness_version", pa.string()),
        pa.field("git_commit", pa.string()),
    ]
)


# ------------------------------------------------------------------------------ the rules
@dataclass(frozen=True)
class Policy:
    """When a change between two nights is a regression (see the module docstring)."""

    k: float = 2.0  # seed standard deviations a top-1 drop may reach before it counts
    floor: float = 0.5  # top-1 points: smaller drops never count
    throughput_tolerance: float = 0.10  # fraction of last night's images/s

    def describe(self) -> str:
        return (
            f"top-1 regresses when its mean drops by more than max({self.k:g} x pooled seed std, "
            f"{self.floor:g} points); throughput when it falls by more than "
            f"{100 * self.throughput_tolerance:g}% on the same device"
        )


@dataclass
class Finding:
    """One comparison of one group between two nights."""

    group: str
    metric: str  # top1 | img_per_s | new | missing
    previous: float | None = None
    current: float | None = None
    change: float | None = None  # top1: points; img_per_s: fraction of the previous value
    threshold: float | None = None  # the largest drop that is not a regression (same unit)
    regression: bool = False
    note: str = ""


def compare_top1(group: str, prev: Sequence[float], now: Sequence[float], policy: Policy) -> Finding:
    """Top-1 of one group: a regression when the mean drop exceeds max(k s_p, floor)."""
    m_prev, m_now = mean(prev), mean(now)
    assert m_prev is not None and m_now is not None  # `compare` passes non-empty top-1 lists
    spread = pooled_std(prev, now) or 0.0  # one seed on each night: no spread, the floor decides
    threshold = max(policy.k * spread, policy.floor)
    drop = m_prev - m_now
    return Finding(group, "top1", m_prev, m_now, m_now - m_prev, threshold, drop > threshold)


def compare_throughput(
    group: str, prev: float, now: float, policy: Policy, prev_device: str | None, now_device: str | None
) -> Finding:
    """Images/s of one group: a regression when it falls by more than the tolerance (same device)."""
    change = now / prev - 1.0 if prev > 0 else math.nan
    finding = Finding(group, "img_per_s", prev, now, change, policy.throughput_tolerance)
    if prev_device != now_device:
        finding.note = f"not compared: device changed ({prev_device} -> {now_device})"
    elif prev > 0:
        finding.regression = now < (1.0 - policy.throughput_tolerance) * prev
    return finding


def compare(
    previous: Sequence[dict[str, Any]], current: Sequence[dict[str, Any]], policy: Policy | None = None
) -> list[Finding]:
    """Every finding between two snapshots (rows of SNAPSHOT_SCHEMA), in tonight's group order."""
    policy = policy or Policy()
    before = {row["group"]: row for row in previous}
    findings: list[Finding] = []
    for row in current:
        group = row["group"]
        old = before.get(group)
        if old is None:
            findings.append(Finding(group, "new", note="no run of this group last night"))
            continue
        if old["top1"] and row["top1"]:
            findings.append(compare_top1(group, old["top1"], row["top1"], policy))
        if is_number(old["img_per_s_mean"]) and is_number(row["img_per_s_mean"]):
            findings.append(
                compare_throughput(
                    group,
                    old["img_per_s_mean"],
                    row["img_per_s_mean"],
                    policy,
                    old.get("device_name"),
                    row.get("device_name"),
                )
            )
    tonight = {row["group"] for row in current}
    for group in before:
        if group not in tonight:
            findings.append(Finding(group, "missing", note="ran last night, no completed run tonight"))
    return findings


def _nan_if_none(x: float | None) -> float:
    """Snapshots keep a missing images/s as NaN (what `harness sweep --plan` skips)."""
    return math.nan if x is None else x


# ------------------------------------------------------------------------------ snapshots
def aggregate(runs_dir: Path, summary: SweepSummary, night: str) -> list[dict[str, Any]]:
    """Snapshot rows of the sweep's completed runs, one per group (in the sweep's order)."""
    groups: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for record in summary.runs:
        if record.group is None or record.status != "completed":
            continue
        run = RunDir(runs_dir, record.run_id)
        if not run.metrics.exists():
            continue
        rows = read_metrics(run.metrics)
        if not rows:
            continue
        provenance = _read_json(run.provenance)
        groups.setdefault(record.group, []).append((rows, provenance))
    out = []
    for group, runs in groups.items():
        finals = [rows[-1] for rows, _ in runs]
        first, prov = finals[0], runs[0][1]
        top1 = [float(r["top1"]) for r in finals]
        speeds = [_nan_if_none(throughput(rows)) for rows, _ in runs]
        out.append(
            {
                "night": night,
                "group": group,
                "recipe_name": first["recipe_name"],
                "method": first["method"],
                "dataset": first["dataset"],
                "arch": first["arch"],
                "setting_key": first["setting_key"],
                "device_name": prov.get("device_name") or first.get("device"),
                "n": len(finals),
                "seeds": [int(r["seed"]) for r in finals],
                "top1": top1,
                "top1_mean": mean(top1),
                "top1_std": sample_std(top1),
                "img_per_s": speeds,
                "img_per_s_mean": _nan_if_none(mean(speeds)),
                "harness_version": first.get("harness_version"),
                "git_commit": first.get("git_commit"),
            }
        )
    return out


def _read_json(path: Path) -> dict[str, Any]:
    import json

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_snapshot(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Atomically write a night's snapshot."""
    table = pa.table(
        {name: [r.get(name) for r in rows] for name in SNAPSHOT_SCHEMA.names}, schema=SNAPSHOT_SCHEMA
    )
    atomic_write_bytes(path, lambda fh: pq.write_table(table, fh))


def read_snapshot(path: Path) -> list[dict[str, Any]]:
    """Rows of a snapshot; an unreadable file is one HarnessError line."""
    try:
        return pq.read_table(path).to_pylist()
    except (OSError, pa.ArrowException) as exc:
        raise HarnessError(f"{path}: unreadable nightly snapshot ({exc})") from None


def previous_night(history: Path, night: str) -> Path | None:
    """The snapshot whose night sorts last before `night` (None on the first night)."""
    earlier = sorted(p for p in history.glob("*.parquet") if p.stem < night)
    return earlier[-1] if earlier else None


# ------------------------------------------------------------------------------ the report
def _fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def render_report(
    night: str,
    previous: str | None,
    findings: Sequence[Finding],
    summary: SweepSummary | None,
    policy: Policy,
) -> str:
    """A short Markdown report: verdict, comparisons, failed runs."""
    regressions = [f for f in findings if f.regression]
    lines = [f"# Nightly benchmark {night}", ""]
    failed = [r for r in summary.runs if r.outcome in ("failed", "diverged")] if summary else []
    if previous is None:
        lines.append("First night: nothing to compare with; this night is the baseline.")
    else:
        lines.append(f"Compared with {previous}. Rule: {policy.describe()}.")
    lines.append("")
    verdict = f"**{len(regressions)} regression{'s' if len(regressions) != 1 else ''}**"
    if failed:
        verdict += f", **{len(failed)} failed run{'s' if len(failed) != 1 else ''}**"
    lines += [verdict if regressions or failed else "No regressions.", ""]
    compared = [f for f in findings if f.metric in ("top1", "img_per_s")]
    if compared:
        lines += [
            "| group | metric | previous | tonight | change | allowed drop | verdict |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for f in compared:
            if f.metric == "top1":
                change, allowed = f"{f.change:+.2f} pts", f"{f.threshold:.2f} pts"
            else:
                change = "-" if f.change is None or math.isnan(f.change) else f"{100 * f.change:+.1f}%"
                allowed = f"{100 * (f.threshold or 0):.0f}%"
            verdict = "**REGRESSION**" if f.regression else (f.note or "ok")
            lines.append(
                f"| {f.group} | {f.metric} | {_fmt(f.previous)} | {_fmt(f.current)} | {change} | "
                f"{allowed} | {verdict} |"
            )
        lines.append("")
    for kind, title in (("new", "New groups"), ("missing", "Missing tonight")):
        items = [f.group for f in findings if f.metric == kind]
        if items:
            lines += [f"{title}: " + ", ".join(f"`{g}`" for g in items), ""]
    if summary is not None:
        counts = ", ".join(f"{n} {o}" for o, n in summary.counts().items() if n)
        lines += [f"Runs: {counts}" + (f" (summary: `{summary.path}`)" if summary.path else ""), ""]
        for r in failed:
            lines.append(f"- {r.outcome} `{r.run_id}`: {r.error or ''}".rstrip())
        if failed:
            lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ the night
@dataclass
class NightlyResult:
    """What a nightly invocation produced."""

    night: str
    previous: str | None
    findings: list[Finding] = field(default_factory=list)
    summary: SweepSummary | None = None
    report: str = ""
    report_path: Path | None = None
    snapshot_path: Path | None = None

    @property
    def exit_code(self) -> int:
        if self.summary is not None and self.summary.interrupted:
            return InterruptedRun.exit_code
        failed = self.summary is not None and self.summary.exit_code != 0
        return 1 if failed or any(f.regression for f in self.findings) else 0


def default_night() -> str:
    """Tonight's name: the UTC date, YYYY-MM-DD."""
    return time.strftime("%Y-%m-%d", time.gmtime())


def check_night(night: str) -> str:
    """A night names folders and files: letters, digits, '.', '_' and '-' only."""
    if not night or night.startswith(".") or any(not (c.isalnum() or c in "._-") for c in night):
        raise HarnessError(f"--night {night!r}: use letters, digits, '.', '_' and '-' (e.g. 2026-01-31)")
    return night


def run_nightly(
    sweep_file: Path,
    root: Path,
    *,
    night: str | None = None,
    history: Path | None = None,
    report_out: Path | None = None,
    seeds: list[int] | None = None,
    overrides: Sequence[str] = (),
    options: SweepOptions | None = None,
    policy: Policy | None = None,
    executor: Executor | None = None,
) -> NightlyResult:
    """Run the sweep into `<root>/<night>/` (with `executor`, default: `executor_for(options)`),
    snapshot it, compare with the previous night, report."""
    night = check_night(night or default_night())
    policy = policy or Policy()
    history = history or root / "history"
    runs_dir = root / night
    planned = plan_sweep(sweep_file=sweep_file, seeds=seeds, overrides=overrides)
    summary = run_sweep(planned, runs_dir, options, executor)
    prev_path = previous_night(history, night)
    result = NightlyResult(night, prev_path.stem if prev_path else None, summary=summary)
    if summary.interrupted:
        # no snapshot of half a night: the rerun that resumes it writes one
        result.report = (
            f"# Nightly benchmark {night}\n\nInterrupted by {summary.interrupted} before the end; "
            "run it again with the same night to resume.\n"
        )
    else:
        rows = aggregate(runs_dir, summary, night)
        result.snapshot_path = history / f"{night}.parquet"
        write_snapshot(result.snapshot_path, rows)
        if prev_path is not None:
            result.findings = compare(read_snapshot(prev_path), rows, policy)
        result.report = render_report(night, result.previous, result.findings, summary, policy)
    result.report_path = root / "reports" / f"{night}.md"
    for path in {result.report_path, *([report_out] if report_out else [])}:
        atomic_write_bytes(path, lambda fh: fh.write(result.report.encode()))
    return result
