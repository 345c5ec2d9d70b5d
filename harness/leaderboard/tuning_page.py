"""The "Tuning" section of leaderboard.md and index.html (`tuning` has what it shows).

Per study: the budget table (method, budget, trials by state, epochs, device-hours, best objective
and params, E[best of k] at the fewest completed trials of any method), a note on the budgets
(unequal ones said so) and on the teacher's training (counted once per study, or "not counted"),
and on the page one plot of the expected best objective against the number of trials, every
method a line with its ± std band and an entry in the legend. Then the trials files set apart.
Nothing is shown when no trials file exists, so the rest of the board stays byte for byte as
before. All text from the files is escaped (`text.md`, `text.html`).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from harness.leaderboard.svg import band_plot, colour
from harness.leaderboard.text import DASH, DECIMALS, html, md, num
from harness.leaderboard.tuning import MethodSummary, StudySummary, TuningBoard, params_text

INTRO = (
    "Hyper-parameter searches run by `harness tune` (`<runs-dir>/tuning/<study>/trials.parquet`), "
    "selected on the held-out validation split; the figures per method are in `tuning.parquet`. "
    "**E[best of n]** is Dodge et al. 2019's expected maximum validation performance: the mean of "
    "the best of n trials drawn with replacement from the N completed ones, sum_i v_(i) "
    "[(i/N)^n - ((i-1)/N)^n] over the sorted objectives, drawn with a band of ± its std."
)


def budget_header(study: StudySummary) -> list[str]:
    objective = ", ".join(sorted({m.objective_name for m in study.methods}))
    return [
        "method",
        "budget",
        "trials",
        "completed / pruned / failed",
        "epochs",
        "device-hours",
        f"best {objective}",
        f"E[best of {study.common_n or 'n'}]",
        "best params",
    ]


def budget_cells(study: StudySummary, m: MethodSummary) -> list[str]:
    """One line of the budget table (plain text)."""
    d = DECIMALS["top1"]
    at_k = m.curve[study.common_n - 1] if study.common_n else None
    return [
        m.method,
        str(m.budget),
        str(m.trials) + (f" ({m.counts['running']} running)" if m.counts["running"] else ""),
        f"{m.completed} / {m.counts['pruned']} / {m.counts['failed']}",
        str(m.epochs_trained),
        num(m.device_seconds / 3600.0, 3),
        num(m.best_objective, d) + (f" (trial {m.best_trial})" if m.best_trial is not None else ""),
        f"{num(at_k[0], d)} ± {num(at_k[1], d)}" if at_k else DASH,
        params_text(m.best_params) or DASH,
    ]


def budget_note(study: StudySummary) -> str:
    """Whether the methods had equal budgets (plain text)."""
    if not study.unequal_budgets:
        return f"Every method had the same budget of {study.methods[0].budget} trials."
    budgets = ", ".join(f"{m.method} {m.budget}" for m in study.methods)
    return (
        f"**Unequal budgets** ({budgets} trials): compare the methods at equal n "
        f"(E[best of {study.common_n}], or the curves), not by their best values."
    )


def teacher_note(study: StudySummary) -> str:
    """How the teachers' training enters the study's cost (plain text): counted once, or not."""
    if not study.teachers:
        if study.runs_found:
            return "No teacher: the trials' runs name none."
        return (
            "Teacher training: not counted (no trial's run is among the completed runs read, so the "
            "teacher cannot be determined from the trials file); the device-hours are the trials' alone."
        )
    parts = [
        f"{t.source} {num(t.seconds / 3600.0, 3)} device-hours"
        if t.seconds is not None
        else f"{t.source} not counted (not a completed run under the runs folder)"
        for t in study.teachers
    ]
    return (
        "A teacher's training is counted once per study, not per method or trial, and is not in the "
        f"methods' device-hours: {'; '.join(parts)} (the sum of its epochs' epoch_time_s)."
    )


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = [
        "| " + " | ".join(md(h) for h in header) + " |",
        "| --- | " + " | ".join("---:" for _ in header[1:-1]) + " | --- |",
    ]
    return [*out, *("| " + " | ".join(md(c) for c in cells) + " |" for cells in rows), ""]


_SPANS = re.compile(r"(`[^`]*`|\*\*[^*]+\*\*)")


def _inline(text: str, escape: Callable[[str], str], on_html: bool) -> str:
    """Our own notes' `code` and **bold** spans kept (Markdown) or made HTML, the rest escaped."""
    out = []
    for token in _SPANS.split(text):
        if len(token) > 1 and token.startswith("`") and token.endswith("`"):
            out.append(f"<code>{html(token[1:-1])}</code>" if on_html else token)
        elif len(token) > 4 and token.startswith("**") and token.endswith("**"):
            out.append(f"<b>{escape(token[2:-2])}</b>" if on_html else f"**{escape(token[2:-2])}**")
        else:
            out.append(_keep_spaces(token, escape))
    return "".join(out)


