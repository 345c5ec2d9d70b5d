"""The committed study's index.html as a researcher reads it, in headless Chromium at laptop and
desktop sizes: no table wider than the window, every plot drawn, a number above the fold, every
row in its plots' legends, no two labels of a plot overlapping, headers that sort; a screenshot of
each size. Each size is rendered once a module (`render_study`); the test's own script (PROBE)
measures what the browser drew and clicks the headers."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.leaderboard import generate
from harness.leaderboard.html_page import pipeline_text
from harness.leaderboard.svg import ScatterGroup, outliers, scatter_plot
from tests.leaderboard.test_leaderboard import write_run
from tests.leaderboard.test_verdicts import write_holdout_study
from tests.support.marks import CHROMIUM
from tests.support.recipes import REPO

STUDY_RUNS = REPO / "leaderboard" / "runs"
LAPTOP = (1366, 768)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (scripts/setup.sh --test installs it)"
)

#: Appended to a copy of the page: per plot, its visible text boxes that overlap and the labels of
#: its legend drawn inside it; per accuracy table, its rows' labels, then its rows' labels and
#: "top-1 last" figures after one and after two clicks on that header; the first figure of a
#: board drawn inside the window. Written into <body data-probe>.
PROBE = """
(function () {
  function list(nodes) { return Array.prototype.slice.call(nodes); }
  function own(t) { return list(t.childNodes).filter(function (n) { return n.nodeType === 3; })
                      .map(function (n) { return n.textContent; }).join(""); }
  function apart(a, b) { return a.right <= b.left + 0.5 || b.right <= a.left + 0.5 ||
                                a.bottom <= b.top + 0.5 || b.bottom <= a.top + 0.5; }
  function within(a, b) { return a.left >= b.left - 0.5 && a.right <= b.right + 0.5 &&
                                 a.top >= b.top - 0.5 && a.bottom <= b.bottom + 0.5; }
  var plots = list(document.querySelectorAll("svg.plot")).map(function (svg) {
    var box = svg.getBoundingClientRect();
    var texts = list(svg.querySelectorAll("text")).map(function (t) {
      return {text: own(t), box: t.getBoundingClientRect(), el: t,
              legend: t.matches(".legend text") && t.querySelector("title") !== null};
    }).filter(function (t) { return t.box.width > 0 && t.box.height > 0; });
    var clashes = [];
    texts.forEach(function (a, i) { texts.slice(i + 1).forEach(function (b) {
      if (!apart(a.box, b.box)) { clashes.push([a.text, b.text]); } }); });
    var shown = texts.filter(function (t) { return t.legend && within(t.box, box); });
    var outside = texts.filter(function (t) { return !within(t.box, box); });
    return {id: svg.id, clashes: clashes, outside: outside.map(function (t) { return t.text; }),
            legend: shown.map(function (t) { return t.el.querySelector("title").textContent; }),
            colours: list(svg.querySelectorAll(".legend rect")).map(function (r) {
              return r.getAttribute("fill"); })};
  });
  var fold = null;
  list(document.querySelectorAll("table.board td")).some(function (td) {
    var b = td.getBoundingClientRect();
    if (/[0-9]/.test(td.textContent) && b.top >= 0 && b.bottom <= window.innerHeight && b.width > 0) {
      fold = {text: td.textContent, bottom: b.bottom}; return true; }
    return false;
  });
  var boards = list(document.querySelectorAll("table.board[id$='-board']")).map(function (table) {
    var heads = list(table.tHead.rows[0].cells).map(function (th) { return th.textContent; });
    var col = heads.indexOf("top-1 last");
    function read() { return list(table.tBodies[0].rows).map(function (r) {
      return [r.cells[0].textContent, r.cells[col].textContent]; }); }
    var before = read();
    table.tHead.rows[0].cells[col].click();
    var once = read();
    table.tHead.rows[0].cells[col].click();
    return {id: table.id, rows: before, once: once, twice: read()};
  });
  document.body.setAttribute("data-probe", JSON.stringify({plots: plots, fold: fold, boards: boards}));
})();
"""


def chromium(tmp_path: Path, page: Path, size: tuple[int, int], *mode: str) -> subprocess.CompletedProcess:
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--window-size={size[0]},{size[1]}",
        *mode,
        page.as_uri(),
    ]
    env = {**os.environ, "HOME": str(tmp_path)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def dumped(dom: str, attribute: str) -> dict:
    found = re.search(rf'{attribute}="([^"]*)"', dom)
    assert found, f"no {attribute}: the script did not run"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


@pytest.fixture(scope="module")
def render_study(tmp_path_factory) -> Callable[[tuple[int, int]], tuple[Path, dict, dict]]:
    """The study's board generated once; render(size) gives its folder, the page's own check and
    the PROBE's findings at that window size, each size rendered once (one Chromium launch)."""
    tmp = tmp_path_factory.mktemp("study")
    out = tmp / "board"
    generate(STUDY_RUNS, out, use_index=False)  # nothing written into the repository
    page = out / "probed.html"
    page.write_text((out / "index.html").read_text().replace("</body>", f"<script>{PROBE}</script></body>"))
    done: dict[tuple[int, int], tuple[Path, dict, dict]] = {}

    def render(size: tuple[int, int]) -> tuple[Path, dict, dict]:
        if size not in done:
            dom = chromium(tmp, page, size, "--dump-dom").stdout
            done[size] = out, dumped(dom, "data-render-check"), dumped(dom, "data-probe")
        return done[size]

    return render


