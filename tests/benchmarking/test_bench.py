"""The step benchmark runs every case side by side and reports ratios against CE (no timing asserts)."""

from __future__ import annotations

import math
import time

import pyarrow.parquet as pq
import pytest

from harness.benchmarking import epochs, report, steps
from harness.benchmarking.timing import interleaved
from tests.support.recipes import run_cli

pytestmark = pytest.mark.slow


def test_step_benchmark_cases_and_ratios(tmp_path):
    cfg = steps.StepConfig(
        arch="test_resnet", teacher_arch="test_resnet", batch_size=16, image_size=16, rounds=2, steps=1
    )
    rows = steps.run(cfg)
    by_case = {r["case"]: r for r in rows}
    assert set(by_case) == {
        "bare",
        "ce",
        "label_smoothing",
        "tfkd_reg",
        "kd_live",
        "kd_cached",
        "ce_tracked",  # the trackers' packages are in the dev extra
        "harness_overhead",
        *steps.method_cases(),  # a row per other registered strategy
    }
    assert by_case["ce"]["ratio"] == 1.0
    for name in ("bare", "label_smoothing", "tfkd_reg", "kd_live", "kd_cached", "ce_tracked"):
        row = by_case[name]
        assert row["median_s"] > 0 and math.isclose(row["ratio"], row["median_s"] / by_case["ce"]["median_s"])
        assert math.isclose(row["img_per_s"], 16 / row["median_s"])
    overhead = by_case["harness_overhead"]
    assert math.isclose(overhead["ratio"], by_case["ce"]["median_s"] / by_case["bare"]["median_s"])
    for name, (_, needs_teacher) in steps.method_cases().items():
        row, base = by_case[name], by_case["kd_live" if needs_teacher else "ce"]
        assert row["baseline"] == base["case"] and math.isclose(
            row["ratio"], row["median_s"] / base["median_s"]
        )
    path = report.write(rows, tmp_path, "steps")
    assert pq.read_table(path).num_rows == len(rows)
    assert "| kd_cached |" in report.markdown(rows, ["case", "ratio"])


def test_a_case_that_reports_its_own_seconds_is_timed_by_them():
    """An epoch case returns the runner's epoch time: the rounds sum it, not the call's wall time."""
    timings = interleaved({"own": lambda: 0.25, "wall": lambda: None}, rounds=2, work=3, warmup=0)
    assert timings["own"].rounds == [0.75, 0.75] and timings["own"].median == 0.25
    assert all(0 < t < 0.5 for t in timings["wall"].rounds)


@pytest.mark.fashion
def test_epoch_suite_through_harness_bench(tmp_path):
    """`harness bench --suite epoch --quick --clock cpu`: its four cases, its ratios, its Parquet."""
    proc = run_cli(
        "bench", "--suite", "epoch", "--quick", "--clock", "cpu", "--out", str(tmp_path), check=True
    )
    assert "| harness_speed |" in proc.stdout
    by_case = {r["case"]: r for r in pq.read_table(tmp_path / "epoch.parquet").to_pylist()}
    assert set(by_case) == {"bare", "bare_loader", "harness", "harness_nondet", "harness_speed"}
    bare = by_case["bare"]["median_s"]
    for name in ("bare", "bare_loader", "harness", "harness_nondet"):
        row = by_case[name]
        assert row["median_s"] > 0 and math.isclose(row["ratio"], row["median_s"] / bare)
        assert math.isclose(row["img_per_s"], 256 / row["median_s"]) and row["rounds"] == 2
    assert math.isclose(by_case["harness_speed"]["ratio"], bare / by_case["harness"]["median_s"])
    assert "cpu s" in by_case["harness"]["detail"]


@pytest.mark.fashion
def test_harness_epoch_is_the_runners_epoch(tmp_path):
    """The harness case trains with the real Trainer.fit and times a span inside its epoch_time_s."""
    cfg = epochs.EpochConfig(arch="test_resnet", images=128, batch_size=64, val_images=64)
    case = epochs.HarnessEpoch(epochs.recipe(cfg), tmp_path, time.perf_counter)
    for call in range(2):
        seconds = case()
        row = case.trainer.rows[-1]
        assert 0 < seconds <= row["epoch_time_s"] and row["train_samples"] == 128
        assert len(case.trainer.rows) == call + 1 and case.trainer.step == 2 * (call + 1)


