"""Nightly regression rules on hand-made snapshots, snapshot files, and one real night via the CLI."""

from __future__ import annotations

import math
import statistics

import pyarrow.parquet as pq
import pytest

from harness.config import load_recipe
from harness.leaderboard.stats import pooled_std, throughput
from harness.store.metrics_file import read_metrics
from harness.store.rundir import RunDir
from harness.sweeps.nightly import (
    SNAPSHOT_SCHEMA,
    Finding,
    Policy,
    compare,
    previous_night,
    read_snapshot,
    render_report,
    write_snapshot,
)
from tests.support.recipes import run_cli, tiny_recipe, write_recipe


def snap(group: str, top1: list[float], img_per_s: float = 1000.0, device: str = "NVIDIA H100") -> dict:
    """A snapshot row as `aggregate` writes it, made by hand."""
    return {
        "night": "n",
        "group": group,
        "recipe_name": group.rsplit("-", 1)[0],
        "device_name": device,
        "n": len(top1),
        "seeds": list(range(len(top1))),
        "top1": top1,
        "top1_mean": statistics.fmean(top1),
        "top1_std": statistics.stdev(top1) if len(top1) > 1 else None,
        "img_per_s": [img_per_s] * len(top1),
        "img_per_s_mean": img_per_s,
    }


def only(findings: list[Finding], metric: str) -> Finding:
    [f] = [f for f in findings if f.metric == metric]
    return f


def test_pooled_std_by_hand():
    # a: mean 71, s^2 = (1 + 1) / 1 = 2; b: mean 71, s^2 = (4 + 0 + 4) / 2 = 4
    # pooled: sqrt((1 * 2 + 2 * 4) / (2 + 3 - 2)) = sqrt(10 / 3)
    assert pooled_std([70, 72], [69, 71, 73]) == pytest.approx(math.sqrt(10 / 3))
    assert pooled_std([70], [75]) is None  # one seed each: no spread, no degree of freedom
    assert pooled_std([70], [69, 71, 73]) == pytest.approx(math.sqrt(8 / 2))  # the single seed adds none


def test_drop_beyond_the_seeds_spread_is_a_regression():
    prev = [snap("ce-aaaa", [75.0, 75.4, 74.6])]  # s = 0.4
    now = [snap("ce-aaaa", [73.0, 73.4, 72.6])]  # s = 0.4, mean down by 2.0
    f = only(compare(prev, now), "top1")
    # threshold = max(2 * 0.4, 0.5) = 0.8 < drop 2.0
    assert f.threshold == pytest.approx(0.8) and f.change == pytest.approx(-2.0)
    assert f.regression


def test_noise_within_the_seeds_spread_is_not_flagged():
    prev = [snap("ce-aaaa", [75.0, 76.5, 73.5])]  # s = 1.5
    now = [snap("ce-aaaa", [74.0, 75.5, 72.5])]  # s = 1.5, mean down by 1.0
    f = only(compare(prev, now), "top1")
    assert f.threshold == pytest.approx(3.0)  # max(2 * 1.5, 0.5)
    assert not f.regression
    # a stricter k flags the same drop: max(0.5 * 1.5, 0.5) = 0.75 < 1.0
    assert only(compare(prev, now, Policy(k=0.5)), "top1").regression
    # an improvement is never a regression
    assert not only(compare(now, prev), "top1").regression


def test_single_seed_groups_use_the_floor():
    prev = [snap("ls-bbbb", [80.0])]
    assert not only(compare(prev, [snap("ls-bbbb", [79.6])]), "top1").regression  # 0.4 <= 0.5
    assert only(compare(prev, [snap("ls-bbbb", [79.4])]), "top1").regression  # 0.6 > 0.5


def test_throughput_drop_beyond_tolerance_is_a_regression():
    prev = [snap("kd-cccc", [70.0, 70.0], img_per_s=1000.0)]
    slow = only(compare(prev, [snap("kd-cccc", [70.0, 70.0], img_per_s=850.0)]), "img_per_s")
    assert slow.regression and slow.change == pytest.approx(-0.15)  # 850 < 0.9 * 1000
    ok = only(compare(prev, [snap("kd-cccc", [70.0, 70.0], img_per_s=950.0)]), "img_per_s")
    assert not ok.regression  # -5% is within 10%
    assert only(
        compare(prev, [snap("kd-cccc", [70.0, 70.0], img_per_s=950.0)], Policy(throughput_tolerance=0.04)),
        "img_per_s",
    ).regression
    other = only(compare(prev, [snap("kd-cccc", [70.0, 70.0], 500.0, device="NVIDIA A100")]), "img_per_s")
    assert not other.regression and "device changed" in other.note


def test_new_and_missing_groups_are_listed_not_flagged():
    findings = compare([snap("old-1111", [70.0])], [snap("new-2222", [70.0])])
    assert [(f.group, f.metric, f.regression) for f in findings] == [
        ("new-2222", "new", False),
        ("old-1111", "missing", False),
    ]


