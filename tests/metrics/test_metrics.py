"""The public metric functions against values computed by hand, and the streaming accumulator."""

from __future__ import annotations

import math
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import torch

from harness import metrics
from harness.metrics import (
    MetricAccumulator,
    expected_calibration_error,
    mean_entropy,
    mean_max_prob,
    negative_log_likelihood,
    stability,
    topk_accuracy,
)
from harness.store import metrics_file
from tests.support.recipes import REPO

PROBS = torch.tensor(
    [
        [0.7, 0.2, 0.1],  # label 0: correct, conf 0.7
        [0.1, 0.6, 0.3],  # label 2: wrong, conf 0.6
        [0.2, 0.3, 0.5],  # label 2: correct, conf 0.5
        [0.05, 0.9, 0.05],  # label 1: correct, conf 0.9
    ]
)
TARGETS = torch.tensor([0, 2, 2, 1])


def test_topk_accuracy_by_hand():
    logits = PROBS.log()
    assert topk_accuracy(logits, TARGETS, 1) == pytest.approx(75.0)
    assert topk_accuracy(logits, TARGETS, 2) == pytest.approx(100.0)  # row 1 has label 2 second
    assert topk_accuracy(logits, torch.tensor([2, 0, 0, 0]), 1) == pytest.approx(0.0)
    assert topk_accuracy(logits, TARGETS, 10) == pytest.approx(100.0)  # k capped at K


def test_ece_by_hand():
    # 15 bins of width 1/15: 0.5 -> bin 7, 0.6 -> bin 8, 0.7 -> bin 10, 0.9 -> bin 13: one each.
    # ECE = 1/4 (|1-0.7| + |0-0.6| + |1-0.5| + |1-0.9|) = 1/4 (0.3 + 0.6 + 0.5 + 0.1) = 0.375
    assert expected_calibration_error(PROBS, TARGETS) == pytest.approx(0.375)
    # one bin: |mean acc - mean conf| = |0.75 - 0.675| = 0.075
    assert expected_calibration_error(PROBS, TARGETS, n_bins=1) == pytest.approx(0.075)
    # two bins (0, .5] holds 0.5; (.5, 1] holds .6 .7 .9: 1/4 |1-.5| + 3/4 |2/3 - .7333|
    expected = 0.25 * 0.5 + 0.75 * abs(2 / 3 - (0.6 + 0.7 + 0.9) / 3)
    assert expected_calibration_error(PROBS, TARGETS, n_bins=2) == pytest.approx(expected)


def test_entropy_max_prob_nll_by_hand():
    rows = PROBS.double()
    h = [-(r * r.log()).sum().item() for r in rows]
    assert mean_entropy(PROBS) == pytest.approx(sum(h) / 4, rel=1e-6)
    assert mean_entropy(torch.tensor([[1.0, 0.0, 0.0]])) == 0.0  # 0 log 0 = 0
    assert mean_entropy(torch.full((1, 4), 0.25)) == pytest.approx(math.log(4))
    assert mean_max_prob(PROBS) == pytest.approx((0.7 + 0.6 + 0.5 + 0.9) / 4, rel=1e-6)
    nll = -(math.log(0.7) + math.log(0.3) + math.log(0.5) + math.log(0.9)) / 4
    assert negative_log_likelihood(PROBS, TARGETS) == pytest.approx(nll, rel=1e-6)


def test_stability_by_hand():
    # class 2 has two samples, [.1,.6,.3] and [.2,.3,.5]: mean [.15,.45,.4];
    # squared distances: .05^2+.15^2+.1^2 = .035 each -> class variance .035.
    # classes 0 and 1 have one sample each -> variance 0. S = 1 - (0 + 0 + .035)/3
    assert stability(PROBS, TARGETS) == pytest.approx(1 - 0.035 / 3, rel=1e-6)
    # identical outputs within each class: S = 1
    same = torch.tensor([[0.5, 0.5], [0.5, 0.5], [0.9, 0.1]])
    assert stability(same, torch.tensor([0, 0, 1])) == pytest.approx(1.0)


