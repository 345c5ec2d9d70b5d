"""Nightly benchmark: run the nightly sweep, keep a snapshot of the night, flag regressions.

`harness nightly SWEEP.yaml` (what `scripts/nightly.sh` and the scheduled workflow call) runs the
sweep into a folder of its own night, so every night trains afresh, then aggregates the completed
runs into a snapshot and judges each group against its history:

    <root>/<night>/                  the night's runs dir: run folders, sweeps/, leaderboard/
    <root>/history/<night>.parquet   snapshot: one row per run group (a recipe over its seeds)
    <root>/reports/<night>.md        the Markdown report (also printed)
    <root>/reports/index.html        the trend page (`harness.sweeps.trend_page`)

A night is named by its UTC date (`--night` to name it otherwise; names sort as dates do). A job
killed at 3 a.m. and started again the same night resumes its runs; the snapshot and the report
are rewritten atomically once the sweep has finished.

Regression rules (`harness.sweeps.trend`): each run group (its runs differ in seed only; the group
is the recipe's name and the hash of its identity without the seed, so a changed recipe is a new
group, not a regression) is judged against its last healthy level over all its nights, found by a
piecewise-constant step fit (`harness.sweeps.steps`), not against the previous night alone: a
regression stays flagged until the group is back or the change is accepted (`accept`), a slow
drift adds up, and each step names its first night and the commit range before it.

* top-1: the allowed drop is max(k s, floor) points, s the seeds' pooled standard deviation
  (`leaderboard.stats.pooled_std` for two nights), defaults k = 2, floor = 0.5.
* throughput: t the group's mean training images per second (per run,
  `leaderboard.stats.throughput`, the leaderboard's definition: images trained / training seconds
  over all its epochs); the allowed drop is tolerance x the baseline's, default 10%, on the same
  device (GPU name) only.

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
from harness.leaderboard.stats import mean, sample_std, throughput
from harness.store.files import atomic_write_bytes
from harness.store.metrics_file import read_metrics
from harness.store.rundir import RunDir
from harness.sweeps.executor import Executor, SweepOptions
from harness.sweeps.plan import plan_sweep
from harness.sweeps.summary import SweepSummary
from harness.sweeps.sweep import run_sweep
from harness.sweeps.trend import (
    LISTED_NIGHTS,
    History,
    Judgement,
    Policy,
    load_history,
    same_device,
    since_accepted,
)
from harness.sweeps.trend_page import write_trend_page

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
@dataclass
class Finding:
    """One metric of one group tonight, judged against its history (`harness.sweeps.trend`)."""

    group: str
    metric: str  # top1 | img_per_s | new | missing
    previous: float | None = None  # the baseline's level
    current: float | None = None  # the level of the segment holding tonight
    change: float | None = None  # top1: points; img_per_s: fraction of the baseline
    threshold: float | None = None  # the largest drop that is not a regression (same unit)
    regression: bool = False
    note: str = ""
    since: str | None = None  # a regression's first night, an improvement's
    good: str | None = None  # the last good night before it
    commits: tuple[str | None, str | None] | None = None  # (good night's, first night's) git_commit
    improvement: bool = False


def _step_finding(group: str, metric: str, rows: Sequence[dict[str, Any]], j: Judgement) -> Finding:
    """A finding from a judgement: the levels, the allowance, and the step's nights and commits."""
    base, now = j.base_level, j.level
    if metric == "top1":
        change, threshold = now - base, j.allowance
    else:
        change = now / base - 1.0 if base > 0 else math.nan
        threshold = j.allowance / base if base > 0 else math.nan
    finding = Finding(group, metric, base, now, change, threshold, j.regressed)
    at = j.first_bad if j.regressed else None
    recent = {r["night"] for r in rows[-LISTED_NIGHTS:]}
    if at is None and j.improving and j.improved_at is not None and j.nights[j.improved_at] in recent:
        at, finding.improvement = j.improved_at, True
    if at is not None and at > 0:
        by_night = {r["night"]: r for r in rows}
        finding.since, finding.good = j.nights[at], j.nights[at - 1]
        finding.commits = (
            by_night[finding.good].get("git_commit"),
            by_night[finding.since].get("git_commit"),
        )
    return finding


