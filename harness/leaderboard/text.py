"""Escaping and number formatting shared by the Markdown and HTML pages.

Text from recipes and runs (names, methods, parameters, folder names) is untrusted: it goes
through `md` or `html` before it reaches a page. Numbers are formatted with fixed decimals, so
the same runs always give the same bytes.
"""

from __future__ import annotations

import html as _html
import math

from harness.leaderboard.stats import Interval

DASH = "–"

#: Decimals per figure.
DECIMALS = {
    "top1": 2,
    "top5": 2,
    "gain": 2,
    "nll": 3,
    "ece": 4,
    "entropy": 3,
    "max_prob": 3,
    "stability": 4,
    "img_per_s": 0,
    "epoch": 1,
    "df": 1,
}

_MD_ESCAPES = {
    "\\": "\\\\",
    "|": "\\|",
    "`": "\\`",
    "*": "\\*",
    "_": "\\_",
    "[": "\\[",
    "]": "\\]",
    "~": "\\~",
    "<": "&lt;",
    ">": "&gt;",
    "&": "&amp;",
}


def md(text: object) -> str:
    """`text` safe inside a Markdown table cell: markup characters escaped, one line."""
    flat = " ".join(str(text).split())
    return "".join(_MD_ESCAPES.get(ch, ch) for ch in flat)


def html(text: object) -> str:
    """`text` escaped for HTML element content and quoted attributes."""
    return _html.escape(str(text), quote=True)


def num(value: float | None, decimals: int, signed: bool = False) -> str:
    """Fixed decimals (no '-0.00'); a dash for a missing value."""
    if value is None or not math.isfinite(value):
        return DASH
    if float(f"{value:.{decimals}f}") == 0.0:
        value = 0.0  # rounds to zero: print 0.00 (or +0.00), never -0.00
    return f"{value:+.{decimals}f}" if signed else f"{value:.{decimals}f}"


def mean_std(m: float | None, s: float | None, decimals: int) -> str:
    """'mean ± std', or the mean alone when the std is undefined (one seed)."""
    if m is None:
        return DASH
    return num(m, decimals) if s is None else f"{num(m, decimals)} ± {num(s, decimals)}"


def gain_text(interval: Interval | None, status: str) -> str:
    """'+1.23 [+0.40, +2.06] *' style text for a gain cell (plain text, no markup)."""
    if status == "baseline":
        return "baseline"
    if status == "no baseline" or interval is None:
        return DASH
    d = DECIMALS["gain"]
    if interval.lo is None or interval.hi is None:
        return f"{num(interval.diff, d, signed=True)} (n/c)"
    mark = "*" if status == "significant" else "(ns)"
    return (
        f"{num(interval.diff, d, signed=True)} "
        f"[{num(interval.lo, d, signed=True)}, {num(interval.hi, d, signed=True)}] {mark}"
    )


def arrow(delta: float | None, decimals: int) -> str:
    """'↑ +0.120' / '↓ -0.080' / '= 0.000' for a change against the CE baseline."""
    if delta is None or not math.isfinite(delta):
        return DASH
    if float(f"{delta:.{decimals}f}") == 0.0:
        return f"= {num(0.0, decimals)}"
    return f"{'↑' if delta > 0 else '↓'} {num(delta, decimals, signed=True)}"


#: Columns of the teachers' table, in the Markdown page and the HTML page alike.
TEACHER_HEADER = (
    "row",
    "teacher",
    "teacher arch",
    "trained with",
    "top-1",
    "entropy",
    "max-prob",
    "ECE",
    "NLL",
    "S",
)