def test_accumulator_matches_functions_over_batches():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(300, 7, generator=g) * 3
    targets = torch.randint(0, 7, (300,), generator=g)
    targets[targets == 6] = 5  # a class that never occurs
    acc = MetricAccumulator(7, n_bins=15)
    for chunk in range(0, 300, 64):
        acc.update(logits[chunk : chunk + 64], targets[chunk : chunk + 64])
    got = acc.compute()
    probs = logits.softmax(dim=1)
    assert got["n"] == 300
    assert got["top1"] == pytest.approx(topk_accuracy(logits, targets, 1))
    assert got["top5"] == pytest.approx(topk_accuracy(logits, targets, 5))
    assert got["ece"] == pytest.approx(expected_calibration_error(probs, targets), abs=1e-6)
    assert got["entropy"] == pytest.approx(mean_entropy(probs), rel=1e-6)
    assert got["max_prob"] == pytest.approx(mean_max_prob(probs), rel=1e-6)
    assert got["nll"] == pytest.approx(negative_log_likelihood(probs, targets), rel=1e-5)
    assert got["stability"] == pytest.approx(stability(probs, targets), rel=1e-6)
    # the reliability diagram's bins hold every sample and give back the same ECE
    counts, conf, acc = got["reliability_count"], got["reliability_confidence"], got["reliability_accuracy"]
    assert len(counts) == 15 and sum(counts) == 300
    ece = sum(n / 300 * abs(a - c) for n, a, c in zip(counts, acc, conf, strict=True) if n)
    assert ece == pytest.approx(got["ece"], abs=1e-9)
    assert all((n == 0) == (c is None) for n, c in zip(counts, conf, strict=True))


def _row(**values: object) -> dict:
    """A metrics row: every declared column, null unless given."""
    return dict.fromkeys(metrics.SCHEMA.names) | values


def test_parquet_writer_is_atomic_and_typed(tmp_path):
    path = tmp_path / "m.parquet"
    metrics_file.write_metrics(path, [_row(run_id="r", epoch=1, top1=50.0, train_parts={"ce": 1.0})])
    table = pq.read_table(path)
    assert table.schema.equals(metrics.SCHEMA, check_metadata=False)
    assert metrics_file.read_metrics(path)[0]["train_parts"] == {"ce": 1.0}
    # a failing write leaves the previous file intact and no temporary file behind
    with pytest.raises(Exception):  # noqa: B017
        metrics_file.write_metrics(path, [_row(run_id="r", epoch="not an int")])
    assert metrics_file.read_metrics(path)[0]["top1"] == 50.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.parquet"]


def _accumulate(logits: torch.Tensor, targets: torch.Tensor) -> dict:
    acc = MetricAccumulator(logits.shape[1])
    acc.update(logits, targets)
    return acc.compute()


def test_nll_floor_is_the_same_in_the_accumulator_and_the_function():
    # p_0 = sigmoid(-40) ~ 4e-18 is floored at 1e-12: NLL -log(1e-12) = 27.63, not 40
    for logits in (torch.tensor([[0.0, 40.0]]), torch.tensor([[-1e4, 1e4], [0.0, 0.0]])):
        targets = torch.zeros(len(logits), dtype=torch.long)
        want = negative_log_likelihood(logits.softmax(dim=1), targets)
        assert _accumulate(logits, targets)["nll"] == pytest.approx(want, rel=1e-9)
    floored = _accumulate(torch.tensor([[0.0, 40.0]]), torch.tensor([0]))["nll"]
    assert floored == pytest.approx(-math.log(1e-12))


def test_ties_follow_one_rule_everywhere():
    # equal logits: the lower class index ranks first, for top-1, top-k and ECE's correctness
    # (torch's topk puts classes 8, 6, 7, 5, 9 first for ten equal logits on CPU)
    logits = torch.zeros(10, 10)
    targets = torch.arange(10)
    got = _accumulate(logits, targets)
    for k in (1, 5, 10):
        assert topk_accuracy(logits, targets, k) == pytest.approx(10.0 * k)
    assert got["top1"] == pytest.approx(topk_accuracy(logits, targets, 1)) == pytest.approx(10.0)
    assert got["top5"] == pytest.approx(topk_accuracy(logits, targets, 5)) == pytest.approx(50.0)
    probs = logits.softmax(dim=1)
    assert got["ece"] == pytest.approx(expected_calibration_error(probs, targets), abs=1e-6)
    assert got["ece"] == pytest.approx(0.0, abs=1e-12)  # one bin: confidence 1/10, accuracy 1/10
    # a tie for second place: [3, 1, 1] with label 2 ranks third; label 1 ranks second
    row = torch.tensor([[3.0, 1.0, 1.0]])
    assert topk_accuracy(row, torch.tensor([2]), 2) == 0.0
    assert topk_accuracy(row, torch.tensor([1]), 2) == 100.0


