"""`index.html`: one self-contained static page (inline CSS and SVG, no external assets).

Per setting: the accuracy table first (baselines, then rows by result; a click on a column's
header sorts by it, the short SORT_SCRIPT: without script the order stays the board's), accuracy
against entropy per row (Sultan 2023: LS moves
points right, KD left), mean top-1 per epoch, and a reliability diagram per row (last epoch,
pooled over seeds); then the teacher and paper tables, and the runs set apart. All text from
runs is HTML-escaped.

The page ends with a short inline script that measures what the browser drew (each plot's size
and marks, each table's rows and right edge, the viewport's width) and writes the summary into
`<body data-render-check>`: the browser test reads it back with `chromium --dump-dom`. It fetches
nothing and changes nothing. The board is two tables (accuracy; confidence and speed) so that
each reads whole on a 1366 px laptop screen.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence

from harness.leaderboard.aggregate import Row, Setting
from harness.leaderboard.baselines import BASELINES, CE, LS
from harness.leaderboard.markdown import (
    COMPARISON_HEADER,
    LEGEND,
    PAPER_HEADER,
    accuracy_header,
    basis_sentence,
    comparison_rows,
    family_sentence,
    paper_cells,
    shows_selected,
    shows_test_selected,
)
from harness.leaderboard.reference import References
from harness.leaderboard.runs import SetApart
from harness.leaderboard.svg import (
    PALETTE,
    ScatterGroup,
    colour,
    line_plot,
    reliability_plot,
    scatter_plot,
)
from harness.leaderboard.table import gain_status
from harness.leaderboard.text import (
    DASH,
    DECIMALS,
    TEACHER_HEADER,
    confidence_cells,
    confidence_header,
    epochs_text,
    gain_parts,
    html,
    mean_std,
    num,
    teacher_figures,
)
from harness.leaderboard.tuning import TuningBoard
from harness.leaderboard.tuning_page import tuning_html

_INLINE = re.compile(r"(`[^`]*`|\*\*[^*]+\*\*|\*[^*]+\*)")

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1400px;
  padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; }
h2 { margin-top: 2.2em; border-bottom: 1px solid #ccc; }
.meta { color: #555; font-size: 0.9em; word-break: break-all; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.8em 0; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.55em; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; }
td.text, th.text { text-align: left; white-space: normal; overflow-wrap: anywhere; max-width: 22em; }
.pipeline { color: #444; font-size: 0.9em; }
.pipeline code { background: #f6f6f6; padding: 0 0.2em; }
.swatch { display: inline-block; width: 0.8em; height: 0.8em; margin-right: 0.4em; vertical-align: baseline; }
.sig { font-weight: bold; }
.ns, .nc { color: #777; }
td.gain { white-space: normal; }
td.gain span { white-space: nowrap; }
.note { display: block; font-size: 0.85em; color: #777; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
svg.plot { background: #fff; border: 1px solid #eee; }
table.board th { cursor: pointer; }
.warn { background: #fff4e0; border-left: 4px solid #e69f00; padding: 0.4em 0.8em; }
"""

SORT_SCRIPT = """
(function () {
  function key(cell) {
    var v = parseFloat(cell.textContent.replace("\u2212", "-"));
    return isNaN(v) ? null : v;
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.board"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.title = "sort by this column";
      th.addEventListener("click", function () {
        var down = th.getAttribute("aria-sort") !== "descending", body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows).map(function (r, i) { return [r, i]; });
        rows.sort(function (a, b) {
          var p = a[0].cells[col], q = b[0].cells[col], x = key(p), y = key(q);
          if (x === null && y === null) { return p.textContent.localeCompare(q.textContent) || a[1] - b[1]; }
          if (x === null || y === null) { return x === null ? 1 : -1; }  // no figure: last
          return (down ? y - x : x - y) || a[1] - b[1];
        });
        Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) {
          h.removeAttribute("aria-sort");
        });
        th.setAttribute("aria-sort", down ? "descending" : "ascending");
        rows.forEach(function (r) { body.appendChild(r[0]); });
      });
    });
  });
})();
"""