@needs_chromium
@pytest.mark.parametrize("size", [LAPTOP, (1920, 1080)])
def test_study_page_fits_the_window(tmp_path, size, render_study):
    out, check, _ = render_study(size)
    width = check["viewport"]["width"]
    assert width == size[0]
    tables = {t["id"]: t for t in check["tables"]}
    assert {"s1-board", "s1-confidence", "s2-board", "s2-confidence"} <= set(tables)
    too_wide = {k: round(t["right"]) for k, t in tables.items() if t["right"] > width}
    assert not too_wide, f"tables wider than the {width} px window: {too_wide}"
    assert check["viewport"]["scroll_width"] <= width  # nothing scrolls sideways
    plots = {p["id"]: p for p in check["plots"]}
    assert all(p["drawn"] == p["marks"] > 0 for p in plots.values())
    scatter = [p for k, p in plots.items() if k.startswith("s1-scatter")]
    # rows far below the rest (the defective teacher, TTM at chance) are one mark each on the edge;
    # the other rows draw their seeds and their mean on a shared y-axis
    rows = [r for r in csv.DictReader((out / "leaderboard.csv").open()) if r["arch"] == "resnet10t"]
    far = {rows[i]["label"] for i in outliers([float(r["top1_last_mean"]) for r in rows])}
    off = set(re.findall(r'class="mark outlier"[^>]*><title>(\S+) mean', (out / "index.html").read_text()))
    assert off and off <= far, "the study has rows off the scale, each an outlier"
    on = [r for r in rows if r["label"] not in off]
    assert sum(p["marks"] for p in scatter) == sum(int(r["n_seeds"]) + 1 for r in on) + len(off)
    shot = tmp_path / f"page-{size[0]}x{size[1]}.png"
    chromium(tmp_path, out / "index.html", size, f"--screenshot={shot}")
    assert shot.stat().st_size > 10_000


@needs_chromium
def test_study_page_shows_figures_first(render_study):
    """At 1366 x 768 a figure of the board is in the window as the page opens: the legend is
    folded away and each setting's accuracy table comes right under its heading."""
    out, _, probe = render_study(LAPTOP)
    assert probe["fold"] is not None, "no figure above the fold"
    page = (out / "index.html").read_text()
    assert "<details><summary>How to read it" in page
    assert len(re.findall(r'</h2>\n<div class="scroll">\n<table id="s\d-board"', page)) == 2


@needs_chromium
def test_study_plots_name_every_row_and_no_labels_overlap(render_study):
    """Every row of a setting's accuracy table is in the legend of its scatter and its curves
    (the plots split into panels sharing axes, drawn inside them), no two rows of a plot share
    a colour and no two texts of a plot overlap, the reliability diagrams' included."""
    _, _, probe = render_study(LAPTOP)
    for board in probe["boards"]:
        sid = board["id"].removesuffix("-board")
        labels = sorted(label for label, _ in board["rows"])
        for kind in ("scatter", "curves"):
            panels = [p for p in probe["plots"] if re.fullmatch(rf"{sid}-{kind}(-\d+)?", p["id"])]
            assert sorted(name for p in panels for name in p["legend"]) == labels, (sid, kind)
            assert all(len(set(p["colours"])) == len(p["colours"]) for p in panels)
    for plot in probe["plots"]:
        assert plot["clashes"] == [], (plot["id"], plot["clashes"])
        assert plot["outside"] == [], (plot["id"], plot["outside"])


@needs_chromium
def test_study_board_order_and_sorting(render_study):
    """Rows are the baselines, then by selected top-1, best first, in the CSV, the Markdown and the
    page; a click on "top-1 last" sorts the page by it, best first, a second click worst first."""
    out, _, probe = render_study(LAPTOP)
    table = list(csv.DictReader((out / "leaderboard.csv").open()))
    markdown = (out / "leaderboard.md").read_text()
    for board, arch in zip(probe["boards"], ("resnet10t", "resnet18"), strict=True):
        rows = [r for r in table if r["arch"] == arch]
        bases = [r for r in rows if r["label"] in (r["baseline_ls"], r["baseline_ce"])]
        ranked = [float(r["top1_selected_mean"]) for r in rows[len(bases) :]]
        assert [r["method"] for r in bases] == ["ce", "label_smoothing"] and ranked == sorted(
            ranked, reverse=True
        )
        assert [label for label, _ in board["rows"]] == [r["label"] for r in rows]
        section = markdown.split(f"· {arch} ·")[1].split("### Accuracy")[1].split("###")[0]
        shown = re.findall(r"^\| ([^|]+) \| \S+ \| [^|]+ \| \d+ \|", section, re.M)
        assert [label.replace("\\", "") for label in shown] == [r["label"] for r in rows]
        last = [float(v.split(" ")[0]) for _, v in board["once"]]
        assert last == sorted(last, reverse=True)
        assert [float(v.split(" ")[0]) for _, v in board["twice"]] == sorted(last)
    assert probe["boards"][0]["once"] != probe["boards"][0]["rows"]  # the baselines moved down


