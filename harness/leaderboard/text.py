"""Escaping and number formatting shared by the Markdown and HTML pages.

Text from recipes and runs (names, methods, parameters, folder names) is untrusted: it goes
through `md` or `html` before it reaches a page. Numbers are formatted with fixed decimals, so
the same runs always give the same bytes.
"""

from __future__ import annotations

import html as _html
import math
from typing import TYPE_CHECKING

from harness.leaderboard.baselines import CE
from harness.leaderboard.stats import Interval
from harness.metrics.columns import BOARD_COLUMNS, TEACHER_METRICS, Column

if TYPE_CHECKING:
    from harness.leaderboard.aggregate import Row, Setting

DASH = "–"

#: Decimals per figure: each leaderboard column of metrics.COLUMNS, gains, epochs, degrees of freedom.
DECIMALS = {c.name: c.board.decimals for c in BOARD_COLUMNS} | {"gain": 2, "epoch": 1, "df": 1}

#: The student's figures in the confidence tables, in page order (metrics.Board.confidence).
CONFIDENCE = tuple(
    sorted(
        (c for c in BOARD_COLUMNS if c.board.confidence and c.name not in TEACHER_METRICS),
        key=lambda c: c.board.confidence,
    )
)

#: The teacher's figures in the teacher table: every teacher twin on the leaderboard, in the same
#: order, the ones without a place in the confidence tables (top-1) first.
TEACHER_FIGURES = tuple(
    sorted((c for c in BOARD_COLUMNS if c.name in TEACHER_METRICS), key=lambda c: c.board.confidence)
)

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
TEACHER_HEADER = ("row", "teacher", "teacher arch", "trained with", *(c.board.label for c in TEACHER_FIGURES))


def _shows_delta(column: Column, on_html: bool) -> bool:
    return column.board.delta_ce is not None and (column.board.delta_on_html or not on_html)


def confidence_header(on_html: bool) -> list[str]:
    """Headers of a confidence table after its `row` column: each figure, then its change against
    CE where it has one (on the HTML page only the changes marked `delta_on_html`)."""
    out = []
    for c in CONFIDENCE:
        out.append(c.board.label)
        if _shows_delta(c, on_html):
            out.append(f"Δ {c.board.label} vs {CE.short}")
    return out


def confidence_cells(s: Setting, row: Row, on_html: bool) -> list[str]:
    """Cells (plain text) of a confidence table after its `row` cell, as `confidence_header`."""
    is_ce = s.is_baseline(row, CE.kind)
    out = []
    for c in CONFIDENCE:
        b = c.board
        m = row.mean(b.value)
        out.append(mean_std(m, row.std(b.value), b.decimals) if b.spread else num(m, b.decimals))
        if _shows_delta(c, on_html):
            out.append("baseline" if is_ce else arrow(s.delta_vs_ce(row, b.value), b.decimals))
    return out


def teacher_figures(row: Row) -> list[str]:
    """The teacher's figures of a row (means over seeds), as TEACHER_HEADER after its texts."""
    return [num(row.mean(c.board.value), c.board.decimals) for c in TEACHER_FIGURES]