CHECK_SCRIPT = """
(function () {
  function each(list, fn) { return Array.prototype.map.call(list, fn); }
  var plots = each(document.querySelectorAll("svg.plot"), function (svg) {
    var box = svg.getBoundingClientRect();
    var marks = svg.querySelectorAll(".mark");
    var drawn = 0;
    each(marks, function (m) { var b = m.getBBox(); if (b.width > 0 || b.height > 0) { drawn += 1; } });
    return {id: svg.id, kind: svg.getAttribute("data-plot"), width: box.width, height: box.height,
            marks: marks.length, drawn: drawn};
  });
  var tables = each(document.querySelectorAll("table"), function (t) {
    var box = t.getBoundingClientRect();
    var rows = t.tBodies.length ? t.tBodies[0].rows.length : 0;
    return {id: t.id, rows: rows, width: box.width, height: box.height, right: box.right};
  });
  var viewport = {width: document.documentElement.clientWidth, height: window.innerHeight,
                  scroll_width: document.documentElement.scrollWidth};
  document.body.setAttribute("data-render-check",
                             JSON.stringify({plots: plots, tables: tables, viewport: viewport}));
})();
"""


def render_html(
    settings: Sequence[Setting],
    apart: Sequence[SetApart],
    refs: References,
    n_runs: int,
    tuning: TuningBoard | None = None,
) -> str:
    """The whole page (with the Tuning section where `tuning` found trials files)."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>Leaderboard: knowledge distillation vs label smoothing</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        "<h1>Leaderboard</h1>",
        f"<p>{n_runs} completed runs in {len(settings)} matched settings; "
        f'<a href="#set-apart">{len(apart)} runs set apart</a>. Generated by '
        "<code>harness leaderboard</code> from the runs' Parquet files alone; the numeric table is in "
        "<code>leaderboard.parquet</code>.</p>",
        _legend(),
    ]
    if not refs.found:
        out.append('<p class="warn">Paper reference numbers not found (leaderboard/reference/).</p>')
    if settings:
        out.append("<ul>")
        for i, s in enumerate(settings, 1):
            out.append(f'<li><a href="#s{i}">{_setting_title(s)}</a></li>')
        out.append("</ul>")
    else:
        out.append("<p>No completed runs yet.</p>")
    for i, s in enumerate(settings, 1):
        out += _setting_section(f"s{i}", s)
    out += tuning_html(tuning) if tuning is not None else []
    out += _set_apart_section(apart)
    out += [f"<script>{SORT_SCRIPT}</script>", f"<script>{CHECK_SCRIPT}</script>", "</body>", "</html>"]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------ pieces
def _legend() -> str:
    """The Markdown legend's bullet points as an HTML list (the text is ours, not the runs')."""
    items, current = [], []
    for line in LEGEND.splitlines()[2:]:
        if line.startswith("- ") and current:
            items.append(" ".join(current))
            current = []
        if line.strip():
            current.append(line.strip().removeprefix("- "))
    if current:
        items.append(" ".join(current))
    lis = "".join(f"<li>{_md_inline(item)}</li>" for item in items)
    return f"<details><summary>How to read it</summary><ul>{lis}</ul></details>"


def _md_inline(text: str) -> str:
    """Our legend's `code`, **bold** and *italic* spans as HTML, everything else escaped."""
    out = []
    for token in _INLINE.split(text):
        if token.startswith("`") and token.endswith("`") and len(token) > 1:
            out.append(f"<code>{html(token[1:-1])}</code>")
        elif token.startswith("**") and token.endswith("**") and len(token) > 4:
            out.append(f"<b>{html(token[2:-2])}</b>")
        elif token.startswith("*") and token.endswith("*") and len(token) > 2:
            out.append(f"<i>{html(token[1:-1])}</i>")
        else:
            out.append(html(token))
    return "".join(out)


def _setting_title(s: Setting) -> str:
    return f"{html(s.dataset)} · {html(s.arch)} · {epochs_text(s.epochs)}"


