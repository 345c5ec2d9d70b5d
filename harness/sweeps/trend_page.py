"""`<root>/reports/index.html`: the nightly trend, one self-contained page (inline CSS and SVG).

Per group (sorted by name), two plots over its nights: top-1 (each night's mean, a bar over its
seeds' mean +- one standard deviation, the fitted levels of `harness.sweeps.steps` as a step line)
and images/s. Every step down beyond the allowance (and tonight's regression's first night) is a
red vertical line, every step up a green one, a change of device a dashed grey one; each point's
title (the browser's tooltip) names the night, its commit and its values. The page is a function
of the history alone (no clock, no paths): written again from the same snapshots it is
byte-identical. It ends with the leaderboard page's check script
(`harness.leaderboard.html_page.CHECK_SCRIPT`) so the browser test can read back what was drawn.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.leaderboard.html_page import CHECK_SCRIPT
from harness.leaderboard.stats import is_number
from harness.store.files import atomic_write_bytes
from harness.sweeps.trend import History, Judgement, Policy, same_device, since_accepted

WIDTH, HEIGHT = 600, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 14, 28

CSS = """
body { font-family: system-ui, sans-serif; margin: 1em 2em; color: #222; max-width: 1300px; }
h2 { font-size: 1.1em; margin: 1.4em 0 0.3em; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; }
svg.plot { background: #fff; border: 1px solid #eee; }
.regression { stroke: #d62728; } .improvement { stroke: #2ca02c; } .device { stroke: #999; }
.fit { fill: none; stroke: #ff7f0e; stroke-width: 1.5; }
.note { color: #666; font-size: 0.9em; }
"""


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _seed_stats(xs: Sequence[Any]) -> tuple[float, float] | None:
    vals = [float(x) for x in xs or () if is_number(x) and math.isfinite(x)]
    if not vals:
        return None
    m = sum(vals) / len(vals)
    s = math.sqrt(sum((x - m) ** 2 for x in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return m, s


def _plot(
    plot_id: str,
    label: str,
    nights: Sequence[str],
    rows: Sequence[dict[str, Any]],
    key: str,
    judgement: Judgement | None,
    unit: str,
) -> str:
    """One SVG: x the group's nights, y the metric; marks with tooltips, steps and device changes."""
    at = {n: i for i, n in enumerate(nights)}
    points = [(at[r["night"]], r, st) for r in rows if (st := _seed_stats(r[key])) is not None]
    lows = [m - s for _, _, (m, s) in points] + (
        [seg.level for seg in judgement.segments] if judgement else []
    )
    highs = [m + s for _, _, (m, s) in points]
    lo, hi = (min(lows), max(highs)) if points else (0.0, 1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 1.0, hi + 1.0
    pad = 0.08 * (hi - lo)
    lo, hi = lo - pad, hi + pad

    def x(i: float) -> float:
        span = max(len(nights) - 1, 1)
        return round(LEFT + (WIDTH - LEFT - RIGHT) * i / span, 1)

    def y(v: float) -> float:
        return round(TOP + (HEIGHT - TOP - BOTTOM) * (hi - v) / (hi - lo), 1)

    out = [
        f'<svg class="plot" id="{_esc(plot_id)}" data-plot="{key}" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{_esc(label)}">',
        f'<text x="{LEFT}" y="11" font-size="11">{_esc(label)}</text>',
        f'<line x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH - RIGHT}" y2="{HEIGHT - BOTTOM}" '
        'stroke="#ccc"/>',
    ]
    for v in (lo + pad, hi - pad):
        out.append(f'<text x="{LEFT - 4}" y="{y(v) + 4}" font-size="10" text-anchor="end">{v:.4g}</text>')
    for i, anchor in sorted({0: "start", len(nights) - 1: "end"}.items()):
        out.append(
            f'<text x="{x(i)}" y="{HEIGHT - 10}" font-size="10" text-anchor="{anchor}">'
            f"{_esc(nights[i])}</text>"
        )
    previous_device = None
    for i, r, _ in points:
        device = r.get("device_name")
        if previous_device is not None and device != previous_device:
            out.append(
                f'<line class="device" x1="{x(i - 0.5)}" y1="{TOP}" x2="{x(i - 0.5)}" y2="{HEIGHT - BOTTOM}" '
                f'stroke-dasharray="4 3"><title>device changed: {_esc(previous_device)} -&gt; '
                f"{_esc(device)}</title></line>"
            )
        previous_device = device
    if judgement is not None:
        path = []
        for seg in judgement.segments:
            x0 = x(at[judgement.nights[seg.start]] - (0.4 if seg.start else 0))
            x1 = x(at[judgement.nights[seg.end - 1]] + (0.4 if seg.end < len(judgement.nights) else 0))
            path.append(f"M{x0},{y(seg.level)}H{x1}")
        out.append(f'<path class="fit" d="{"".join(path)}"><title>fitted levels</title></path>')
        marks = {index: "regression" if way == "down" else "improvement" for index, way in judgement.steps}
        if judgement.first_bad is not None:
            marks[judgement.first_bad] = "regression"
        for index, kind in sorted(marks.items()):
            if index is not None:
                night = judgement.nights[index]
                xi = x(at[night] - 0.5)
                out.append(
                    f'<line class="{kind} step" x1="{xi}" y1="{TOP}" x2="{xi}" y2="{HEIGHT - BOTTOM}" '
                    f'stroke-width="2"><title>{kind} from {_esc(night)}</title></line>'
                )
    for i, r, (m, s) in points:
        tip = (
            f"{r['night']} commit {(r.get('git_commit') or '?')[:12]} on {r.get('device_name')}: "
            f"{m:.2f} +- {s:.2f} {unit} ({len(r[key])} seeds)"
        )
        bar = (
            f'<line x1="{x(i)}" y1="{y(m - s)}" x2="{x(i)}" y2="{y(m + s)}" stroke="#1f77b4"/>'
            if s > 0
            else ""
        )
        out.append(
            f'<g class="mark">{bar}<circle cx="{x(i)}" cy="{y(m)}" r="3.5" fill="#1f77b4">'
            f"<title>{_esc(tip)}</title></circle></g>"
        )
    out.append("</svg>")
    return "\n".join(out)


def render_trend_page(history: History, policy: Policy | None = None) -> str:
    """The whole page (module docstring)."""
    policy = policy or Policy()
    groups = sorted({g for rows in history.rows.values() for g in rows})
    last = history.nights[-1] if history.nights else "-"
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>Nightly benchmark trend</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        f'<h1>Nightly benchmark trend</h1><p class="note">{len(history.nights)} nights, last '
        f"{_esc(last)}. Rule: {_esc(policy.describe())}. Red: a step down beyond the allowance; green: "
        "a step up; dashed grey: a change of device; orange: the fitted levels. Hover a point for "
        "its night, commit and values.</p>",
    ]
    for n, group in enumerate(groups, 1):
        series = history.series(group)
        nights = [r["night"] for r in series]
        judged = since_accepted(history, group, last)
        top1 = policy.judge_top1(judged)
        speed = policy.judge_throughput(same_device(judged))
        out.append(f"<h2>{_esc(group)}</h2>")
        for a in history.accepted:
            if a.group == group:
                out.append(
                    f'<p class="note">Accepted from {_esc(a.start)} by {_esc(a.by)} at {_esc(a.at)}: '
                    f"{_esc(a.reason)}</p>"
                )
        out.append('<div class="plots">')
        out.append(_plot(f"g{n}-top1", "top-1 (%), mean +- seed std", nights, series, "top1", top1, "%"))
        out.append(_plot(f"g{n}-speed", "images/s (training)", nights, series, "img_per_s", speed, "img/s"))
        out.append("</div>")
    out += [f"<script>{CHECK_SCRIPT}</script>", "</body>", "</html>", ""]
    return "\n".join(out)


def write_trend_page(history: History, path: Path, policy: Policy | None = None) -> None:
    """Atomically write the page."""
    text = render_trend_page(history, policy)
    atomic_write_bytes(path, lambda fh: fh.write(text.encode()))