def judge(history: History, night: str, policy: Policy | None = None) -> list[Finding]:
    """Every finding of `night` against each group's history (tonight's group order)."""
    policy = policy or Policy()
    earlier = [n for n in history.nights if n < night]
    before = history.rows[earlier[-1]] if earlier else {}
    findings: list[Finding] = []
    for group, row in history.rows.get(night, {}).items():
        rows = since_accepted(history, group, night)
        if len(history.series(group, night)) < 2:
            findings.append(Finding(group, "new", note="no earlier night of this group"))
            continue
        top1 = policy.judge_top1(rows)
        if top1 is not None and len(top1.nights) > 1:
            findings.append(_step_finding(group, "top1", rows, top1))
        on_device = same_device(rows)
        speed = policy.judge_throughput(on_device)
        if speed is not None and len(speed.nights) > 1:
            findings.append(_step_finding(group, "img_per_s", on_device, speed))
        elif group in before and before[group].get("device_name") != row.get("device_name"):
            was, now = before[group].get("device_name"), row.get("device_name")
            note = f"not compared: device changed ({was} -> {now})"
            findings.append(Finding(group, "img_per_s", note=note))
    for group in before:
        if group not in history.rows.get(night, {}):
            findings.append(Finding(group, "missing", note="ran last night, no completed run tonight"))
    return findings


def compare(
    previous: Sequence[dict[str, Any]], current: Sequence[dict[str, Any]], policy: Policy | None = None
) -> list[Finding]:
    """`judge` over a history of two snapshots (rows of SNAPSHOT_SCHEMA): tonight against last night."""
    history = History(nights=["0-previous", "1-tonight"])
    for night, rows in zip(history.nights, (previous, current), strict=True):
        history.rows[night] = {r["group"]: {**r, "night": night} for r in rows}
    return judge(history, "1-tonight", policy)


def _nan_if_none(x: float | None) -> float:
    """Snapshots keep a missing images/s as NaN (what `harness sweep --plan` skips)."""
    return math.nan if x is None else x


# ------------------------------------------------------------------------------ snapshots
def aggregate(runs_dir: Path, summary: SweepSummary, night: str) -> list[dict[str, Any]]:
    """Snapshot rows of the sweep's completed runs, one per group (in the sweep's order)."""
    done = [(r.run_id, r.group) for r in summary.runs if r.group is not None and r.status == "completed"]
    return aggregate_runs(runs_dir, done, night)


def aggregate_runs(runs_dir: Path, runs_of: Sequence[tuple[str, str]], night: str) -> list[dict[str, Any]]:
    """Snapshot rows of the completed runs (run id, group), one per group, in their order."""
    groups: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for run_id, group in runs_of:
        run = RunDir(runs_dir, run_id)
        if not run.metrics.exists():
            continue
        rows = read_metrics(run.metrics)
        if not rows:
            continue
        provenance = _read_json(run.provenance)
        groups.setdefault(group, []).append((rows, provenance))
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


def completed_runs(runs_dir: Path) -> list[tuple[str, str]]:
    """(run id, group) of every completed run folder of a night, by run id; the group is
    `<recipe_name>-<config_hash[:8]>` from its metrics, as `Recipe.group_key` names it."""
    out = []
    for folder in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
        run = RunDir(runs_dir, folder.name)
        if run.status != "completed" or not run.metrics.exists():
            continue
        try:
            rows = read_metrics(run.metrics)
        except (OSError, pa.ArrowException, HarnessError):
            continue
        if rows and rows[-1].get("recipe_name") and rows[-1].get("config_hash"):
            out.append((folder.name, f"{rows[-1]['recipe_name']}-{rows[-1]['config_hash'][:8]}"))
    return out