def plot_panels(s: Setting) -> list[tuple[str, list[int]]]:
    """The panels a setting's plots are split into: (name, indices of its rows), in row order.

    All rows share one plot while each can have its own colour (at most len(PALETTE) rows); else
    the rows without a teacher (the baselines among them) and the rows with one are apart, each
    part split into near-equal panels of at most len(PALETTE) rows, so that no two rows of a plot
    share a colour and every legend fits beside its plot.
    """
    rows = range(len(s.rows))
    if len(s.rows) <= len(PALETTE):
        return [("", list(rows))]
    panels = []
    for name, members in (
        ("without a teacher", [i for i in rows if s.rows[i].teacher is None]),
        ("with a teacher", [i for i in rows if s.rows[i].teacher is not None]),
    ):
        parts = math.ceil(len(members) / len(PALETTE))
        size = math.ceil(len(members) / parts) if parts else 0
        for j in range(parts):
            title = name if parts == 1 else f"{name} ({j + 1} of {parts})"
            panels.append((title, members[j * size : (j + 1) * size]))
    return panels


def row_colours(s: Setting) -> list[str]:
    """Each row's colour: its place in its plot panel (`plot_panels`), in tables and plots alike."""
    colours = [""] * len(s.rows)
    for _, members in plot_panels(s):
        for place, i in enumerate(members):
            colours[i] = colour(place)
    return colours


def _th(names: Sequence[str], text_columns: int = 1) -> str:
    cells = "".join(
        f'<th class="text">{n}</th>' if i < text_columns else f"<th>{n}</th>" for i, n in enumerate(names)
    )
    return f"<thead><tr>{cells}</tr></thead>"


def _label_cell(col: str, row: Row) -> str:
    swatch = f'<span class="swatch" style="background:{col}"></span>'
    return f'<td class="text">{swatch}{html(row.label)}</td>'


def _teacher_text(row: Row) -> str:
    if row.teacher is None:
        return DASH
    epoch = f" @ epoch {row.teacher_epoch}" if row.teacher_epoch is not None else ""
    return html(row.teacher) + epoch


def _gain_cell(s: Setting, row: Row, kind: str) -> str:
    """The interval with its mark, and under it the note ('ns, ~N seeds to resolve')."""
    status = gain_status(s, row, kind)
    css = {"significant": "sig", "not significant": "ns", "not computable": "nc"}.get(status, "")
    shown, note = gain_parts(row.gains.get(kind), status)
    below = f'<span class="note">{html(note)}</span>' if note else ""
    return f'<td class="gain {css}" title="{html(status)}"><span>{html(shown)}</span>{below}</td>'


def _accuracy_table(sid: str, s: Setting) -> list[str]:
    """The accuracy table, first in its section (with the confidence table after the notes: two
    tables of the same rows, each narrow enough for a laptop screen)."""
    d = DECIMALS["top1"]
    accuracy, _ = accuracy_header(s)
    colours = row_colours(s)
    selected, test_selected = shows_selected(s), shows_test_selected(s)  # once, not once per row
    out = ['<div class="scroll">', f'<table id="{sid}-board" class="board">']
    out += [_th(accuracy, 3), "<tbody>"]
    for i, row in enumerate(s.rows):
        cells = [
            _label_cell(colours[i], row),
            f'<td class="text">{html(row.recipe_name)}</td>',
            f'<td class="text">{_teacher_text(row)}</td>',
            f"<td>{row.n}</td>",
        ]
        if selected:
            cells.append(f"<td>{mean_std(row.mean('top1_selected'), row.std('top1_selected'), d)}</td>")
            cells.append(f"<td>{num(row.mean('selected_epoch'), DECIMALS['epoch'])}</td>")
        cells.append(f"<td>{mean_std(row.mean('top1_last'), row.std('top1_last'), d)}</td>")
        if test_selected:
            cells.append(
                f"<td>{mean_std(row.mean('top1_best_on_test'), row.std('top1_best_on_test'), d)}</td>"
            )
        cells += [_gain_cell(s, row, b.kind) for b in BASELINES]
        out.append("<tr>" + "".join(cells) + "</tr>")
    return [*out, "</tbody>", "</table>", "</div>"]


