"""The nightly history judged as a whole: step fit against brute force, regressions that stay
flagged until fixed or accepted, drift, improvements, set-apart snapshots, rebuild, the trend page.

The nights are a real run folder (the session's tiny teacher run) snapshotted by
`harness nightly rebuild`, then nights made from that snapshot as the nightly writes them, each
with a commit of a throwaway git repository; a bad commit's nights score lower.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import shutil
import statistics
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.sweeps.nightly import Finding, judge, read_snapshot, render_report, write_snapshot
from harness.sweeps.steps import fit_steps
from harness.sweeps.trend import Policy, load_history
from harness.sweeps.trend_page import render_trend_page
from tests.leaderboard.test_leaderboard_page import chromium
from tests.support.marks import CHROMIUM
from tests.support.recipes import SMALL, tiny_recipe, write_recipe


# ------------------------------------------------------------------------------ the fit
def brute_force(values: list[float], weights: list[float], penalty: float) -> tuple[float, list[int]]:
    """The least cost over every partition (2^(n-1) of them), each segment's cost computed from
    its weighted mean directly; returns (cost, the segments' starts)."""
    n, best = len(values), (float("inf"), [])
    for cuts in itertools.product((False, True), repeat=n - 1):
        starts = [0] + [i + 1 for i, c in enumerate(cuts) if c]
        cost = penalty * (len(starts) - 1)
        for a, b in zip(starts, [*starts[1:], n], strict=True):
            w, x = weights[a:b], values[a:b]
            mu = sum(wi * xi for wi, xi in zip(w, x, strict=True)) / sum(w)
            cost += sum(wi * (xi - mu) ** 2 for wi, xi in zip(w, x, strict=True))
        if cost < best[0] - 1e-9:
            best = (cost, starts)
    return best


@pytest.mark.parametrize("seed", range(6))
def test_step_fit_is_the_brute_force_optimum(seed):
    rng = random.Random(seed)
    n = rng.randint(2, 9)
    levels = [rng.choice([60.0, 61.5, 64.0]) for _ in range(3)]
    values = [levels[min(i * 3 // n, 2)] + rng.gauss(0, 0.4) for i in range(n)]
    weights = [rng.uniform(0.5, 8.0) for _ in range(n)]
    penalty = rng.choice([0.5, 2.0, 8.0])
    segments = fit_steps(values, weights, penalty)
    _, starts = brute_force(values, weights, penalty)
    assert [s.start for s in segments] == starts
    assert segments[-1].end == n and all(a.end == b.start for a, b in itertools.pairwise(segments))
    for s in segments:
        w, x = weights[s.start : s.end], values[s.start : s.end]
        assert s.level == pytest.approx(sum(a * b for a, b in zip(w, x, strict=True)) / sum(w))


def test_step_fit_finds_a_clean_step_and_nothing_in_a_flat_series():
    flat = fit_steps([67.0, 67.1, 66.9, 67.0], [16.0] * 4, 2.0)
    assert len(flat) == 1 and flat[0].level == pytest.approx(67.0)
    step = fit_steps([67.0, 67.1, 66.9, 17.6, 17.5], [16.0] * 5, 2.0)
    assert [(s.start, s.end) for s in step] == [(0, 3), (3, 5)]


# ------------------------------------------------------------------------------ nights
def git_commits(path: Path, n: int) -> list[str]:
    """n commits of a throwaway repository, oldest first."""
    path.mkdir(parents=True, exist_ok=True)
    git = ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    out = []
    for i in range(n):
        subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", f"night {i}"], check=True)
        out.append(
            subprocess.run(
                [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
            ).stdout.strip()
        )
    return out


@pytest.fixture
def real_night(tmp_path, teacher_weights):
    """ROOT/2026-01-01/<run> a copy of a real run folder, snapshotted by `harness nightly rebuild`."""
    run = teacher_weights.parent.parent
    root = tmp_path / "nightly"
    shutil.copytree(run, root / "2026-01-01" / run.name)
    result = CliRunner().invoke(main, ["nightly", "rebuild", "--root", str(root)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("2026-01-01: 1 group, 1 runs\n")
    [row] = read_snapshot(root / "history" / "2026-01-01.parquet")
    return root, row


def add_night(root: Path, row: dict, night: str, commit: str, top1: list[float], **extra) -> None:
    """A night as the nightly writes it: the real row with tonight's seeds' top-1 and commit."""
    new = {**row, **extra, "night": night, "git_commit": commit, "n": len(top1), "top1": top1}
    new.update(seeds=list(range(len(top1))), top1_mean=statistics.fmean(top1))
    new["img_per_s"] = [row["img_per_s_mean"]] * len(top1)
    write_snapshot(root / "history" / f"{night}.parquet", [new])


def verdict(root: Path, night: str) -> dict[str, Finding]:
    return {f.metric: f for f in judge(load_history(root / "history"), night)}


HEALTHY = [66.99, 67.21, 66.80]  # three seeds: s = 0.205, the allowance is the floor 0.5
BROKEN = [17.58, 17.90, 17.31]


@pytest.mark.fashion
def test_a_regression_stays_flagged_until_the_code_is_restored(tmp_path, real_night):
    root, row = real_night
    commits = git_commits(tmp_path / "repo", 8)
    nights = [f"2026-01-0{i}" for i in range(2, 10)]
    plan = [HEALTHY] * 4 + [BROKEN, BROKEN, HEALTHY]
    for night, commit, top1 in zip(nights, commits, plan, strict=False):
        add_night(root, row, night, commit, top1)
    # the first bad night and the next one, with the bug still in: both flagged, the same range
    for night in ("2026-01-06", "2026-01-07"):
        f = verdict(root, night)["top1"]
        assert f.regression and f.since == "2026-01-06" and f.good == "2026-01-05"
        assert f.commits == (commits[3], commits[4])  # `git bisect start <bad> <good>`
        assert f.previous == pytest.approx(statistics.fmean(HEALTHY))
        assert f.current == pytest.approx(statistics.fmean(BROKEN))
    # the previous-night rule would have called the second bad night +0.00 ok
    assert verdict(root, "2026-01-07")["top1"].change == pytest.approx(
        statistics.fmean(BROKEN) - 67.0, abs=0.01
    )
    # the code restored: quiet
    back = verdict(root, "2026-01-08")["top1"]
    assert not back.regression and back.since is None
    # the real night through the CLI: exit 1 on a bad night, the report names the commits
    text = render_report(
        "2026-01-07", "2026-01-06", judge(load_history(root / "history"), "2026-01-07"), None, Policy()
    )
    assert f"since 2026-01-06 (after 2026-01-05), commits `{commits[3][:12]}..{commits[4][:12]}`" in text


@pytest.mark.fashion
def test_the_nightly_command_flags_both_nights_of_a_bad_commit(tmp_path, real_night, teacher_weights):
    """`harness nightly SWEEP` on real runs (the session's run folder, which the sweep finds
    complete): three nights of good code 40 points higher, then two of the bad code."""
    root, row = real_night
    commits = git_commits(tmp_path / "repo", 4)
    good = [x + 40.0 for x in row["top1"]]
    for night, commit in zip(["2026-01-01", "2026-01-02", "2026-01-03"], commits, strict=False):
        add_night(root, row, night, commit, good)
    recipe = write_recipe(
        tmp_path / "recipes" / "teacher.yaml", tiny_recipe(data=SMALL, schedule={"epochs": 1})
    )
    sweep = tmp_path / "nightly.yaml"
    sweep.write_text(f"seeds: [0]\nrecipes: [{recipe}]\n")
    run = teacher_weights.parent.parent
    (root / "history" / "2025-12-31.parquet").write_bytes(b"PAR1 cut off by a full disk")
    for night in ("2026-01-04", "2026-01-05"):
        shutil.copytree(run, root / night / run.name)
        result = CliRunner().invoke(main, ["nightly", str(sweep), "--root", str(root), "--night", night])
        assert result.exit_code == 1, result.output
        step = f"since 2026-01-04 (after 2026-01-03), commits `{commits[2][:12]}..{row['git_commit'][:12]}`"
        assert "**1 regression**" in result.output and step in result.output
        assert "1 skipped" in result.output  # the run was found complete: nothing trained
        # the unreadable snapshot: one line the night it is set apart, and the night goes on
        set_apart = "Set apart: 2025-12-31.parquet: set apart to set-apart/ (unreadable:"
        assert (set_apart in result.output) is (night == "2026-01-04")
    assert "REGRESSION" in (root / "reports" / "2026-01-05.md").read_text()
    assert 'class="regression step"' in (root / "reports" / "index.html").read_text()


@pytest.mark.fashion
def test_accept_makes_the_new_level_the_baseline(tmp_path, real_night):
    root, row = real_night
    commits = git_commits(tmp_path / "repo", 4)
    for night, commit, top1 in zip(
        ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"],
        commits,
        [HEALTHY, HEALTHY, BROKEN, BROKEN],
        strict=True,
    ):
        add_night(root, row, night, commit, top1)
    group = row["group"]
    runner = CliRunner()
    bad = runner.invoke(main, ["nightly", "accept", "nosuch-1234", "--reason", "x", "--root", str(root)])
    assert bad.exit_code == 2 and "nosuch-1234: no such group" in bad.output
    assert not (root / "history" / "accepted.jsonl").exists()
    no_reason = runner.invoke(main, ["nightly", "accept", group, "--root", str(root)])
    assert no_reason.exit_code == 2
    done = runner.invoke(
        main, ["nightly", "accept", group, "--reason", "smaller student", "--root", str(root)]
    )
    assert done.exit_code == 0, done.output
    assert f"accepted {group} from 2026-01-03" in done.output
    [record] = [json.loads(line) for line in (root / "history" / "accepted.jsonl").read_text().splitlines()]
    assert (
        record["group"] == group and record["reason"] == "smaller student" and record["by"] and record["at"]
    )
    add_night(root, row, "2026-01-05", commits[3], BROKEN)
    f = verdict(root, "2026-01-05")["top1"]
    assert not f.regression and f.previous == pytest.approx(statistics.fmean(BROKEN))
    history = load_history(root / "history")
    text = render_report("2026-01-05", "2026-01-04", judge(history, "2026-01-05"), None, Policy(), history)
    assert f"Accepted: `{group}` from 2026-01-03 by {record['by']}" in text and "smaller student" in text
    assert "No regressions." in text
    # listed for 30 nights after it was made, then no more
    for day in range(6, 36):
        add_night(root, row, f"2026-01-{day:02d}" if day < 32 else f"2026-02-{day - 31:02d}", "c", BROKEN)
    for last, listed in (("2026-02-02", True), ("2026-02-03", False)):  # accepted on 2026-01-04
        history = load_history(root / "history")
        text = render_report(last, None, judge(history, last), None, Policy(), history)
        assert ("Accepted:" in text) is listed, last


@pytest.mark.fashion
def test_a_slow_drift_is_flagged_once_it_adds_up(tmp_path, real_night):
    root, row = real_night
    commits = git_commits(tmp_path / "repo", 7)
    nights = [f"2026-01-0{i}" for i in range(2, 9)]
    means = [67.0, 67.0, 66.6, 66.2, 65.8, 65.4, 65.0]  # 0.4 points a night, under the 0.5 floor
    add_night(root, row, "2026-01-01", "c0", [66.9, 67.0, 67.1])
    flagged = {}
    for night, commit, m in zip(nights, commits, means, strict=True):
        add_night(root, row, night, commit, [m - 0.1, m, m + 0.1])
        flagged[night] = verdict(root, night)["top1"]
    # night over night, never beyond the floor; against the history, flagged once it adds up
    assert all(abs(a - b) <= 0.4 + 1e-9 for a, b in itertools.pairwise(means))
    # 67.0 -> 66.2 is 0.8 points below the baseline: flagged from the second small drop on
    assert [n for n in nights if flagged[n].regression] == nights[3:]
    for n in nights[3:]:
        assert (flagged[n].good, flagged[n].since) == ("2026-01-04", "2026-01-05")
        assert flagged[n].commits == (commits[2], commits[3]) and flagged[n].previous == pytest.approx(67.0)


@pytest.mark.fashion
def test_an_improvement_is_reported_and_never_fails(tmp_path, real_night):
    root, row = real_night
    commits = git_commits(tmp_path / "repo", 3)
    add_night(root, row, "2026-01-01", "c0", HEALTHY)
    for night, commit, top1 in zip(
        ["2026-01-02", "2026-01-03", "2026-01-04"],
        commits,
        [HEALTHY, [70.0, 70.2, 69.8], [70.1, 70.0, 69.9]],
        strict=True,
    ):
        add_night(root, row, night, commit, top1)
    f = verdict(root, "2026-01-04")["top1"]
    assert (
        f.improvement
        and not f.regression
        and f.since == "2026-01-03"
        and f.commits == (commits[0], commits[1])
    )
    # then back to the old level: a regression against the improved baseline
    add_night(root, row, "2026-01-05", "c5", HEALTHY)
    assert verdict(root, "2026-01-05")["top1"].regression


@pytest.mark.fashion
def test_one_lucky_night_does_not_raise_the_bar(tmp_path, real_night):
    root, row = real_night
    lucky = [x + 3.0 for x in HEALTHY]
    for i, top1 in enumerate([HEALTHY, HEALTHY, lucky, HEALTHY, HEALTHY], 2):
        add_night(root, row, f"2026-01-0{i}", f"c{i}", top1)
    spike = verdict(root, "2026-01-04")["top1"]
    assert spike.improvement and not spike.regression  # reported the night it happens
    for night in ("2026-01-05", "2026-01-06"):  # held one night only: the baseline stays
        f = verdict(root, night)["top1"]
        assert not f.regression and not f.improvement
        assert f.previous == pytest.approx(statistics.fmean(HEALTHY))


@pytest.mark.fashion
def test_throughput_is_judged_on_one_device(tmp_path, real_night):
    root, row = real_night
    speed = row["img_per_s_mean"]
    add_night(root, row, "2026-01-02", "c2", HEALTHY, img_per_s_mean=speed)
    for night in ("2026-01-03", "2026-01-04"):
        add_night(root, row, night, "c", HEALTHY)
        snap = read_snapshot(root / "history" / f"{night}.parquet")[0]
        snap["img_per_s"] = [0.5 * speed] * 3
        write_snapshot(root / "history" / f"{night}.parquet", [snap])
    f = verdict(root, "2026-01-04")["img_per_s"]
    assert f.regression and f.since == "2026-01-03" and f.change == pytest.approx(-0.5)
    other = read_snapshot(root / "history" / "2026-01-04.parquet")[0]
    write_snapshot(root / "history" / "2026-01-04.parquet", [{**other, "device_name": "NVIDIA H100"}])
    moved = verdict(root, "2026-01-04")["img_per_s"]
    assert not moved.regression and "device changed" in moved.note


@pytest.mark.fashion
def test_a_corrupt_snapshot_is_set_apart_and_rebuild_restores_it(tmp_path, real_night):
    root, row = real_night
    add_night(root, row, "2026-01-02", "c2", HEALTHY)
    add_night(root, row, "2026-01-03", "c3", HEALTHY)
    good = (root / "history" / "2026-01-01.parquet").read_bytes()
    (root / "history" / "2026-01-01.parquet").write_bytes(good[: len(good) // 2])  # truncated
    (root / "history" / "2026-01-02.parquet").write_bytes(b"")
    history = load_history(root / "history")
    assert history.nights == ["2026-01-03"]
    assert [line.split(":")[0] for line in history.set_apart] == ["2026-01-01.parquet", "2026-01-02.parquet"]
    assert all("set apart to set-apart/" in line and "\n" not in line for line in history.set_apart)
    assert (root / "history" / "set-apart" / "2026-01-01.parquet").exists()
    assert [f.metric for f in judge(history, "2026-01-03")] == ["new"]  # the night goes on
    result = CliRunner().invoke(main, ["nightly", "rebuild", "--root", str(root)])
    assert result.exit_code == 0, result.output
    assert read_snapshot(root / "history" / "2026-01-01.parquet") == [row]
    empty = CliRunner().invoke(main, ["nightly", "rebuild", "--root", str(tmp_path / "none")])
    assert empty.exit_code == 2 and "no night folder with a completed run" in empty.output


# ------------------------------------------------------------------------------ the page
def page_history(tmp_path: Path, root: Path, row: dict) -> list[str]:
    commits = git_commits(tmp_path / "repo", 9)
    plan = [HEALTHY] * 4 + [BROKEN] * 2 + [HEALTHY] * 3
    for i, (commit, top1) in enumerate(zip(commits, plan, strict=True)):
        device = "NVIDIA H100" if i >= 7 else row["device_name"]
        add_night(root, row, f"2026-01-{i + 1:02d}", commit, top1, device_name=device)
    return commits


@pytest.mark.fashion
def test_trend_page_is_a_function_of_the_history(tmp_path, real_night):
    root, row = real_night
    commits = page_history(tmp_path, root, row)
    page = render_trend_page(load_history(root / "history"))
    assert page == render_trend_page(load_history(root / "history"))  # byte-identical
    assert page.count('class="mark"') == 2 * 9 and "<script" in page and "http" not in page
    assert f"commit {commits[3][:12]}" in page and 'class="device"' in page
    # the fixed regression is still marked where it began and ended, tonight is quiet
    assert page.count('class="regression step"') == 1 and "regression from 2026-01-05" in page
    assert page.count('class="improvement step"') == 1 and "improvement from 2026-01-07" in page
    # regenerated by rebuild, byte-identical to the page of the same history
    CliRunner().invoke(main, ["nightly", "rebuild", "--root", str(root)])
    assert (root / "reports" / "index.html").read_text() == render_trend_page(load_history(root / "history"))


@pytest.mark.fashion
@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (scripts/setup.sh --test installs it)"
)
def test_trend_page_marks_the_regression_and_fits_a_laptop(tmp_path, real_night):
    root, row = real_night
    page_history(tmp_path, root, row)
    add_night(root, row, "2026-01-10", "cx", BROKEN, device_name="NVIDIA H100")
    out = root / "reports" / "index.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_trend_page(load_history(root / "history")))
    assert 'class="regression step"' in out.read_text()
    proc = chromium(tmp_path, out, (1366, 768), "--dump-dom")
    found = re.search(r'data-render-check="([^"]*)"', proc.stdout)
    assert found, "the page's check script did not run"
    check = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert check["viewport"]["scroll_width"] <= 1366
    plots = check["plots"]
    assert len(plots) == 2 and all(p["drawn"] == p["marks"] == 10 for p in plots)
    assert all(p["width"] <= 700 for p in plots)