def test_off_scale_means_drawn_beyond_the_edge_they_pass():
    """A far-off mean is a triangle on the edge it lies beyond (bottom for low, top for high), its
    value in the legend; an outlier that falls on the others' scale is drawn on it, not on an edge."""
    bulk = [
        ScatterGroup(f"m{i}", "#000", (0.3 + i / 50, 81.0 + i / 3), (("seed 0", 0.3, 81.0 + i / 3),))
        for i in range(6)
    ]
    wide = ScatterGroup("wide", "#444", (0.35, 79.0), (("seed 0", 0.35, 73.5), ("seed 1", 0.35, 84.5)))
    low = ScatterGroup("low", "#111", (0.5, 10.0), (("seed 0", 0.5, 10.0),))
    high = ScatterGroup("high", "#222", (0.4, 99.0), (("seed 0", 0.4, 99.0),))
    inside = ScatterGroup("inside", "#333", (0.45, 74.2), (("seed 0", 0.45, 74.2),))  # on wide's scale
    groups = [*bulk, wide, low, high, inside]
    assert outliers([g.mean[1] for g in groups]) == {7, 8, 9}
    svg = scatter_plot("p", "t", groups, "x", "y")
    tips = {
        name: float(y)
        for y, name in re.findall(r'd="M[^"]* L[^"]* L[\d.]+,([\d.]+) Z"[^>]*><title>(\w+) mean', svg)
    }
    assert set(tips) == {"low", "high"}
    assert tips["low"] == 360 - 52 and tips["high"] == 36  # the bottom and the top edge
    assert "low ▼10.00" in svg and "high ▲99.00" in svg
    assert '<circle class="mark mean"' in svg.split("<title>inside mean")[0].rsplit("\n", 1)[1]


def test_one_epoch_is_singular(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "board"
    for seed in (0, 1):
        write_run(runs, "ce", "ce", seed, [80.0 + seed])
    generate(runs, out)
    assert "· 1 epoch</h2>" in (out / "index.html").read_text()
    assert "· 1 epoch\n" in (out / "leaderboard.md").read_text()


def test_outliers_and_pipeline_text():
    study = [82.81, 82.64, 81.88, 80.69, 81.82, 65.08, 82.39, 82.31]
    assert outliers(study) == {5}
    assert outliers([85.95, 85.56, 83.80]) == set()  # too few to call one an outlier
    assert outliers([80.0, 81.0, 82.0, 83.0]) == set()
    text = pipeline_text('{"augment": {"hflip": true, "crop_padding": 2}, "root": null, "dataset": "x<y"}')
    assert text == (
        "<code>augment.crop_padding</code> 2; <code>augment.hflip</code> on; <code>dataset</code> x&lt;y"
    )


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (scripts/setup.sh --test installs it)"
)
def test_page_with_every_accuracy_column_fits_a_laptop(tmp_path):
    """Rows with a held-out split beside rows without one: the accuracy table has the selected,
    the last and the test-selected columns, and the comparisons and teacher tables their widest
    cells; still no table wider than 1366 px."""
    runs, out = tmp_path / "runs", tmp_path / "board"
    write_holdout_study(runs)
    for seed in (0, 1, 2):
        name = "resnet10t_kd_t1_ls_teacher_from_an_old_sweep"
        write_run(runs, name, "kd_t1_ls_teacher", seed, [70.0, 75.0, 81.0 + seed / 7])
    generate(runs, out)
    proc = chromium(tmp_path, out / "index.html", (1366, 768), "--dump-dom")
    found = re.search(r'data-render-check="([^"]*)"', proc.stdout)
    assert found, "the page's check script did not run"
    check = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    width = check["viewport"]["width"]
    tables = {t["id"]: t for t in check["tables"]}
    assert {"s1-board", "s1-comparisons", "s1-teachers"} <= set(tables)
    assert tables["s1-comparisons"]["rows"] == 2 * 6 - 2  # every row against both baselines
    too_wide = {k: round(t["right"]) for k, t in tables.items() if t["right"] > width}
    assert not too_wide, f"tables wider than the {width} px window: {too_wide}"
    assert check["viewport"]["scroll_width"] <= width
    html = (out / "index.html").read_text()
    assert "top-1 selected" in html and "top-1 best on test" in html and "seeds to resolve" in html
