"""Small deterministic SVG plots (no plotting library): scatter, lines and reliability diagrams.

Every plot is an `<svg class="plot" data-plot="...">` whose data marks carry `class="mark"`,
so a browser (or a test) can check that each one drew something. Coordinates are printed with
one decimal and all text goes through `text.html`, so equal inputs give equal bytes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from harness.leaderboard.text import html

#: Colour-blind-safe colours (Okabe & Ito), then further distinct ones; rows cycle through them.
PALETTE = (
    "#0072B2",
    "#D55E00",
    "#009E73",
    "#CC79A7",
    "#E69F00",
    "#56B4E9",
    "#000000",
    "#8C564B",
    "#7F7F7F",
    "#17BECF",
)

WIDTH, HEIGHT = 640, 360
LEFT, RIGHT, TOP, BOTTOM = 64, 200, 36, 52  # margins; the legend lives in the right margin


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _f(v: float) -> str:
    """One decimal, never '-0.0'."""
    text = f"{v:.1f}"
    return "0.0" if text == "-0.0" else text


# ------------------------------------------------------------------------------ axes
def nice_step(span: float, target: int = 5) -> float:
    """A 1, 2, 2.5 or 5 times a power of ten step giving about `target` intervals over `span`."""
    raw = span / target
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if m * magnitude >= raw * (1 - 1e-9):
            return m * magnitude
    return 10.0 * magnitude


def nice_range(
    lo: float, hi: float, target: int = 5, pad: float = 0.0, integer: bool = False
) -> tuple[float, float, list[float]]:
    """Axis limits (widened by `pad` of the span) rounded out to a nice step, and the ticks.

    `integer` keeps the step a whole number (epochs).
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if hi - lo < 1e-12:
        half = abs(lo) * 0.05 or 0.5
        lo, hi = lo - half, hi + half
    lo, hi = lo - pad * (hi - lo), hi + pad * (hi - lo)
    step = nice_step(hi - lo, target)
    if integer:
        step = max(1.0, float(math.ceil(step)))
    first = math.floor(lo / step + 1e-9) * step
    last = math.ceil(hi / step - 1e-9) * step
    count = round((last - first) / step)
    return first, last, [first + i * step for i in range(count + 1)]


def _tick_text(value: float, step: float) -> str:
    """A tick label with just the decimals the step needs (step = m * 10^k, m in 1, 2, 2.5, 5)."""
    k = math.floor(math.log10(step) + 1e-9)
    extra = 1 if abs(step / 10.0**k - 2.5) < 1e-9 else 0
    text = f"{value:.{max(0, extra - k)}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


@dataclass(frozen=True)
class Frame:
    """Maps data coordinates into the plot area of a WIDTH x HEIGHT canvas."""

    x_lo: float
    x_hi: float
    y_lo: float
    y_hi: float
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = RIGHT
    top: int = TOP
    bottom: int = BOTTOM

    def x(self, v: float) -> float:
        span = self.width - self.left - self.right
        return self.left + (v - self.x_lo) / (self.x_hi - self.x_lo) * span

    def y(self, v: float) -> float:
        span = self.height - self.top - self.bottom
        return self.height - self.bottom - (v - self.y_lo) / (self.y_hi - self.y_lo) * span


