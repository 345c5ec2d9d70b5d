"""The leaderboard on real metrics.parquet files written with harness.store.metrics_file.write_metrics.

Values are chosen so that the arithmetic is visible: e.g. CE seeds end at 80, 82, 84 (mean 82,
sample std sqrt((4 + 0 + 4) / 2) = 2).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from harness.config.loading import from_mapping
from harness.leaderboard import MARKER, OUTPUT_FILES, LeaderboardError, generate
from harness.leaderboard.aggregate import METHOD_ORDER, build_settings
from harness.leaderboard.baselines import BASELINES
from harness.leaderboard.reference import RESULT_COLUMNS, load_references
from harness.leaderboard.runs import load_runs
from harness.leaderboard.stats import mean, sample_std, t_quantile, welch_interval
from harness.metrics.columns import SCHEMA
from harness.store.metrics_file import write_metrics
from harness.strategies import available
from tests.support.marks import CHROMIUM
from tests.support.recipes import REPO, run_cli


# ------------------------------------------------------------------------------ run folders
def run_id_for(recipe: str, seed: int) -> str:
    return f"{recipe}-s{seed}-{hashlib.sha256(f'{recipe}/{seed}'.encode()).hexdigest()[:8]}"


def write_run(
    runs_dir: Path,
    recipe: str,
    method: str,
    seed: int,
    top1: list[float],
    *,
    setting: str = "setting-a",
    dataset: str = "fashion_mnist",
    arch: str = "resnet18",
    epochs: int | None = None,
    status: str = "completed",
    params: dict | None = None,
    teacher: str | None = None,
    teacher_arch: str | None = None,
    holdout: list[float] | None = None,
    folder: str | None = None,
    run_id: str | None = None,
    data_pipeline: str | None = None,
    **last: Any,
) -> Path:
    """A run folder whose metrics.parquet has one row per value in `top1` (epochs 1, 2, ...), with
    the held-out top-1 of each epoch from `holdout` (no held-out split without it); `last` sets
    columns of the last row."""
    run_id = run_id or run_id_for(recipe, seed)
    rows = []
    for i, t in enumerate(top1):
        rows.append(
            dict.fromkeys(SCHEMA.names)  # write_metrics wants every column: the rest are null
            | {
                "run_id": run_id,
                "recipe_name": recipe,
                "method": method,
                "strategy": "kd" if teacher else method,
                "strategy_params": json.dumps(params or {}),
                "dataset": dataset,
                "arch": arch,
                "seed": seed,
                "setting_key": setting,
                "data_pipeline": data_pipeline
                or json.dumps({"dataset": dataset, "augment": {"hflip": True}}),
                "epochs": epochs or len(top1),
                "epoch": i + 1,
                "eval_split": "test",
                "top1": t,
                "top5": 99.0,
                "nll": 0.5,
                "ece": 0.05,
                "entropy": 1.0,
                "max_prob": 0.7,
                "stability": 0.9,
                "reliability_count": [10.0, 0.0, 30.0],
                "reliability_confidence": [0.2, None, 0.9],
                "reliability_accuracy": [0.1, None, 0.8],
                "train_samples": 1000,
                "epoch_time_s": 2.0,
                "img_per_s": 500.0,
                "teacher_arch": teacher_arch,
                "teacher_source": teacher,
                "teacher_top1": 90.0 if teacher else None,
                "teacher_entropy": 0.2 if teacher else None,
                "status": status,
            }
        )
        if holdout is not None:
            rows[-1] |= {
                "holdout_hash": "0123456789abcdef",
                "holdout_samples": 100,
                "holdout_top1": holdout[i],
            }
    rows[-1].update(last)
    path = runs_dir / (folder or run_id) / "metrics.parquet"
    write_metrics(path, rows)
    return path.parent


def write_study(runs_dir: Path) -> None:
    """Setting A: CE, LS, KD (T 4, from the CE run of seed 0) and KD (T 1), 3 seeds each, 2 epochs.

    Setting B (another architecture): CE and KD from a weights file, one seed each, no LS.
    """
    ce_first = [81.0, 80.0, 85.0]  # epoch 1; best epochs: 81 (ep 1), 82 (ep 2), 85 (ep 1)
    for seed, (first, last) in enumerate(zip(ce_first, [80.0, 82.0, 84.0], strict=True)):
        write_run(runs_dir, "fm_ce", "ce", seed, [first, last], entropy=0.5, max_prob=0.8)
    for seed, last in enumerate([83.0, 85.0, 87.0]):
        write_run(runs_dir, "fm_ls", "label_smoothing", seed, [70.0, last], entropy=1.2, max_prob=0.6)
    teacher = run_id_for("fm_ce", 0)
    for seed, last in enumerate([86.0, 87.0, 88.0]):
        kw = {"teacher": teacher, "teacher_arch": "resnet18", "entropy": 0.3, "max_prob": 0.9}
        write_run(runs_dir, "fm_kd", "kd", seed, [70.0, last], params={"temperature": 4.0}, **kw)
        write_run(runs_dir, "fm_kd_t1", "kd", seed, [70.0, last - 1], params={"temperature": 1.0}, **kw)
    write_run(runs_dir, "b_ce", "ce", 0, [50.0, 60.0], setting="setting-b", arch="test_resnet")
    write_run(
        runs_dir,
        "b_kd",
        "kd",
        0,
        [50.0, 61.0],
        setting="setting-b",
        arch="test_resnet",
        teacher="weights/teacher.pt",
        teacher_arch="resnet50",
    )


def read_table(out: Path) -> dict[tuple[str, str], dict[str, Any]]:
    rows = pq.read_table(out / "leaderboard.parquet").to_pylist()
    return {(r["setting_key"], r["label"]): r for r in rows}


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every run file's bytes and mtime (the run index, a cache in `.index/`, aside)."""
    paths = sorted(folder.rglob("*"))
    files = (p for p in paths if p.is_file() and ".index" not in p.relative_to(folder).parts)
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in files}