def test_report_names_the_regressions():
    prev = [snap("ce-aaaa", [75.0, 75.4, 74.6]), snap("kd-cccc", [70.0], img_per_s=1000.0)]
    now = [snap("ce-aaaa", [73.0, 73.4, 72.6]), snap("kd-cccc", [70.0], img_per_s=800.0)]
    policy = Policy()
    text = render_report("2026-01-02", "2026-01-01", compare(prev, now, policy), None, policy)
    assert text.startswith("# Nightly benchmark 2026-01-02")
    assert "Previous night 2026-01-01" in text and "**2 regressions**" in text
    assert "| ce-aaaa | top1 | 75.00 | 73.00 | -2.00 pts | 0.80 pts | **REGRESSION** |" in text
    assert "| kd-cccc | img_per_s | 1000.00 | 800.00 | -20.0% | 10% | **REGRESSION** |" in text
    quiet = render_report("2026-01-02", "2026-01-01", compare(prev, prev, policy), None, policy)
    assert "No regressions." in quiet and "REGRESSION" not in quiet


def test_snapshots_round_trip_and_the_previous_night_is_the_last_before(tmp_path):
    rows = [snap("ce-aaaa", [75.0, 75.4]), snap("kd-cccc", [70.0], img_per_s=math.nan)]
    for night in ("2026-01-01", "2026-01-03", "2026-01-04"):
        write_snapshot(tmp_path / f"{night}.parquet", rows)
    table = pq.read_table(tmp_path / "2026-01-03.parquet")
    assert table.schema.equals(SNAPSHOT_SCHEMA)
    back = read_snapshot(tmp_path / "2026-01-03.parquet")
    assert back[0]["top1"] == [75.0, 75.4] and back[0]["n"] == 2 and math.isnan(back[1]["img_per_s_mean"])
    assert previous_night(tmp_path, "2026-01-04").stem == "2026-01-03"
    assert previous_night(tmp_path, "2026-01-03").stem == "2026-01-01"
    assert previous_night(tmp_path, "2026-01-01") is None
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


def test_run_throughput_is_images_over_seconds_of_all_epochs():
    # the warm-up epoch counts: it is time the run took (the leaderboard's definition)
    rows = [
        {"epoch": 1, "train_samples": 1000, "epoch_time_s": 10.0, "img_per_s": 100.0},
        {"epoch": 2, "train_samples": 1000, "epoch_time_s": 1.0, "img_per_s": 1000.0},
        {"epoch": 3, "train_samples": 1000, "epoch_time_s": 1.0, "img_per_s": 1000.0},
    ]
    assert throughput(rows) == pytest.approx(3000 / 12)
    # without a time on every epoch: the mean of the per-epoch images/s
    rows[2]["epoch_time_s"] = None
    assert throughput(rows) == pytest.approx(700.0)
    assert throughput([{"epoch": 1, "img_per_s": None}]) is None


@pytest.mark.fashion
@pytest.mark.slow
def test_nightly_cli_flags_a_drop_against_the_previous_night(tmp_path):
    recipe = write_recipe(
        tmp_path / "recipes" / "tiny.yaml",
        tiny_recipe(schedule={"epochs": 1}, data={"train_subset": 128, "val_subset": 64, "batch_size": 32}),
    )
    sweep = tmp_path / "nightly.yaml"
    sweep.write_text("seeds: [0, 1]\nrecipes: [recipes/tiny.yaml]\n")
    root = tmp_path / "nightly"
    group = load_recipe(recipe).group_key()
    # last night, by hand: the same group scored 99% with no spread, on another device
    write_snapshot(root / "history" / "2026-01-01.parquet", [snap(group, [99.0, 99.0], device="other")])
    report = tmp_path / "report.md"
    proc = run_cli(
        "nightly", str(sweep), "--root", str(root), "--night", "2026-01-02", "--report", str(report)
    )
    assert proc.returncode == 1, proc.stderr  # top-1 fell far below 99% +- 0.5
    assert "Traceback" not in proc.stderr
    text = report.read_text()
    assert text == (root / "reports" / "2026-01-02.md").read_text()
    assert "**1 regression**" in text and f"| {group} | top1 | 99.00 |" in text
    assert "not compared: device changed" in text
    [row] = read_snapshot(root / "history" / "2026-01-02.parquet")
    assert row["group"] == group and row["n"] == 2 and row["seeds"] == [0, 1]
    assert row["top1_mean"] == pytest.approx(statistics.fmean(row["top1"]))
    assert row["img_per_s_mean"] > 0 and row["device_name"].startswith("cpu")
    runs = sorted(p.name for p in (root / "2026-01-02").iterdir() if p.name.startswith("tiny-"))
    run_ids = [load_recipe(recipe, [f"seed={s}"]).run_id for s in (0, 1)]
    assert runs == sorted(run_ids)
    # each run's images/s is the leaderboard's: images trained / training seconds
    metrics = [read_metrics(RunDir(root / "2026-01-02", run_id).metrics) for run_id in run_ids]
    expected = [sum(r["train_samples"] for r in m) / sum(r["epoch_time_s"] for r in m) for m in metrics]
    assert row["img_per_s"] == pytest.approx(expected)
    assert row["top1_std"] == pytest.approx(statistics.stdev(row["top1"]))