def _confidence_table(sid: str, s: Setting) -> list[str]:
    confidence = ["row", *confidence_header(on_html=True)]
    colours = row_colours(s)
    out = ["<h3>Confidence and speed</h3>", '<div class="scroll">']
    out += [f'<table id="{sid}-confidence" class="board">', _th(confidence, 1), "<tbody>"]
    for i, row in enumerate(s.rows):
        cells = [f"<td>{html(c)}</td>" for c in confidence_cells(s, row, on_html=True)]
        out.append("<tr>" + _label_cell(colours[i], row) + "".join(cells) + "</tr>")
    return [*out, "</tbody>", "</table>", "</div>"]


def pipeline_text(pipeline: str) -> str:
    """The data pipeline (JSON of the resolved data section) as readable HTML: `key value`
    pairs, nested keys dotted, nulls left out."""
    try:
        data = json.loads(pipeline)
    except (TypeError, ValueError):
        return html(pipeline)
    if not isinstance(data, dict):
        return html(pipeline)
    parts = []
    for key, value in _flatten(data):
        if value is None:
            continue
        shown = {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value
        parts.append(f"<code>{html(key)}</code> {html(str(shown))}")
    return "; ".join(parts) if parts else DASH


def _flatten(data: dict, prefix: str = "") -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for key in sorted(data):
        value = data[key]
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out += _flatten(value, f"{name}.")
        else:
            out.append((name, json.dumps(value) if isinstance(value, (dict, list)) else value))
    return out


def _teacher_table(sid: str, s: Setting) -> list[str]:
    colours = row_colours(s)
    taught = [(colours[i], r) for i, r in enumerate(s.rows) if r.teacher is not None]
    if not taught:
        return []
    header = list(TEACHER_HEADER)
    out = [
        "<h3>Teachers and fidelity (evaluation split; the teacher's held-out top-1 beside)</h3>",
        '<div class="scroll">',
    ]
    out += [f'<table id="{sid}-teachers">', _th(header, 4), "<tbody>"]
    for col, row in taught:
        vals = teacher_figures(row)
        out.append(
            "<tr>" + _label_cell(col, row) + f'<td class="text">{_teacher_text(row)}</td>'
            f'<td class="text">{html(row.teacher_arch or DASH)}</td>'
            f'<td class="text">{html(row.teacher_method or DASH)}</td>'
            + "".join(f"<td>{v}</td>" for v in vals)
            + "</tr>"
        )
    return [*out, "</tbody>", "</table>", "</div>"]


def _comparison_table(sid: str, s: Setting) -> list[str]:
    """Every gain in full: paired and Welch intervals, p-values, Holm's p, seeds needed."""
    rows = comparison_rows(s)
    if not rows:
        return []
    out = ["<h3>Comparisons</h3>", '<div class="scroll">', f'<table id="{sid}-comparisons">']
    out += [_th(list(COMPARISON_HEADER), 1), "<tbody>"]
    for cells in rows:
        out.append(
            "<tr>"
            + "".join(
                f'<td class="text">{html(c)}</td>' if k < 1 else f"<td>{html(c)}</td>"
                for k, c in enumerate(cells)
            )
            + "</tr>"
        )
    return [*out, "</tbody>", "</table>", "</div>"]


def _paper_table(sid: str, s: Setting) -> list[str]:
    matched = [(row, ref) for row in s.rows for ref in row.paper]
    withheld = [
        f"<p>No published figure beside {html(row.label)}: {html(row.paper_withheld)}.</p>"
        for row in s.rows
        if row.paper_withheld
    ]
    if not matched:
        return withheld
    header = list(PAPER_HEADER)
    out = [
        "<h3>Paper vs ours</h3>",
        '<div class="scroll">',
        f'<table id="{sid}-paper">',
        _th(header, 2),
        "<tbody>",
    ]
    for row, ref in matched:
        cells = paper_cells(row, ref, html)
        out.append(
            "<tr>"
            + "".join(f'<td class="text">{c}</td>' if k < 2 else f"<td>{c}</td>" for k, c in enumerate(cells))
            + "</tr>"
        )
    return [*out, "</tbody>", "</table>", "</div>", *withheld]


def _plots(sid: str, s: Setting) -> list[str]:
    """Accuracy against entropy and top-1 per epoch, one pair per panel (`plot_panels`, sharing
    axes), then the reliability diagrams."""
    colours = row_colours(s)
    groups: dict[int, ScatterGroup] = {}
    for i, row in enumerate(s.rows):
        pts = tuple(
            (f"seed {seed}", v["entropy"], v["top1_last"])
            for seed, v in zip(row.seeds, row.values, strict=True)
            if v["entropy"] is not None and v["top1_last"] is not None
        )
        m_x, m_y = row.mean("entropy"), row.mean("top1_last")
        if pts and m_x is not None and m_y is not None:
            groups[i] = ScatterGroup(row.label, colours[i], (m_x, m_y), pts)
    series = [
        (row.label, colours[i], [(float(e), m) for e, m, _ in row.curve()]) for i, row in enumerate(s.rows)
    ]
    panels = plot_panels(s)
    out = ['<div class="plots">']
    for j, (name, members) in enumerate(panels):
        suffix, part = (f"-{j + 1}", f": {name}") if len(panels) > 1 else ("", "")
        shown = [groups[i] for i in members if i in groups]
        if shown:
            out.append(
                scatter_plot(
                    f"{sid}-scatter{suffix}",
                    f"Top-1 (last epoch) vs mean entropy{part}",
                    shown,
                    "mean predictive entropy (nats)",
                    "top-1 (%)",
                    scale=list(groups.values()),
                )
            )
        out.append(
            line_plot(
                f"{sid}-curves{suffix}",
                f"Top-1 per epoch (mean over seeds){part}",
                [series[i] for i in members],
                "epoch",
                "top-1 (%)",
                integer_x=True,
                scale=series,
            )
        )
    out.append("</div>")
    diagrams = []
    for i, row in enumerate(s.rows):
        rel = row.reliability()
        if rel is not None:
            counts, conf, acc = rel
            diagrams.append(reliability_plot(f"{sid}-rel{i + 1}", row.label, counts, conf, acc, colours[i]))
    if diagrams:
        out += [
            "<h3>Reliability diagrams (last epoch, pooled over seeds)</h3>",
            '<div class="plots">',
            *diagrams,
            "</div>",
        ]
    return out


def _setting_section(sid: str, s: Setting) -> list[str]:
    ls, ce = s.baselines.get(LS.kind), s.baselines.get(CE.kind)
    out = [f'<section class="setting" id="{sid}">', f"<h2>{_setting_title(s)}</h2>", *_accuracy_table(sid, s)]
    out += [
        f"<p>{html(basis_sentence(s))} {html(family_sentence(s))}</p>",
        f'<p class="meta">Setting {html(s.key)}; metrics on the {html(s.eval_split or "evaluation")} split; '
        f"{s.n_runs} runs.</p>",
        f'<p class="pipeline">Data pipeline: {pipeline_text(s.data_pipeline)}</p>',
    ]
    if ls is None:
        out.append(
            f'<p class="warn">No {LS.name} baseline in this setting: the Δ vs {LS.short} column is empty.</p>'
        )
    else:
        out.append(f"<p>{LS.name.capitalize()} baseline: {html(ls.label)} ({ls.n} seeds).</p>")
    if ce is None:
        out.append(
            f'<p class="warn">No {CE.name} baseline in this setting: the Δ vs {CE.short} column is empty.</p>'
        )
    out += _confidence_table(sid, s)
    out += _comparison_table(sid, s)
    out += _plots(sid, s)
    out += _teacher_table(sid, s)
    out += _paper_table(sid, s)
    return [*out, "</section>"]


def _set_apart_section(apart: Sequence[SetApart]) -> list[str]:
    out = ['<section id="set-apart">', "<h2>Runs set apart</h2>"]
    if not apart:
        return [*out, "<p>None: every run folder was complete and readable.</p>", "</section>"]
    out += [
        "<p>Not in the tables above: unfinished, failed, diverged, unreadable or duplicated runs.</p>",
        '<div class="scroll">',
        '<table id="set-apart-table">',
        _th(["folder", "run id", "status", "reason"], 4),
        "<tbody>",
    ]
    for a in apart:
        cells = (a.folder, a.run_id or DASH, a.status, a.reason)
        out.append("<tr>" + "".join(f'<td class="text">{html(c)}</td>' for c in cells) + "</tr>")
    return [*out, "</tbody>", "</table>", "</div>", "</section>"]