# ------------------------------------------------------------------------------ statistics
def test_t_quantile_against_closed_forms_and_tables():
    p = 0.975
    assert t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-12)  # Cauchy: 12.706
    assert t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-12)  # 4.303
    for df, table in ((5, 2.570582), (10, 2.228139), (30, 2.042272), (120, 1.979930)):
        assert t_quantile(p, df) == pytest.approx(table, abs=1e-6)
    assert t_quantile(p, 1e8) == pytest.approx(1.959964, abs=1e-6)  # the normal quantile
    assert t_quantile(0.025, 10) == pytest.approx(-2.228139, abs=1e-6)
    assert t_quantile(0.995, 4) == pytest.approx(4.604095, abs=1e-6)


def test_t_quantile_matches_numerical_integration_at_fractional_df():
    df = 50 / 17  # the Welch df of the study below
    q = t_quantile(0.975, df)

    def density(x: float) -> float:
        c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
        return c * (1 + x * x / df) ** (-(df + 1) / 2)

    n = 2000  # Simpson's rule on [0, q]: P(0 < T < q) must be 0.475
    h = q / n
    area = density(0) + density(q) + sum((4 if i % 2 else 2) * density(i * h) for i in range(1, n))
    assert area * h / 3 == pytest.approx(0.475, abs=1e-9)


def test_mean_std_and_welch_by_hand():
    assert mean([80, 82, 84]) == 82 and sample_std([80, 82, 84]) == pytest.approx(2.0)  # sqrt(8/2)
    assert sample_std([5.0]) is None and mean([]) is None
    assert mean([1.0, None, float("nan"), 3.0]) == 2.0  # missing values are skipped
    # KD [86, 87, 88] (var 1) vs LS [83, 85, 87] (var 4): diff 2, se^2 = 1/3 + 4/3 = 5/3,
    # df = (5/3)^2 / ((1/3)^2 / 2 + (4/3)^2 / 2) = (25/9) / (17/18) = 50/17
    w = welch_interval([86, 87, 88], [83, 85, 87])
    assert w.diff == pytest.approx(2.0) and w.df == pytest.approx(50 / 17)
    half = t_quantile(0.975, 50 / 17) * math.sqrt(5 / 3)
    assert (w.lo, w.hi) == (pytest.approx(2 - half), pytest.approx(2 + half))
    assert 3.2 < t_quantile(0.975, 50 / 17) < 3.25 and w.status == "not significant"
    assert welch_interval([86, 87, 88], [80, 82, 84]).status == "significant"  # 5 -/+ 4.16
    one = welch_interval([86.0], [80, 82, 84])
    assert one.status == "not computable" and one.diff == pytest.approx(4.0) and one.lo is None
    flat = welch_interval([1.0, 1.0], [0.0, 0.0])
    assert flat.status == "not computable" and "variance" in flat.reason


# ------------------------------------------------------------------------------ aggregation
def test_baselines_are_registered_strategies_listed_first():
    kinds = [b.kind for b in BASELINES]
    assert len(set(kinds)) == len(kinds) and all(re.fullmatch(r"[a-z]+", k) for k in kinds)
    assert {b.method for b in BASELINES} <= set(available())
    assert set(METHOD_ORDER[: len(BASELINES)]) == {b.method for b in BASELINES}