def _keep_spaces(token: str, escape: Callable[[str], str]) -> str:
    """`escape(token)` with the token's leading and trailing space kept (`md` strips them)."""
    if not token.strip():
        return token
    lead = " " if token[0].isspace() else ""
    trail = " " if token[-1].isspace() else ""
    return lead + escape(token.strip()) + trail


def tuning_markdown(board: TuningBoard) -> list[str]:
    """The section's Markdown lines (none without a trials file)."""
    if not board.found:
        return []
    lines = ["## Tuning", "", _inline(INTRO, md, on_html=False), ""]
    for study in board.studies:
        lines += [f"### Study {md(study.name)}", "", f"From `{study.path}`.", ""]
        lines += _table(budget_header(study), [budget_cells(study, m) for m in study.methods])
        lines += [_inline(budget_note(study), md, on_html=False), "", md(teacher_note(study)), ""]
    lines += _set_apart_lines(board, md)
    return lines


def _set_apart_lines(board: TuningBoard, escape: Callable[[str], str]) -> list[str]:
    if not board.set_apart:
        return []
    return ["Tuning files set apart:", "", *(f"- {escape(line)}" for line in board.set_apart), ""]


def tuning_html(board: TuningBoard) -> list[str]:
    """The section's HTML (none without a trials file)."""
    if not board.found:
        return []
    out = ['<section id="tuning">', "<h2>Tuning</h2>", f"<p>{_inline(INTRO, html, on_html=True)}</p>"]
    for i, study in enumerate(board.studies, 1):
        out += _study_html(f"tuning{i}", study)
    if board.set_apart:
        out += ["<p>Tuning files set apart:</p>", "<ul>"]
        out += [f"<li>{html(line)}</li>" for line in board.set_apart]
        out.append("</ul>")
    return [*out, "</section>"]


def _study_html(tid: str, study: StudySummary) -> list[str]:
    header = budget_header(study)
    out = [f"<h3>Study {html(study.name)}</h3>", f'<p class="meta">From {html(study.path)}.</p>']
    out += ['<div class="scroll">', f'<table id="{tid}-budget">', "<thead><tr>"]
    out.append(
        "".join(
            f'<th class="text">{html(h)}</th>' if k in (0, 8) else f"<th>{html(h)}</th>"
            for k, h in enumerate(header)
        )
    )
    out += ["</tr></thead>", "<tbody>"]
    for j, m in enumerate(study.methods):
        cells = budget_cells(study, m)
        swatch = f'<span class="swatch" style="background:{colour(j)}"></span>'
        out.append(
            f'<tr><td class="text">{swatch}{html(cells[0])}</td>'
            + "".join(f"<td>{html(c)}</td>" for c in cells[1:-1])
            + f'<td class="text">{html(cells[-1])}</td></tr>'
        )
    out += ["</tbody>", "</table>", "</div>"]
    note_class = ' class="warn"' if study.unequal_budgets else ""
    out.append(f"<p{note_class}>{_inline(budget_note(study), html, on_html=True)}</p>")
    out.append(f"<p>{html(teacher_note(study))}</p>")
    if not any(m.curve for m in study.methods):
        return [*out, "<p>No completed trial: no curve.</p>"]
    objective = ", ".join(sorted({m.objective_name for m in study.methods}))
    series = [
        (m.method, colour(j), [(float(n), mean, std) for n, (mean, std) in enumerate(m.curve, 1)])
        for j, m in enumerate(study.methods)
    ]
    plot = band_plot(
        f"{tid}-expected-max",
        f"Expected best of n trials: {study.name}",
        series,
        "trials (n)",
        f"expected best {objective}",
        {m.method: " (no completed trial)" for m in study.methods if not m.curve},
    )
    return [*out, '<div class="plots">', plot, "</div>"]