def _axes(
    frame: Frame, xticks: Sequence[float], yticks: Sequence[float], xlabel: str, ylabel: str
) -> list[str]:
    """Grid lines, tick labels and axis titles."""
    out = ['<g class="axes" font-size="11" fill="#333">']
    x0, x1 = frame.x(frame.x_lo), frame.x(frame.x_hi)
    y0, y1 = frame.y(frame.y_lo), frame.y(frame.y_hi)
    xstep = xticks[1] - xticks[0] if len(xticks) > 1 else 1.0
    ystep = yticks[1] - yticks[0] if len(yticks) > 1 else 1.0
    for t in xticks:
        px = _f(frame.x(t))
        out.append(f'<line x1="{px}" y1="{_f(y0)}" x2="{px}" y2="{_f(y1)}" stroke="#e4e4e4"/>')
        # 21 px down: the first label's box clears the lowest y tick label's at the corner
        out.append(f'<text x="{px}" y="{_f(y0 + 21)}" text-anchor="middle">{_tick_text(t, xstep)}</text>')
    for t in yticks:
        py = _f(frame.y(t))
        out.append(f'<line x1="{_f(x0)}" y1="{py}" x2="{_f(x1)}" y2="{py}" stroke="#e4e4e4"/>')
        out.append(
            f'<text x="{_f(x0 - 6)}" y="{_f(frame.y(t) + 4)}" text-anchor="end">{_tick_text(t, ystep)}</text>'
        )
    out.append(
        f'<rect x="{_f(x0)}" y="{_f(y1)}" width="{_f(x1 - x0)}" height="{_f(y0 - y1)}" '
        'fill="none" stroke="#888"/>'
    )
    cx = _f((x0 + x1) / 2)
    out.append(f'<text x="{cx}" y="{_f(frame.height - 12)}" text-anchor="middle">{html(xlabel)}</text>')
    cy = _f((y0 + y1) / 2)
    out.append(
        f'<text x="14" y="{cy}" text-anchor="middle" transform="rotate(-90 14 {cy})">{html(ylabel)}</text>'
    )
    out.append("</g>")
    return out


def _open(plot_id: str, kind: str, title: str, width: int = WIDTH, height: int = HEIGHT) -> list[str]:
    return [
        f'<svg class="plot" id="{html(plot_id)}" data-plot="{html(kind)}" '
        f'xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{html(title)}">',
        f"<title>{html(title)}</title>",
        f'<text x="{width // 2}" y="20" text-anchor="middle" font-size="13" font-weight="bold">'
        f"{html(title)}</text>",
    ]


def _legend(
    frame: Frame, entries: Sequence[tuple[str, str]], notes: dict[str, str] | None = None, footer: str = ""
) -> list[str]:
    """One swatch and label per entry in the right margin (the full label in its tooltip), a
    label's note (an off-scale value) after it, and a footer line under them."""
    out = ['<g class="legend" font-size="11">']
    x = frame.width - frame.right + 14
    for i, (label, col) in enumerate(entries):
        y = frame.top + 6 + 16 * i
        note = (notes or {}).get(label, "")
        room = 28 - len(note)
        short = (label if len(label) <= room else label[: room - 1] + "…") + note
        out.append(f'<rect x="{x}" y="{y - 8}" width="10" height="10" fill="{col}"/>')
        out.append(f'<text x="{x + 16}" y="{y + 1}">{html(short)}<title>{html(label)}</title></text>')
    if footer:
        y = frame.top + 7 + 16 * len(entries)
        out.append(f'<text x="{x}" y="{y}" font-size="10" fill="#555">{html(footer)}</text>')
    out.append("</g>")
    return out


# ------------------------------------------------------------------------------ plots
@dataclass(frozen=True)
class ScatterGroup:
    """One row in a scatter plot: its mean point and its per-seed points."""

    label: str
    colour: str
    mean: tuple[float, float]
    points: tuple[tuple[str, float, float], ...]  # (name, x, y) per seed