def test_stability_averages_over_the_classes_present():
    # K = 4, class 3 absent: S = 1 - (0 + 0 + .035) / 3 (the 3 classes present), not / 4
    probs = torch.cat([PROBS, torch.zeros(4, 1)], dim=1)
    assert stability(probs, TARGETS) == pytest.approx(1 - 0.035 / 3, rel=1e-6)
    acc = MetricAccumulator(4)
    acc.update(probs.clamp_min(1e-30).log(), TARGETS)
    assert acc.compute()["stability"] == pytest.approx(1 - 0.035 / 3, rel=1e-6)
    doc = (REPO / "docs" / "metrics.md").read_text()
    assert "classes present" in doc and "The paper divides by K" in doc


@pytest.mark.parametrize(
    ("drop", "add", "message"),
    [
        ("diverged_step", None, "metrics row 1: missing column 'diverged_step'"),
        ("teacher_max_prob", None, "metrics row 1: missing column 'teacher_max_prob'"),
        (None, "max_porb", "metrics row 1: undeclared column 'max_porb'"),
    ],
)
def test_a_row_without_a_declared_column_is_refused(tmp_path, drop, add, message):
    path = tmp_path / "m.parquet"
    metrics_file.write_metrics(path, [_row(run_id="r", epoch=1, top1=50.0)])
    bad = _row(run_id="r", epoch=2, top1=60.0)
    if drop:
        del bad[drop]
    if add:
        bad[add] = 0.5
    with pytest.raises(ValueError, match=message) as caught:
        metrics_file.write_metrics(path, [_row(run_id="r", epoch=1, top1=50.0), bad])
    assert "\n" not in str(caught.value)
    assert [r["epoch"] for r in metrics_file.read_metrics(path)] == [1]  # the earlier file is kept


def test_column_lists_are_derived_from_the_declaration():
    names = metrics.SCHEMA.names
    assert len(set(names)) == len(names)
    # the runner copies exactly what the accumulator computes (besides the sample count)
    acc = MetricAccumulator(3)
    acc.update(torch.log(PROBS), TARGETS)
    assert set(acc.compute()) - {"n"} == set(metrics.METRIC_COLUMNS)
    assert set(MetricAccumulator(3).compute()) - {"n"} == {
        c.name for c in metrics.COLUMNS if c.metric and c.kind == metrics.FLOAT
    }
    # each teacher twin has its metric's type and sits in the schema after the teacher's identity
    for twin, metric in metrics.TEACHER_METRICS.items():
        assert metric in metrics.METRIC_COLUMNS
        assert metrics.SCHEMA.field(twin).type == metrics.SCHEMA.field(metric).type
        assert names.index(twin) > names.index("teacher_source")
    assert set(metrics.TEACHER_METRICS) < set(metrics.TEACHER_COLUMNS) <= set(names)
    values = [c.board.value for c in metrics.BOARD_COLUMNS]
    assert len(set(values)) == len(values)
    assert all(c.board.better in ("higher", "lower", "") for c in metrics.BOARD_COLUMNS)


