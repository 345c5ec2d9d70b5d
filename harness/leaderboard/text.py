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
from harness.leaderboard.compare import Comparison
from harness.leaderboard.stats import Interval
from harness.metrics.columns import BOARD_COLUMNS, FIDELITY_METRICS, TEACHER_METRICS, Column

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

#: The fidelity figures (student against its teacher, evaluation split) in the teacher table.
FIDELITY = tuple(c for c in BOARD_COLUMNS if c.name in FIDELITY_METRICS)

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


def interval_text(interval: Interval | None) -> str:
    """'+1.23 [+0.40, +2.06]', '+1.23 (n/c)' without an interval, a dash without a difference."""
    d = DECIMALS["gain"]
    if interval is None or interval.diff is None:
        return DASH
    if interval.lo is None or interval.hi is None:
        return f"{num(interval.diff, d, signed=True)} (n/c)"
    lo, hi = num(interval.lo, d, signed=True), num(interval.hi, d, signed=True)
    return f"{num(interval.diff, d, signed=True)} [{lo}, {hi}]"


def seeds_text(c: Comparison) -> str:
    """'~12 seeds to resolve', '>1000 seeds to resolve', or why there is no number."""
    if c.seeds.n is None and not c.seeds.why.startswith("more than"):
        return c.seeds.why
    return (
        f"~{c.seeds.text()} seeds to resolve"
        if c.seeds.n is not None
        else f"{c.seeds.text()} seeds to resolve"
    )


def gain_parts(c: Comparison | None, status: str) -> tuple[str, str]:
    """(interval with its mark, note) of a gain cell: ('+0.54 [+0.18, +0.91]*', ''),
    ('-0.36 [-0.84, +0.12]', 'ns, ~12 seeds to resolve'), ('+1.00 (n/c)', ''), ('baseline', '')."""
    if status == "baseline":
        return "baseline", ""
    if status == "no baseline" or c is None:
        return DASH, ""
    used = c.used
    shown = interval_text(used if used.diff is not None else c.welch)
    if status == "significant":
        return f"{shown}*", ""
    if status == "not significant":
        return shown, f"ns, {seeds_text(c)}"
    return shown, ""


def gain_text(c: Comparison | None, status: str) -> str:
    """A gain cell as one line of plain text (see `gain_parts`)."""
    shown, note = gain_parts(c, status)
    return f"{shown} {note}" if note else shown


def p_text(p: float | None) -> str:
    """A p-value: 3 significant figures, '<0.0001' below 1e-4, a dash when missing."""
    if p is None:
        return DASH
    return "<0.0001" if p < 1e-4 else f"{p:.3g}"


def arrow(delta: float | None, decimals: int) -> str:
    """'↑ +0.120' / '↓ -0.080' / '= 0.000' for a change against the CE baseline."""
    if delta is None or not math.isfinite(delta):
        return DASH
    if float(f"{delta:.{decimals}f}") == 0.0:
        return f"= {num(0.0, decimals)}"
    return f"{'↑' if delta > 0 else '↓'} {num(delta, decimals, signed=True)}"


def _teacher_labels(column: Column) -> tuple[str, ...]:
    """The teacher table's headers of a teacher figure: top-1 is followed by its held-out twin."""
    if column.board.value == "teacher_top1":
        return column.board.label, f"held-out {column.board.label}"
    return (column.board.label,)


#: Columns of the teachers' table, in the Markdown page and the HTML page alike: the teacher's
#: figures (its held-out top-1 after its top-1), then the student's fidelity to it.
TEACHER_HEADER = (
    "row",
    "teacher",
    "teacher arch",
    "trained with",
    *(label for c in TEACHER_FIGURES for label in _teacher_labels(c)),
    *(c.board.label for c in FIDELITY),
)


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
    """The teacher's figures and the fidelity of a row (means over seeds), as TEACHER_HEADER
    after its texts."""
    out = []
    for c in TEACHER_FIGURES:
        out.append(num(row.mean(c.board.value), c.board.decimals))
        if c.board.value == "teacher_top1":
            out.append(num(row.mean("teacher_holdout_top1"), c.board.decimals))
    return out + [num(row.mean(c.board.value), c.board.decimals) for c in FIDELITY]


def counted(n: int, noun: str) -> str:
    """'1 run', '3 runs' (the noun's plural with an s)."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def epochs_text(epochs: int) -> str:
    """'1 epoch', '3 epochs'."""
    return counted(epochs, "epoch")