def rebuild_history(root: Path, history: Path | None = None) -> list[str]:
    """Write every night's snapshot again from its run folders (`<root>/<night>/`); snapshots of
    nights without a folder stay as they are. One line per night rebuilt."""
    history = history or root / "history"
    lines = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        skip = folder.resolve() in (history.resolve(), (root / "reports").resolve())
        if skip or not _is_night(folder.name):
            continue
        runs = completed_runs(folder)
        if not runs:
            continue
        rows = aggregate_runs(folder, runs, folder.name)
        write_snapshot(history / f"{folder.name}.parquet", rows)
        lines.append(f"{folder.name}: {len(rows)} group{'s' if len(rows) != 1 else ''}, {len(runs)} runs")
    return lines


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


def _short(commit: str | None) -> str:
    return (commit or "?")[:12]


def _step_text(f: Finding) -> str:
    """`since NIGHT, commits GOOD..BAD` of a step (the range `git bisect` starts from)."""
    if f.since is None:
        return ""
    good, bad = f.commits or (None, None)
    return f"since {f.since} (after {f.good}), commits `{_short(good)}..{_short(bad)}`"


def render_report(
    night: str,
    previous: str | None,
    findings: Sequence[Finding],
    summary: SweepSummary | None,
    policy: Policy,
    history: History | None = None,
) -> str:
    """A short Markdown report: verdict, each group's level against its baseline with the step
    it took, what was set apart, recent acceptances, failed runs."""
    regressions = [f for f in findings if f.regression]
    lines = [f"# Nightly benchmark {night}", ""]
    failed = [r for r in summary.runs if r.outcome in ("failed", "diverged")] if summary else []
    if previous is None:
        lines.append("First night: nothing to compare with; this night is the baseline.")
    else:
        lines.append(f"Previous night {previous}. Rule: {policy.describe()}.")
    lines.append("")
    verdict = f"**{len(regressions)} regression{'s' if len(regressions) != 1 else ''}**"
    if failed:
        verdict += f", **{len(failed)} failed run{'s' if len(failed) != 1 else ''}**"
    lines += [verdict if regressions or failed else "No regressions.", ""]
    compared = [f for f in findings if f.metric in ("top1", "img_per_s")]
    if compared:
        lines += [
            "| group | metric | baseline | now | change | allowed drop | verdict | step |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for f in compared:
            if f.change is None:
                change = allowed = "-"
            elif f.metric == "top1":
                change, allowed = f"{f.change:+.2f} pts", f"{f.threshold:.2f} pts"
            else:
                change = "-" if math.isnan(f.change) else f"{100 * f.change:+.1f}%"
                allowed = f"{100 * (f.threshold or 0):.0f}%"
            verdict = "**REGRESSION**" if f.regression else ("improved" if f.improvement else f.note or "ok")
            lines.append(
                f"| {f.group} | {f.metric} | {_fmt(f.previous)} | {_fmt(f.current)} | {change} | "
                f"{allowed} | {verdict} | {_step_text(f)} |"
            )
        lines.append("")
    for kind, title in (("new", "New groups"), ("missing", "Missing tonight")):
        items = [f.group for f in findings if f.metric == kind]
        if items:
            lines += [f"{title}: " + ", ".join(f"`{g}`" for g in items), ""]
    if history is not None:
        lines += [f"Set apart: {line}" for line in history.set_apart]
        recent = [n for n in history.nights if n <= night][-LISTED_NIGHTS:]
        for a in history.accepted:
            if a.night in recent:
                lines.append(f"Accepted: `{a.group}` from {a.start} by {a.by} at {a.at}: {a.reason}")
        if history.set_apart or any(a.night in recent for a in history.accepted):
            lines.append("")
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


def _is_night(name: str) -> bool:
    try:
        return check_night(name) == name
    except HarnessError:
        return False


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
        past = load_history(history)
        result.previous = max((n for n in past.nights if n < night), default=None)
        result.findings = judge(past, night, policy)
        result.report = render_report(night, result.previous, result.findings, summary, policy, past)
        write_trend_page(past, root / "reports" / "index.html", policy)
    result.report_path = root / "reports" / f"{night}.md"
    for path in {result.report_path, *([report_out] if report_out else [])}:
        atomic_write_bytes(path, lambda fh: fh.write(result.report.encode()))
    return result