def test_aggregation_by_hand(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "board"
    write_study(runs)
    result = generate(runs, out)
    assert result.runs_used == 14 and result.set_apart == ()
    assert [f.name for f in result.files] == list(OUTPUT_FILES)
    assert [(s.key, s.rows, s.runs, s.has_ls_baseline) for s in result.settings] == [
        ("setting-a", 4, 12, True),
        ("setting-b", 2, 2, False),
    ]
    table = read_table(out)
    # rows: one per method and variant; the two KD temperatures are told apart in the label
    assert sorted(label for key, label in table if key == "setting-a") == [
        "ce",
        "kd temperature=1.0",
        "kd temperature=4.0",
        "label_smoothing",
    ]
    ce, ls = table["setting-a", "ce"], table["setting-a", "label_smoothing"]
    kd = table["setting-a", "kd temperature=4.0"]
    assert ce["n_seeds"] == 3 and ce["seeds"] == [0, 1, 2]
    assert ce["top1_last_mean"] == pytest.approx(82.0) and ce["top1_last_std"] == pytest.approx(2.0)
    # best epochs 81, 82, 85: mean 82.667, std sqrt(((81-m)^2 + (82-m)^2 + (85-m)^2) / 2)
    m = (81 + 82 + 85) / 3
    # no held-out split: no selected figure; the best epoch picked on the test split, labelled so
    assert ce["top1_selected_mean"] is None and ce["selected_epoch_mean"] is None
    assert ce["top1_best_on_test_mean"] == pytest.approx(m)
    assert ce["top1_best_on_test_std"] == pytest.approx(
        math.sqrt(((81 - m) ** 2 + (82 - m) ** 2 + (85 - m) ** 2) / 2)
    )
    assert ce["best_epoch_on_test_mean"] == pytest.approx((1 + 2 + 1) / 3)
    assert kd["top1_last_std"] == pytest.approx(1.0) and kd["top1_best_on_test_mean"] == pytest.approx(87.0)
    # ce - LS: differences -3, -3, -3 (no variance): not computable, not in the LS family of 2
    assert ce["gain_ls_status"] == "not computable" and kd["gain_ls_family"] == 2
    # gain over LS: 87 - 85 = 2 on the last epoch, Welch df 50/17; the seeds pair: per-seed
    # differences 3, 2, 1 (mean 2, sd 1), paired interval 2 -/+ t(0.975, 2) / sqrt(3)
    half = t_quantile(0.975, 50 / 17) * math.sqrt(1 / 3 + 4 / 3)
    paired_half = t_quantile(0.975, 2) / math.sqrt(3)
    assert kd["gain_ls_on"] == "last" and kd["gain_ls_test"] == "paired" and kd["gain_ls_pairs"] == 3
    assert kd["gain_ls"] == pytest.approx(2.0) and kd["gain_ls_df"] == pytest.approx(50 / 17)
    assert kd["gain_ls_lo"] == pytest.approx(2 - half) and kd["gain_ls_hi"] == pytest.approx(2 + half)
    assert kd["gain_ls_paired"] == pytest.approx(2.0)
    assert kd["gain_ls_paired_lo"] == pytest.approx(2 - paired_half)
    assert kd["gain_ls_status"] == "not significant"
    # over CE: differences 6, 5, 4: 5 -/+ 2.48, p = 0.013; Holm over the 3 CE comparisons (LS's
    # differences are 3, 3, 3: no variance, not computable, not in the family)
    assert kd["gain_ce"] == pytest.approx(5.0) and kd["gain_ce_paired_lo"] == pytest.approx(5 - paired_half)
    assert kd["gain_ce_family"] == 2 and kd["gain_ce_p_holm"] == pytest.approx(2 * kd["gain_ce_p"])
    assert kd["gain_ce_status"] == "significant"
    assert ls["gain_ce_status"] == "not computable" and ls["gain_ce_paired_p"] is None
    assert ls["gain_ls_status"] == "baseline" and ls["gain_ls"] is None
    assert ls["gain_ce"] == pytest.approx(3.0) and ce["gain_ce_status"] == "baseline"
    assert kd["baseline_ls"] == "label_smoothing" and kd["baseline_ce"] == "ce"
    # Sultan: LS raises entropy over CE (1.2 - 0.5), KD lowers it (0.3 - 0.5)
    assert ls["entropy_delta_ce"] == pytest.approx(0.7) and kd["entropy_delta_ce"] == pytest.approx(-0.2)
    assert ls["max_prob_delta_ce"] == pytest.approx(-0.2) and kd["max_prob_delta_ce"] == pytest.approx(0.1)
    assert ce["entropy_delta_ce"] is None
    # throughput: 2 epochs x 1000 images / (2 x 2 s) = 500 img/s; teacher columns per row
    assert ce["img_per_s_mean"] == pytest.approx(500.0) and ce["img_per_s_std"] == pytest.approx(0.0)
    assert kd["teacher"] == "fm_ce" and kd["teacher_method"] == "ce" and kd["teacher_top1_mean"] == 90.0
    assert ce["teacher"] is None and ce["teacher_top1_mean"] is None
    # a setting without LS: no LS gain; one seed per side: the CE gain is not computable
    b_kd = table["setting-b", "kd"]
    assert b_kd["gain_ls_status"] == "no baseline" and b_kd["baseline_ls"] is None
    assert b_kd["gain_ce"] == pytest.approx(1.0) and b_kd["gain_ce_status"] == "not computable"
    assert b_kd["top1_last_std"] is None and b_kd["teacher"] == "weights/teacher.pt"
    # numbers stay numbers, in the Parquet and in the CSV
    schema = pq.read_schema(out / "leaderboard.parquet")
    assert schema.field("top1_last_mean").type == pa.float64() and schema.field("n_seeds").type == pa.int64()
    with open(out / "leaderboard.csv", newline="") as fh:
        first = next(csv.DictReader(fh))
    assert first["label"] == "ce" and float(first["top1_last_mean"]) == 82.0
    assert first["seeds"] == "0;1;2" and first["gain_ce_status"] == "baseline" and first["gain_ce"] == ""
    md = (out / "leaderboard.md").read_text()
    assert "No label-smoothing baseline in this setting" in md
    assert "82.00 ± 2.00" in md and "top-1 last" in md and "top-1 best on test" in md
    assert "| top-1 selected |" not in md  # no run has a held-out split
    assert f"+2.00 \\[{2 - paired_half:+.2f}, {2 + paired_half:+.2f}\\] ns, \\~" in md
    assert f"+5.00 \\[{5 - paired_half:+.2f}, {5 + paired_half:+.2f}\\]\\*" in md
    assert (
        "Gains compare top-1 at the last epoch" in md and "2 comparisons with LS; 2 comparisons with CE" in md
    )


def test_reliability_and_curves_pool_over_seeds(tmp_path):
    runs = tmp_path / "runs"
    # seed 0: bin 0 holds 10 at conf .2 acc .1; seed 1: bin 0 holds 30 at conf .4 acc .5
    for seed, top1, counts, conf, acc in (
        (0, [50.0, 60.0], [10.0, 0.0], [0.2, None], [0.1, None]),
        (1, [54.0, 70.0], [30.0, 5.0], [0.4, 0.9], [0.5, 1.0]),
    ):
        bins = {"reliability_count": counts, "reliability_confidence": conf, "reliability_accuracy": acc}
        write_run(runs, "r", "ce", seed, top1, **bins)
    settings, _ = build_settings(load_runs(runs)[0])
    (row,) = settings[0].rows
    counts, conf, acc = row.reliability()
    assert counts == [40.0, 5.0]
    assert conf[0] == pytest.approx((10 * 0.2 + 30 * 0.4) / 40) and acc[0] == pytest.approx(
        (10 * 0.1 + 30 * 0.5) / 40
    )
    assert conf[1] == pytest.approx(0.9) and acc[1] == pytest.approx(1.0)
    assert row.curve() == [(1, 52.0, 2), (2, 65.0, 2)]


def test_rows_split_by_teacher_and_baseline_choice(tmp_path):
    runs = tmp_path / "runs"
    for seed in (0, 1):
        write_run(runs, "t_ce", "ce", seed, [60.0, 70.0])
        write_run(runs, "t_ls", "label_smoothing", seed, [60.0, 71.0 + seed], params={"epsilon": 0.1})
        write_run(runs, "t_ls2", "label_smoothing", seed, [60.0, 90.0 + seed], params={"epsilon": 0.2})
        # each student seed distils from the teacher run of its own seed: one row per teacher recipe
        for teacher in ("t_ce", "t_ls"):
            kw = {"teacher": run_id_for(teacher, seed), "teacher_arch": "resnet18"}
            write_run(runs, f"kd_from_{teacher}", "kd", seed, [60.0, 72.0], **kw)
        early = {"teacher": run_id_for("t_ce", seed) + "@epoch1", "teacher_arch": "resnet18"}
        write_run(runs, "dkd", "defective_kd", seed, [60.0, 73.0], **early)
    write_run(runs, "t_ls3", "label_smoothing", 0, [60.0, 99.0], params={"epsilon": 0.3})  # one seed only
    (setting,), apart = build_settings(load_runs(runs)[0])
    assert apart == []
    labels = {row.label: row for row in setting.rows}
    assert set(labels) == {
        "ce",
        "label_smoothing epsilon=0.1",
        "label_smoothing epsilon=0.2",
        "label_smoothing epsilon=0.3",
        "kd ← t_ce",
        "kd ← t_ls",
        "defective_kd",
    }
    assert labels["kd ← t_ls"].n == 2 and labels["kd ← t_ls"].teacher_method == "label_smoothing"
    assert labels["kd ← t_ce"].teacher_method == "ce"
    assert labels["defective_kd"].teacher_epoch == 1 and labels["defective_kd"].teacher == "t_ce"
    # LS baseline: most seeds first (not the 1-seed 99%); without a held-out split, then the row key
    # (t_ls before t_ls2), never the higher test top-1 (90.5 over 71.5)
    assert setting.baselines["ls"] is labels["label_smoothing epsilon=0.1"]
    assert labels["kd ← t_ce"].gains["ls"].diff == pytest.approx(72.0 - 71.5)


def test_unfinished_failed_corrupt_and_copied_runs_are_set_apart(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "board"
    write_run(runs, "ok", "ce", 0, [70.0, 71.0])
    write_run(runs, "ok", "ce", 1, [70.0, 73.0])
    write_run(runs, "short", "ce", 2, [70.0], epochs=2)  # status completed but 1 of 2 epochs
    write_run(runs, "live", "ce", 3, [70.0], epochs=2, status="running")
    write_run(runs, "dead", "ce", 4, [70.0], epochs=2, status="failed")
    (runs / run_id_for("dead", 4) / "status.json").write_text(
        json.dumps({"status": "failed", "error": "OSError: disk"})
    )
    write_run(runs, "nan", "ce", 5, [70.0, float("nan")], status="diverged", diverged_step=17)
    write_run(runs, "ok", "ce", 0, [70.0, 99.0], folder=run_id_for("ok", 0) + ".old-20250101-000000")
    (runs / "garbage").mkdir()
    (runs / "garbage" / "metrics.parquet").write_bytes(b"PAR1 this is not parquet \x00\xff" * 10)
    (runs / "no-top1").mkdir()
    pq.write_table(pa.table({"run_id": ["no-top1"], "epoch": [1]}), runs / "no-top1" / "metrics.parquet")
    (runs / "typed").mkdir()
    bad_types = {name: ["x"] for name in ("run_id", "recipe_name", "method", "strategy", "strategy_params")}
    bad_types |= {
        n: ["x"] for n in ("dataset", "arch", "seed", "setting_key", "data_pipeline", "epochs", "epoch")
    }
    pq.write_table(
        pa.table({**bad_types, "top1": ["high"], "status": ["completed"]}), runs / "typed" / "metrics.parquet"
    )
    (runs / "starting").mkdir()
    (runs / "starting" / "status.json").write_text(json.dumps({"status": "running", "run_id": "starting"}))
    (runs / "not-a-run").mkdir()  # no status, no metrics: ignored
    result = generate(runs, out)
    reasons = {a.folder: (a.status, a.reason) for a in result.set_apart}
    assert reasons[run_id_for("short", 2)] == ("unfinished", reasons[run_id_for("short", 2)][1])
    assert "last evaluated epoch 1 of 2" in reasons[run_id_for("short", 2)][1]
    assert reasons[run_id_for("live", 3)] == ("running", "unfinished: running after epoch 1 of 2")
    assert reasons[run_id_for("dead", 4)] == ("failed", "failed after epoch 1 of 2: OSError: disk")
    assert reasons[run_id_for("nan", 5)] == ("diverged", "diverged (non-finite loss at step 17)")
    assert "folder name is not its run id" in reasons[run_id_for("ok", 0) + ".old-20250101-000000"][1]
    assert reasons["garbage"][0] == "unreadable" and "unreadable metrics.parquet" in reasons["garbage"][1]
    assert reasons["no-top1"][1].startswith("missing columns: recipe_name, method")
    assert reasons["typed"][0] == "unreadable" and "top1 (string, want double)" in reasons["typed"][1]
    assert reasons["starting"] == ("running", "no metrics.parquet yet (status running)")
    assert "not-a-run" not in reasons and len(reasons) == 9
    (only,) = result.settings
    assert only.runs == 2  # the two good seeds only: nothing set apart is mixed in
    (row,) = read_table(out).values()
    assert row["top1_last_mean"] == pytest.approx(72.0) and row["seeds"] == [0, 1]
    md = (out / "leaderboard.md").read_text()
    section = md.split("## Runs set apart", 1)[1]
    for folder in reasons:
        assert folder.replace("_", "\\_") in section
    html = (out / "index.html").read_text()
    assert "diverged (non-finite loss at step 17)" in html


def test_duplicate_seed_is_set_apart(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "dup", "ce", 0, [70.0, 71.0])
    copy = write_run(runs, "dup", "ce", 1, [70.0, 75.0])
    rows = pq.read_table(copy / "metrics.parquet").to_pylist()
    for r in rows:  # a second folder claiming seed 0 of the same recipe under another run id
        r.update(seed=0, run_id="dup-s0-ffffffff")
    write_metrics(runs / "dup-s0-ffffffff" / "metrics.parquet", rows)
    shutil.rmtree(copy)
    result = generate(runs, tmp_path / "board")
    ((folder, status),) = [(a.folder, a.status) for a in result.set_apart]
    assert status == "duplicate" and folder == max(run_id_for("dup", 0), "dup-s0-ffffffff")
    assert result.runs_used == 1


def test_a_run_holding_out_other_positions_is_set_apart(tmp_path):
    """The same `data.holdout` on other data holds out other images: not the same setting."""
    runs = tmp_path / "runs"
    for seed in (0, 1):
        folder = write_run(runs, "held", "ce", seed, [70.0, 71.0])
        rows = pq.read_table(folder / "metrics.parquet").to_pylist()
        for r in rows:
            r.update(holdout_hash="a" * 16 if seed == 0 else "b" * 16, holdout_top1=70.0)
        write_metrics(folder / "metrics.parquet", rows)
    result = generate(runs, tmp_path / "board")
    ((run_id, status, reason),) = [(a.run_id, a.status, a.reason) for a in result.set_apart]
    assert status == "holdout" and run_id == run_id_for("held", 1) and "held-out split differs" in reason
    assert result.runs_used == 1


def test_inputs_untouched_and_outputs_byte_identical(tmp_path):
    runs = tmp_path / "runs"
    write_study(runs)
    write_run(runs, "live", "ce", 9, [70.0], epochs=2, status="running")
    before = snapshot(runs)
    generate(runs, tmp_path / "a")
    first = {name: (tmp_path / "a" / name).read_bytes() for name in OUTPUT_FILES}
    generate(runs, tmp_path / "a")
    generate(runs, tmp_path / "b")
    for name in OUTPUT_FILES:
        assert (tmp_path / "a" / name).read_bytes() == first[name], name
        assert (tmp_path / "b" / name).read_bytes() == first[name], name
    assert snapshot(runs) == before  # same files, same bytes, same mtimes
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted([*OUTPUT_FILES, MARKER])  # no temp


def test_hostile_names_are_escaped(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "board"
    hostile = "<script>alert(1)</script>|x"
    write_run(runs, hostile, "<b>m</b>|*y*", 0, [70.0, 71.0], run_id=run_id_for("safe", 0))
    write_run(
        runs, "ok", "ce", 0, [70.0], epochs=2, status="running", folder="<img src=x onerror=alert(1)>|f"
    )
    generate(runs, out)
    md = (out / "leaderboard.md").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\\|x" in md and "<script>" not in md
    assert "&lt;b&gt;m&lt;/b&gt;\\|\\*y\\*" in md and "<b>" not in md
    assert "&lt;img src=x onerror=alert(1)&gt;\\|f" in md and "<img" not in md
    columns = None  # every table row keeps its header's column count
    for line in md.splitlines():
        pipes = len(re.findall(r"(?<!\\)\|", line)) if line.startswith("| ") else None
        columns = pipes if columns is None else columns
        assert pipes in (None, columns), line
        columns = None if pipes is None else columns
    html = (out / "index.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;|x" in html and "<script>alert" not in html
    assert "&lt;b&gt;m&lt;/b&gt;" in html and "<b>m</b>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;|f" in html and "<img" not in html
    assert pq.read_table(out / "leaderboard.parquet").column("recipe_name").to_pylist() == [hostile]


# ------------------------------------------------------------------------------ reference numbers
def test_reference_data_loads_and_maps_every_model():
    refs = load_references()
    assert refs.found and len(refs.results) >= 40
    assert {"resnet18_cifar"} == refs.archs_for("cifar100", "ResNet18")
    assert {"resnet50"} == refs.archs_for("imagenet", "ResNet50")
    yuan = [r for r in refs.results if r.source.startswith("Yuan") and r.method == "tfkd_reg"]
    assert {(r.dataset, r.model, r.value) for r in yuan} >= {("imagenet", "ResNet50", 76.42)}
    for ref in refs.results:
        assert ref.table and ref.source  # every figure names where it comes from


def _epochs(n: int, last: float) -> list[float]:
    """Top-1 of an n-epoch run: 60 until its last epoch, which reaches `last`."""
    return [60.0] * (n - 1) + [last]


#: What a run on the whole of ImageNet records (ILSVRC-2012: 1,281,167 training, 50,000 val images).
WHOLE_IMAGENET = {"train_samples": 1_281_167, "eval_samples": 50_000, "global_batch_size": 512}


def test_paper_vs_ours_side_by_side(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "board"
    net = {"dataset": "imagenet", "arch": "resnet50", "setting": "in-r50", **WHOLE_IMAGENET}
    write_run(runs, "resnet50_ce", "ce", 0, _epochs(90, 75.5), **net)  # Yuan et al.'s baseline
    write_run(runs, "resnet50_tfkd_reg", "tfkd_reg", 0, _epochs(90, 76.0), **net)
    shen = {"dataset": "imagenet", "arch": "resnet50", "setting": "in-r50-shen"}  # lr / 10 every 30
    shen |= WHOLE_IMAGENET
    write_run(runs, "resnet50_ce_shen", "ce", 0, _epochs(90, 76.0), stability=0.68, **shen)
    teacher = run_id_for("resnet50_ce_shen", 0)
    kd = {"params": {"alpha": 1.0, "temperature": 1.0}, "teacher": teacher, "teacher_arch": "resnet50"}
    r18 = {"dataset": "imagenet", "arch": "resnet18", "setting": "in-r18", **WHOLE_IMAGENET}
    write_run(runs, "resnet18_kd_t1_resnet50", "kd_t1", 0, _epochs(90, 71.0), **r18, **kd)
    generate(runs, out)
    table = read_table(out)
    ce, reg = table["in-r50", "ce"], table["in-r50", "tfkd_reg"]
    assert ce["paper_top1"] == 75.77 and reg["paper_top1"] == 76.42 and reg["paper_selection"] == "best"
    assert table["in-r50-shen", "ce"]["paper_top1"] == 76.056  # Shen et al.'s teacher, its own recipe
    # Shen et al.: KD at T 1 without hard label from their ResNet50 teacher trained without LS
    student = table["in-r18", "kd_t1"]  # the label of recipes/imagenet/resnet18_kd_t1_resnet50.yaml
    assert student["teacher_method"] == "ce" and student["paper_top1"] == 71.425
    md = (out / "leaderboard.md").read_text()
    assert "### Paper vs ours" in md
    # ours: last = best = 75.5, the best picked on the test split (no held-out split), labelled so
    assert "| 75.77, best epoch | 75.50 | 75.50 (test-selected) | -0.27 |" in md
    # stability 1 - S: ours 1 - 0.68 = 0.32 against Shen's 0.3217 -> -0.0017
    assert "| 0.3217 | 0.3200 | – | -0.0017 |" in md


def test_a_figure_stays_with_its_own_setting(tmp_path):
    """The issue-26 cases: a short ffcv run, Yuan et al.'s 90-epoch recipe and a run under another
    recipe name each get only their own figure (or none)."""
    runs, out = tmp_path / "runs", tmp_path / "board"
    ffcv = {"dataset": "imagenet", "arch": "resnet18", "setting": "in-r18-e16", **WHOLE_IMAGENET}
    write_run(runs, "resnet18_ffcv_e16", "label_smoothing", 0, _epochs(16, 66.0), **ffcv)
    yuan = {"dataset": "imagenet", "arch": "resnet18", "setting": "in-r18-e90", **WHOLE_IMAGENET}
    write_run(runs, "resnet18_label_smoothing", "label_smoothing", 0, _epochs(90, 70.0), **yuan)
    write_run(runs, "resnet18_ls_e90_other", "label_smoothing", 0, _epochs(90, 70.0), **yuan)
    other = {"dataset": "imagenet", "arch": "resnet18", "setting": "in-r18-e10"}  # --set schedule.epochs=10
    other |= WHOLE_IMAGENET
    write_run(runs, "resnet18_label_smoothing", "label_smoothing", 1, _epochs(10, 50.0), **other)
    self_kd = {"dataset": "imagenet", "arch": "resnet18", "setting": "in-r18-e90", "teacher_arch": "resnet18"}
    self_kd |= WHOLE_IMAGENET
    teacher = run_id_for("resnet18_ce", 0)
    write_run(runs, "resnet18_tfkd_self", "tfkd_self", 0, _epochs(90, 70.3), teacher=teacher, **self_kd)
    generate(runs, out)
    paper = {
        (r["recipe_name"], r["epochs"]): r["paper_top1"]
        for r in pq.read_table(out / "leaderboard.parquet").to_pylist()
    }
    assert paper[("resnet18_ffcv_e16", 16)] == 66.9  # the ffcv README's figure, not Yuan et al.'s 70.02
    assert paper[("resnet18_label_smoothing", 90)] == 70.02
    assert paper[("resnet18_label_smoothing", 10)] is None  # the same recipe at another length
    assert paper[("resnet18_ls_e90_other", 90)] is None  # another recipe of the same setting
    # Tf-KD self: Yuan et al.'s 70.42 and torchdistill's 70.52 came from torchvision's pretrained
    # teacher; this run distils from its own CE run, so neither is attached
    assert paper[("resnet18_tfkd_self", 90)] is None
    assert {70.42, 70.52} <= {ref.value for ref in load_references().pending}


def _imagenet_recipe_on(root: Path, **data: Any) -> tuple[str, str]:
    """(setting key, data pipeline) of Yuan et al.'s ImageNet ResNet18 CE recipe copied to read the
    ImageFolder tree `root` through the torch backend, with the `data` fields given."""
    recipe = yaml.safe_load((REPO / "recipes" / "imagenet" / "resnet18_ce.yaml").read_text())
    for key in ("train_path", "val_path"):
        del recipe["data"][key]
    recipe["data"] |= {"backend": "torch", "root": str(root), **data}
    return from_mapping(recipe, "resnet18_ce").setting()


def test_a_figure_needs_the_whole_data_set(tmp_path):
    """A copy of resnet18_ce.yaml on a 3-class ImageFolder (3 x 20 images, 3 x 5 to evaluate) is
    named `imagenet` but is not Yuan et al.'s setting: no 69.84 beside it, with or without
    `num_classes`, nor beside a run on a `train_subset` of ImageNet; one note says why. The same
    recipe on the whole of ImageNet keeps its figure."""
    runs, out = tmp_path / "runs", tmp_path / "board"
    r18 = {"dataset": "imagenet", "arch": "resnet18"}
    tiny = {"train_samples": 60, "eval_samples": 15, "global_batch_size": 512}
    cases = {
        "three-classes": (_imagenet_recipe_on(tmp_path, num_classes=3), tiny),
        "classes-unset": (_imagenet_recipe_on(tmp_path), tiny),
        "subset": (
            _imagenet_recipe_on(tmp_path, train_subset=100_000),
            WHOLE_IMAGENET | {"train_samples": 100_000},
        ),
        "whole": (_imagenet_recipe_on(tmp_path), WHOLE_IMAGENET),
    }
    for name, ((_, pipeline), recorded) in cases.items():
        run = f"resnet18_ce-s0-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
        write_run(
            runs,
            "resnet18_ce",
            "ce",
            0,
            _epochs(90, 99.8),
            run_id=run,
            setting=name,
            data_pipeline=pipeline,
            **r18,
            **recorded,
        )
    generate(runs, out)
    paper = {
        r["setting_key"]: r["paper_top1"] for r in pq.read_table(out / "leaderboard.parquet").to_pylist()
    }
    assert paper == {"three-classes": None, "classes-unset": None, "subset": None, "whole": 69.84}
    md = (out / "leaderboard.md").read_text()
    assert md.count("| 69.84, best epoch |") == md.count("| +29.96 |") == 1  # the whole run's alone
    assert (
        "No published figure beside ce: Yuan et al. 2020's imagenet has 1000 classes, 1,281,167 training"
        in md
    )
    assert "this row: 3 classes, not 1000." in md
    assert "this row: 60 training samples an epoch, not 1,281,167." in md
    assert "this row: 100,000 training samples an epoch, not 1,281,167." in md
    assert md.count("No published figure beside") == 3
    assert (out / "index.html").read_text().count("No published figure beside") == 3


def test_malformed_reference_data_is_a_one_line_error(tmp_path):
    ref = tmp_path / "ref"
    ref.mkdir()
    (ref / "architectures.csv").write_text(
        "dataset,paper_model,arch,note\ncifar100,ResNet18,resnet18_cifar,\n"
    )
    header = ",".join(RESULT_COLUMNS)
    (ref / "results.csv").write_text(f"{header}\nS,T,cifar100,ResNet18,ce,,,,top1,high,,,best,,c/x.yaml,1,\n")
    with pytest.raises(LeaderboardError, match=r"results\.csv:2: value 'high' is not a number"):
        load_references(ref)
    (ref / "results.csv").write_text(f"{header}\nS,T,cifar100,VGG,ce,,,,top1,70,,,best,,c/x.yaml,1,\n")
    with pytest.raises(LeaderboardError, match=r"model 'VGG' on cifar100 is not in architectures\.csv"):
        load_references(ref)


# ------------------------------------------------------------------------------ browser and CLI
@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (scripts/setup.sh --test installs it)"
)
def test_html_renders_table_and_every_plot_in_chromium(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "board"
    write_study(runs)
    write_run(runs, "live", "ce", 9, [70.0], epochs=2, status="running")
    result = generate(runs, out)
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1400,1000",
        "--dump-dom",
        (out / "index.html").as_uri(),
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)}
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.search(r'data-render-check="([^"]*)"', proc.stdout)
    assert found, "the page's check script did not run"
    check = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    plots = {p["id"]: p for p in check["plots"]}
    # per setting: a scatter, the curves and one reliability diagram per row
    expected = {f"s{i}-{kind}" for i in (1, 2) for kind in ("scatter", "curves")}
    expected |= {f"s1-rel{k}" for k in range(1, 5)} | {f"s2-rel{k}" for k in range(1, 3)}
    assert set(plots) == expected
    for p in plots.values():
        assert p["width"] > 100 and p["height"] > 100, p
        assert p["marks"] > 0 and p["drawn"] == p["marks"], p  # every mark has a visible box
    assert plots["s1-scatter"]["marks"] == 4 * 3 + 4  # a dot per seed and a mean per row
    assert plots["s1-curves"]["marks"] == 4 * (1 + 2)  # a line and 2 epoch points per row
    tables = {t["id"]: t for t in check["tables"]}
    assert tables["s1-board"]["rows"] == 4 and tables["s2-board"]["rows"] == 2
    assert tables["s1-teachers"]["rows"] == 2 and tables["set-apart-table"]["rows"] == 1
    assert all(t["width"] > 0 and t["height"] > 0 for t in tables.values())
    assert result.runs_used == 14


@pytest.mark.slow
def test_cli_leaderboard(tmp_path):
    missing = tmp_path / "nowhere"
    proc = run_cli("leaderboard", "--runs-dir", str(missing), "--out", str(tmp_path / "board"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: --runs-dir {missing}: no such folder"]
    assert not (tmp_path / "board").exists()
    runs = tmp_path / "runs"
    write_run(runs, "ok", "ce", 0, [70.0, 71.0])
    proc = run_cli("leaderboard", "--runs-dir", str(runs), "--out", str(tmp_path / "board"), check=True)
    assert "1 run in 1 setting, 0 set apart" in proc.stdout
    assert sorted(p.name for p in (tmp_path / "board").iterdir()) == sorted([*OUTPUT_FILES, MARKER])


def test_committed_study_leaderboard_is_what_its_runs_give(tmp_path):
    """The committed leaderboard/ files are regenerated byte for byte from leaderboard/runs/: the
    columns, labels and decimals declared in harness.metrics.columns.COLUMNS give the committed pages."""
    study = REPO / "leaderboard"
    generate(study / "runs", tmp_path / "board", use_index=False)  # nothing written into the repository
    for name in OUTPUT_FILES:
        assert (tmp_path / "board" / name).read_bytes() == (study / name).read_bytes(), (
            f"leaderboard/{name} differs: regenerate it with harness leaderboard --runs-dir leaderboard/runs "
            "--out leaderboard"
        )


def test_tuned_rows_compare_with_the_tuned_baseline(tmp_path):
    """A `_tuned` row (the final seeds of `harness tune`) gains over the setting's `_tuned` LS row,
    an untuned row over the untuned one, even where the untuned baseline has more seeds."""
    runs, out = tmp_path / "runs", tmp_path / "board"
    for seed in range(3):
        write_run(runs, "fm_ls", "label_smoothing", seed, [80.0 + seed])
        write_run(runs, "fm_kd", "kd", seed, [82.0 + seed], params={"temperature": 4.0})
    for seed in (1, 2):
        eps = {"epsilon": 0.2}
        write_run(runs, "fm_ls_tuned", "label_smoothing", seed, [85.0 + seed], params=eps)
        write_run(runs, "fm_kd_tuned", "kd", seed, [86.0 + 2 * seed], params={"temperature": 2.0})
    generate(runs, out)
    rows = {r["recipe_name"]: r for r in pq.read_table(out / "leaderboard.parquet").to_pylist()}
    ls, ls_tuned = rows["fm_ls"], rows["fm_ls_tuned"]
    assert rows["fm_kd_tuned"]["baseline_ls"] == ls_tuned["label"] != ls["label"]
    assert rows["fm_kd_tuned"]["gain_ls"] == pytest.approx((88 + 90) / 2 - (86 + 87) / 2)
    assert rows["fm_kd"]["baseline_ls"] == ls["label"] and rows["fm_kd"]["gain_ls"] == pytest.approx(2.0)
    assert ls_tuned["gain_ls_status"] == ls["gain_ls_status"] == "baseline"
    assert "Tuned rows (`_tuned`) compare with the tuned label-smoothing baseline" in (
        out / "leaderboard.md"
    ).read_text()