@pytest.mark.ffcv
@pytest.mark.timeout(180)
def test_loader_benchmark_runs_as_harness_bench_loads_it(tmp_path):
    """`harness bench --suite loader` runs the package's own module (no source tree needed)."""
    from harness.benchmarking import loader

    out = tmp_path / "loader.parquet"
    args = [
        "--images",
        "64",
        "--repeats",
        "1",
        "--sizes",
        "64",
        "--work-dir",
        str(tmp_path),
        "--out",
        str(out),
    ]
    assert loader.main(args) == 0
    table = pq.read_table(out).to_pylist()
    assert {r["pipeline"] for r in table} >= {"torchvision-v2", "ffcv"}
    assert all(r["median_img_s"] > 0 for r in table)


@pytest.mark.fashion
def test_holdout_suite_through_harness_bench(tmp_path):
    """`harness bench --suite holdout --quick --clock cpu`: an epoch with and without the held-out
    split over the same number of trained images, and the share of the difference its pass explains."""
    proc = run_cli(
        "bench", "--suite", "holdout", "--quick", "--clock", "cpu", "--out", str(tmp_path), check=True
    )
    assert "| holdout_overhead |" in proc.stdout
    by_case = {r["case"]: r for r in pq.read_table(tmp_path / "holdout.parquet").to_pylist()}
    assert set(by_case) == {"plain", "holdout", "holdout_pass", "holdout_overhead"}
    plain = by_case["plain"]["median_s"]
    for name in ("plain", "holdout", "holdout_pass"):
        assert by_case[name]["median_s"] > 0 and math.isclose(
            by_case[name]["ratio"], by_case[name]["median_s"] / plain
        )
    extra = by_case["holdout"]["median_s"] - plain
    assert math.isclose(by_case["holdout_overhead"]["ratio"], extra / by_case["holdout_pass"]["median_s"])
    assert "6000 held out" in by_case["holdout"]["detail"]


def test_board_suite_through_harness_bench(tmp_path):
    """`harness bench --suite board --quick`: real run files read alone and through the leaderboard."""
    proc = run_cli("bench", "--suite", "board", "--quick", "--out", str(tmp_path), check=True)
    assert "| generate |" in proc.stdout
    by_case = {r["case"]: r for r in pq.read_table(tmp_path / "board.parquet").to_pylist()}
    assert set(by_case) == {"read", "generate", "cold_16", "warm_16", "changed_16"}
    read = by_case["read"]["median_s"]
    assert by_case["generate"]["median_s"] > 0 and math.isclose(
        by_case["generate"]["ratio"], by_case["generate"]["median_s"] / read
    )
    assert by_case["generate"]["detail"].startswith("16 runs (2 settings x 4 rows x 2 seeds)")
    cold = by_case["cold_16"]["median_s"]  # the run index: every leaderboard used all 16 runs
    for case in ("warm_16", "changed_16"):
        assert by_case[case]["baseline"] == "cold_16"
        assert math.isclose(by_case[case]["ratio"], by_case[case]["median_s"] / cold)
    assert by_case["changed_16"]["detail"].startswith("16 runs (2 settings x 4 rows x 2 seeds), 1 touched")


def test_tune_suite_through_harness_bench(tmp_path):
    """The tune suite of `harness bench`: the driver's ask+tell and trials.parquet per trial."""
    from harness.benchmarking.tune import TuneBenchConfig, run

    rows = {r["case"]: r for r in run(TuneBenchConfig(trials=4))}
    assert set(rows) == {"ask+tell", "trials.parquet", "per trial"} and rows["per trial"]["rounds"] == 4
    whole = rows["per trial"]["median_s"]
    assert 0 < rows["ask+tell"]["median_s"] <= whole and rows["trials.parquet"]["median_s"] > 0
    assert math.isclose(rows["ask+tell"]["ratio"], rows["ask+tell"]["median_s"] / whole)