def test_public_names_load_from_their_modules_and_the_registry_needs_no_torch():
    """`from harness.metrics import ...` keeps working (loaded on first use); the column registry and
    the Parquet file need no torch."""
    from harness.metrics import accumulator, columns, functions

    assert metrics.topk_accuracy is functions.topk_accuracy
    assert metrics.MetricAccumulator is accumulator.MetricAccumulator
    assert metrics.COLUMNS is columns.COLUMNS and metrics.Board is columns.Board
    assert {"topk_accuracy", "MetricAccumulator", "COLUMNS"} <= set(dir(metrics))
    with pytest.raises(AttributeError, match="no attribute 'write_metrics'"):
        metrics.write_metrics  # noqa: B018
    code = (
        "import sys, harness.metrics.columns, harness.store.metrics_file\n"
        "from harness.metrics import COLUMNS, SCHEMA, Board\n"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_fidelity_matches_an_independent_computation_over_batches():
    """Stanton et al. (2021): top-1 agreement and mean KL(p_teacher || p_student) at T = 1,
    streamed over batches, against scipy's relative entropy on the whole set."""
    from scipy.special import rel_entr, softmax

    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(50, 7, generator=g), 3 * torch.randn(50, 7, generator=g)
    targets = torch.randint(0, 7, (50,), generator=g)
    acc = MetricAccumulator(7)
    for s, t, y in zip(student.split(16), teacher.split(16), targets.split(16), strict=True):
        acc.update(s, y, t)
    got = acc.compute()
    p_s, p_t = softmax(student.double().numpy(), axis=1), softmax(teacher.double().numpy(), axis=1)
    assert got["fidelity_kl"] == pytest.approx(rel_entr(p_t, p_s).sum(axis=1).mean(), rel=1e-12)
    agree = (p_s.argmax(axis=1) == p_t.argmax(axis=1)).mean() * 100
    assert got["fidelity_agreement"] == pytest.approx(agree)
    alone = MetricAccumulator(7)
    alone.update(student, targets, student)
    assert alone.compute()["fidelity_agreement"] == 100.0 and alone.compute()["fidelity_kl"] == pytest.approx(
        0
    )
    without = MetricAccumulator(7)
    without.update(student, targets)
    assert without.compute()["fidelity_agreement"] is None and without.compute()["fidelity_kl"] is None
    with pytest.raises(ValueError, match="teacher reference logits"):
        MetricAccumulator(7).update(student, targets, teacher[:10])


def test_holdout_twins_follow_their_metric():
    names = metrics.SCHEMA.names
    for twin, metric in metrics.HOLDOUT_METRICS.items():
        assert metric in metrics.METRIC_COLUMNS
        assert metrics.SCHEMA.field(twin).type == metrics.SCHEMA.field(metric).type
    assert {"holdout_top1", "holdout_fidelity_kl", "holdout_hash", "teacher_holdout_top1"} <= set(names)


def test_a_file_from_before_a_column_existed_reads_with_it_empty(tmp_path):
    """An older run (no holdout or fidelity columns) loads, and rewrites, under today's schema."""
    path = tmp_path / "metrics.parquet"
    metrics_file.write_metrics(path, [_row(run_id="r", epoch=1, top1=50.0)])
    table = pq.read_table(path)
    old = [n for n in table.column_names if n.startswith(("holdout_", "fidelity_", "teacher_holdout"))]
    pq.write_table(table.drop_columns(old), path)
    assert not set(old) & set(pq.read_schema(path).names)
    rows = metrics_file.read_metrics(path)
    assert all(rows[0][name] is None for name in old)
    metrics_file.write_metrics(path, rows)  # a resumed run appends to it
    assert pq.read_schema(path).equals(metrics.SCHEMA, check_metadata=False)


def test_duckdb_and_polars_read_both_splits_typed_beside_an_older_run(tmp_path):
    """The held-out and fidelity columns are typed columns to the tools people query runs with,
    and a run from before they existed reads beside a new one (nulls), by name."""
    import duckdb
    import polars as pl

    new = tmp_path / "new" / "metrics.parquet"
    new.parent.mkdir()
    metrics_file.write_metrics(
        new,
        [_row(run_id="n", epoch=1, top1=80.0, holdout_top1=81.5, holdout_hash="ab" * 8, fidelity_kl=0.25)],
    )
    old = tmp_path / "old" / "metrics.parquet"
    old.parent.mkdir()
    metrics_file.write_metrics(old, [_row(run_id="o", epoch=1, top1=70.0)])
    table = pq.read_table(old)
    pq.write_table(
        table.drop_columns([n for n in table.column_names if n.startswith(("holdout", "fidelity"))]), old
    )

    files = f"{tmp_path}/*/metrics.parquet"
    runs = f"read_parquet('{files}', union_by_name=true)"
    types = dict(
        duckdb.sql(f"select column_name, column_type from (describe select * from {runs})").fetchall()
    )
    assert types["holdout_top1"] == "DOUBLE" and types["holdout_hash"] == "VARCHAR"
    assert types["holdout_samples"] == "BIGINT" and types["fidelity_kl"] == "DOUBLE"
    got = duckdb.sql(f"select run_id, holdout_top1 from {runs} order by run_id").fetchall()
    assert got == [("n", 81.5), ("o", None)]

    frame = pl.read_parquet(str(new))
    assert frame.schema["holdout_top1"] == pl.Float64 and frame.schema["holdout_hash"] == pl.String
    both = pl.concat([pl.read_parquet(str(new)), pl.read_parquet(str(old))], how="diagonal_relaxed")
    assert both.sort("run_id")["holdout_top1"].to_list() == [81.5, None]