def outliers(values: Sequence[float], k: float = 5.0, floor: float = 3.0) -> set[int]:
    """Indices of values further than max(k MAD, floor) from the median (none with < 4 values).

    With the study's top-1 means (80.7-82.8% and a defective teacher's 65.1%) the defective row
    alone is an outlier; a few points of spread between methods never are.
    """
    if len(values) < 4:
        return set()
    ordered = sorted(values)
    median = (ordered[(len(values) - 1) // 2] + ordered[len(values) // 2]) / 2
    deviations = sorted(abs(v - median) for v in values)
    mad = (deviations[(len(values) - 1) // 2] + deviations[len(values) // 2]) / 2
    limit = max(k * mad, floor)
    return {i for i, v in enumerate(values) if abs(v - median) > limit}


def _scatter_axes(groups: Sequence[ScatterGroup]) -> tuple[Frame, list[float], list[float], set[int]]:
    """The frame and ticks of a scatter plot of `groups`, and the groups drawn off its scale.

    A group whose mean y is an outlier (`outliers`) would squeeze the others into one band: the
    y-axis is scaled to the other groups, and an outlier whose mean and seeds still fall on that
    scale goes back on it (repeated until none does), so every group left off lies beyond an edge.
    """
    far = outliers([g.mean[1] for g in groups])
    xs = [x for g in groups for _, x, _ in g.points] + [g.mean[0] for g in groups]
    x_lo, x_hi, xticks = nice_range(min(xs, default=0.0), max(xs, default=1.0), pad=0.05)
    while True:
        bulk = [g for i, g in enumerate(groups) if i not in far]
        ys = [y for g in bulk for _, _, y in g.points] + [g.mean[1] for g in bulk]
        y_lo, y_hi, yticks = nice_range(min(ys, default=0.0), max(ys, default=1.0), pad=0.05)
        inside = {i for i in far if all(y_lo <= y <= y_hi for y in _ys(groups[i]))}
        if not inside:
            return Frame(x_lo, x_hi, y_lo, y_hi), xticks, yticks, far
        far -= inside


def _ys(g: ScatterGroup) -> list[float]:
    return [g.mean[1], *(y for _, _, y in g.points)]


def scatter_plot(
    plot_id: str,
    title: str,
    groups: Sequence[ScatterGroup],
    xlabel: str,
    ylabel: str,
    scale: Sequence[ScatterGroup] | None = None,
) -> str:
    """Per-seed dots and a ring for each group's mean, the y-axis scaled to the bulk of the groups.

    The axes are those of `scale` (default: `groups`), so that panels splitting one plot share
    them. A group off the scale (`_scatter_axes`) is a triangle on the edge it lies beyond, its
    value in the legend.
    """
    scale = list(scale if scale is not None else groups)
    frame, xticks, yticks, far_indices = _scatter_axes(scale)
    far = [scale[i] for i in far_indices]
    out = _open(plot_id, "scatter", title) + _axes(frame, xticks, yticks, xlabel, ylabel)
    notes = {}
    for g in groups:
        mx, my = g.mean
        if g in far:
            out += _off_scale_marker(frame, g)
            notes[g.label] = f" {'▼' if my < frame.y_lo else '▲'}{my:.2f}"
            continue
        for name, x, y in g.points:
            out.append(
                f'<circle class="mark seed" cx="{_f(frame.x(x))}" cy="{_f(frame.y(y))}" r="3.5" '
                f'fill="{g.colour}" fill-opacity="0.8" stroke="#fff" stroke-width="0.8">'
                f"<title>{html(g.label)} {html(name)}: {y:.2f}, {x:.3f}</title></circle>"
            )
        out.append(
            f'<circle class="mark mean" cx="{_f(frame.x(mx))}" cy="{_f(frame.y(my))}" r="7" '
            f'fill="{g.colour}" fill-opacity="0.25" stroke="{g.colour}" stroke-width="2">'
            f"<title>{html(g.label)} mean: {my:.2f}, {mx:.3f}</title></circle>"
        )
    footer = "▲▼ mean beyond that edge" if notes else ""
    out += _legend(frame, [(g.label, g.colour) for g in groups], notes, footer)
    return "\n".join([*out, "</svg>"])


def _off_scale_marker(frame: Frame, g: ScatterGroup) -> list[str]:
    """A triangle on the top or bottom edge at the group's x, pointing past the edge; its value
    is in the legend (labels beside the triangles would overlap where means are close in x)."""
    mx, my = g.mean
    below = my < frame.y_lo
    edge = frame.y(frame.y_lo) if below else frame.y(frame.y_hi)
    px = frame.x(mx)
    tip, base = (edge, edge - 10) if below else (edge, edge + 10)
    seeds = ", ".join(f"{html(name)} {y:.2f}" for name, _, y in g.points)
    path = f"M{_f(px - 6)},{_f(base)} L{_f(px + 6)},{_f(base)} L{_f(px)},{_f(tip)} Z"
    note = f"{html(g.label)} mean: {my:.2f}, {mx:.3f} (off scale; {seeds})"
    return [f'<path class="mark outlier" d="{path}" fill="{g.colour}"><title>{note}</title></path>']


def line_plot(
    plot_id: str,
    title: str,
    series: Sequence[tuple[str, str, Sequence[tuple[float, float]]]],
    xlabel: str,
    ylabel: str,
    integer_x: bool = False,
    scale: Sequence[tuple[str, str, Sequence[tuple[float, float]]]] | None = None,
) -> str:
    """One polyline with point markers per (label, colour, points) series, on the axes of
    `scale` (default: `series`; panels splitting one plot share them)."""
    scale = list(scale if scale is not None else series)
    xs = [x for _, _, pts in scale for x, _ in pts]
    ys = [y for _, _, pts in scale for _, y in pts]
    x_lo, x_hi, xticks = nice_range(min(xs, default=0.0), max(xs, default=1.0), integer=integer_x)
    y_lo, y_hi, yticks = nice_range(min(ys, default=0.0), max(ys, default=1.0), pad=0.05)
    frame = Frame(x_lo, x_hi, y_lo, y_hi)
    out = _open(plot_id, "lines", title) + _axes(frame, xticks, yticks, xlabel, ylabel)
    for label, col, pts in series:
        coords = " ".join(f"{_f(frame.x(x))},{_f(frame.y(y))}" for x, y in pts)
        out.append(
            f'<polyline class="mark line" points="{coords}" fill="none" stroke="{col}" stroke-width="2">'
            f"<title>{html(label)}</title></polyline>"
        )
        for x, y in pts:
            out.append(
                f'<circle class="mark point" cx="{_f(frame.x(x))}" cy="{_f(frame.y(y))}" r="2.5" '
                f'fill="{col}">'
                f"<title>{html(label)} epoch {x:g}: {y:.2f}</title></circle>"
            )
    out += _legend(frame, [(label, col) for label, col, _ in series])
    return "\n".join([*out, "</svg>"])


def reliability_plot(
    plot_id: str,
    title: str,
    counts: Sequence[float],
    confidence: Sequence[float | None],
    accuracy: Sequence[float | None],
    col: str,
) -> str:
    """Accuracy per confidence bin as bars against the diagonal (perfect calibration).

    Equal-width bins over the max-probability, as the ECE of `harness.metrics`; a bar's height
    is the bin's accuracy, a dot marks its mean confidence, a strip below gives the samples per
    bin, and the caption gives the ECE recomputed from the pooled bins:
    sum_b (n_b / N) |acc_b - conf_b|.
    """
    size, margin, strip = 300, 44, 42
    height = size + strip
    left = margin + 8  # room for the tick labels ("0.75") right of the rotated axis title
    frame = Frame(
        0.0, 1.0, 0.0, 1.0, width=size, height=height, left=left, right=12, top=30, bottom=margin + strip
    )
    ticks = [0.0, 0.25, 0.5, 0.75, 1.0]
    out = _open(plot_id, "reliability", title, size, height)
    out += _axes(frame, ticks, ticks, "confidence (max probability)", "accuracy")
    out.append(
        f'<line x1="{_f(frame.x(0))}" y1="{_f(frame.y(0))}" x2="{_f(frame.x(1))}" y2="{_f(frame.y(1))}" '
        'stroke="#999" stroke-dasharray="4 3"/>'
    )
    n_bins = len(counts)
    total = math.fsum(counts)
    ece = 0.0
    for b in range(n_bins):
        acc, conf, n = accuracy[b], confidence[b], counts[b]
        if not n or acc is None or conf is None:
            continue
        ece += n / total * abs(acc - conf)
        x0, x1 = frame.x(b / n_bins), frame.x((b + 1) / n_bins)
        top = frame.y(acc)
        out.append(
            f'<rect class="mark bar" x="{_f(x0 + 0.5)}" y="{_f(top)}" width="{_f(x1 - x0 - 1)}" '
            f'height="{_f(frame.y(0) - top)}" fill="{col}" fill-opacity="0.7">'
            f"<title>bin {b + 1}: {n:.0f} samples, accuracy {acc:.3f}, confidence {conf:.3f}</title></rect>"
        )
        out.append(
            f'<circle class="mark conf" cx="{_f(frame.x(conf))}" cy="{_f(frame.y(acc))}" r="2" fill="#222"/>'
        )
    out.append(
        f'<text x="{_f(frame.x(0.03))}" y="{_f(frame.y(0.93))}" font-size="11">'
        f"ECE {ece:.4f}, n {total:.0f}</text>"
    )
    out += _count_strip(frame, counts, col, strip)
    return "\n".join([*out, "</svg>"])


def _count_strip(frame: Frame, counts: Sequence[float], col: str, strip: int) -> list[str]:
    """Samples per bin as a histogram under the tick labels (height relative to the fullest bin),
    so a nearly empty bin does not look as weighty as a full one."""
    n_bins, most = len(counts), max(counts, default=0.0)
    base = frame.y(0) + strip + 14  # bottom of the strip, above the axis title
    out = [
        f'<text x="{_f(frame.x(0) - 4)}" y="{_f(base)}" text-anchor="end" font-size="9" fill="#555">n</text>',
        f'<line x1="{_f(frame.x(0))}" y1="{_f(base)}" x2="{_f(frame.x(1))}" y2="{_f(base)}" stroke="#bbb"/>',
    ]
    for b, n in enumerate(counts):
        if not n or not most:
            continue
        x0, x1 = frame.x(b / n_bins), frame.x((b + 1) / n_bins)
        h = max(1.0, (strip - 24) * n / most)  # the tallest bar stays under the caption
        out.append(
            f'<rect class="mark count" x="{_f(x0 + 0.5)}" y="{_f(base - h)}" width="{_f(x1 - x0 - 1)}" '
            f'height="{_f(h)}" fill="{col}" fill-opacity="0.45"><title>bin {b + 1}: {n:.0f} samples '
            f"({100 * n / math.fsum(counts):.1f}%)</title></rect>"
        )
    out.append(
        f'<text x="{_f(frame.x(1))}" y="{_f(base - strip + 20)}" text-anchor="end" font-size="9" '
        f'fill="#555">samples per bin (max {most:.0f})</text>'
    )
    return out


def band_plot(
    plot_id: str,
    title: str,
    series: Sequence[tuple[str, str, Sequence[tuple[float, float, float]]]],
    xlabel: str,
    ylabel: str,
    notes: dict[str, str] | None = None,
) -> str:
    """One line with a shaded band per (label, colour, [(x, mean, std), ...]) series: the band
    spans mean ± std (the expected-max curves of a tuning study); every series is in the legend,
    one with no points too (it draws nothing), with its note from `notes` after it."""
    xs = [x for _, _, pts in series for x, _, _ in pts]
    ys = [y for _, _, pts in series for _, m, s in pts for y in (m - s, m + s)]
    x_lo, x_hi, xticks = nice_range(min(xs, default=1.0), max(xs, default=1.0), integer=True)
    y_lo, y_hi, yticks = nice_range(min(ys, default=0.0), max(ys, default=1.0), pad=0.05)
    frame = Frame(x_lo, x_hi, y_lo, y_hi)
    out = _open(plot_id, "band", title) + _axes(frame, xticks, yticks, xlabel, ylabel)
    for label, col, pts in series:
        if len(pts) > 1:
            upper = [f"{_f(frame.x(x))},{_f(frame.y(m + s))}" for x, m, s in pts]
            lower = [f"{_f(frame.x(x))},{_f(frame.y(m - s))}" for x, m, s in reversed(pts)]
            out.append(
                f'<polygon class="mark band" points="{" ".join(upper + lower)}" fill="{col}" '
                f'fill-opacity="0.15" stroke="none"><title>{html(label)} ± std</title></polygon>'
            )
            coords = " ".join(f"{_f(frame.x(x))},{_f(frame.y(m))}" for x, m, _ in pts)
            out.append(
                f'<polyline class="mark line" points="{coords}" fill="none" stroke="{col}" '
                f'stroke-width="2"><title>{html(label)}</title></polyline>'
            )
        for x, m, s in pts:
            out.append(
                f'<circle class="mark point" cx="{_f(frame.x(x))}" cy="{_f(frame.y(m))}" r="2.5" '
                f'fill="{col}"><title>{html(label)} n={x:g}: {m:.2f} ± {s:.2f}</title></circle>'
            )
    out += _legend(frame, [(label, col) for label, col, _ in series], notes)
    return "\n".join([*out, "</svg>"])
