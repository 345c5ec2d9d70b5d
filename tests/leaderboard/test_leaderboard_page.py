"""The committed study's index.html as a researcher reads it, in headless Chromium at laptop and
desktop sizes: no table wider than the window, every plot drawn; a screenshot of each size."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from harness.leaderboard import generate
from harness.leaderboard.html_page import pipeline_text
from harness.leaderboard.svg import outliers
from tests.leaderboard.test_leaderboard import write_run
from tests.leaderboard.test_verdicts import write_holdout_study
from tests.support.marks import CHROMIUM
from tests.support.recipes import REPO

STUDY_RUNS = REPO / "leaderboard" / "runs"


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


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (scripts/setup.sh --test installs it)"
)
@pytest.mark.parametrize("size", [(1366, 768), (1920, 1080)])
def test_study_page_fits_the_window(tmp_path, size):
    out = tmp_path / "board"
    generate(STUDY_RUNS, out)
    proc = chromium(tmp_path, out / "index.html", size, "--dump-dom")
    found = re.search(r'data-render-check="([^"]*)"', proc.stdout)
    assert found, "the page's check script did not run"
    check = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    width = check["viewport"]["width"]
    assert width == size[0]
    tables = {t["id"]: t for t in check["tables"]}
    assert {"s1-board", "s1-confidence", "s2-board", "s2-confidence"} <= set(tables)
    too_wide = {k: round(t["right"]) for k, t in tables.items() if t["right"] > width}
    assert not too_wide, f"tables wider than the {width} px window: {too_wide}"
    assert check["viewport"]["scroll_width"] <= width  # nothing scrolls sideways
    plots = {p["id"]: p for p in check["plots"]}
    assert all(p["drawn"] == p["marks"] > 0 for p in plots.values())
    # rows far below the rest (the defective teacher, TTM at chance) are one mark each on the edge;
    # the other rows draw their seeds and their mean on a shared y-axis
    rows = [r for r in csv.DictReader((out / "leaderboard.csv").open()) if r["arch"] == "resnet10t"]
    off = outliers([float(r["top1_last_mean"]) for r in rows])
    assert off, "the study has rows off the scale"
    on = [r for i, r in enumerate(rows) if i not in off]
    assert plots["s1-scatter"]["marks"] == sum(int(r["n_seeds"]) + 1 for r in on) + len(off)
    shot = tmp_path / f"page-{size[0]}x{size[1]}.png"
    chromium(tmp_path, out / "index.html", size, f"--screenshot={shot}")
    assert shot.stat().st_size > 10_000


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
