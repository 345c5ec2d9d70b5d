"""The tuning summary on the leaderboard: trials.parquet files written by hand (pyarrow) beside real
run folders, the board generated, its figures checked against an independent computation (every
one of the N^n draws of n trials enumerated), and Dodge et al. 2019's expected maximum against
its closed form."""

from __future__ import annotations

import itertools
import json
import math
import random
import re
from fractions import Fraction
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.leaderboard import OUTPUT_FILES, generate
from harness.leaderboard.expected_max import expected_max, max_probabilities
from harness.leaderboard.tuning import TRIALS_SCHEMA, TUNING_FILE
from tests.leaderboard.test_leaderboard import run_id_for, write_run
from tests.leaderboard.test_leaderboard_page import LAPTOP, PROBE, chromium, dumped, needs_chromium

TEACHER = run_id_for("t_ce", 0)
KD_OBJECTIVES = [70.0, 72.5, 71.0, 75.0]  # the completed kd trials (0, 1, 2, 4)
LS_OBJECTIVES = [73.0, 74.0, 73.0]


# ------------------------------------------------------------------------------ the closed form
def brute_force(values: list[float], n: int) -> tuple[float, float]:
    """Mean and (population) std of the maximum over all len(values)^n equally likely draws."""
    maxima = [max(draw) for draw in itertools.product(values, repeat=n)]
    mean = math.fsum(maxima) / len(maxima)
    return mean, math.sqrt(math.fsum((m - mean) ** 2 for m in maxima) / len(maxima))


def test_expected_max_closed_form_on_a_hand_made_example():
    """[1, 2, 3], n = 2: the max is 1, 2, 3 with probabilities 1/9, 3/9, 5/9, so E = 22/9 and
    E[max^2] = 58/9, Var = 58/9 - (22/9)^2 = 38/81."""
    assert [Fraction(p).limit_denominator(100) for p in max_probabilities(3, 2)] == [
        Fraction(1, 9),
        Fraction(3, 9),
        Fraction(5, 9),
    ]
    curve = expected_max([3.0, 1.0, 2.0])
    assert curve[1][0] == pytest.approx(22 / 9, abs=1e-12)
    assert curve[1][1] == pytest.approx(math.sqrt(38 / 81), abs=1e-12)
    assert curve[0] == pytest.approx((2.0, math.sqrt(2 / 3)), abs=1e-12)  # n = 1: mean and std
    assert len(curve) == 3 and expected_max([]) == []
    with pytest.raises(ValueError, match="finite"):
        expected_max([1.0, math.nan])


def test_expected_max_matches_enumerating_every_draw():
    rng = random.Random(7)
    cases = [[rng.uniform(60.0, 80.0) for _ in range(size)] for size in (1, 2, 4, 5)]
    cases.append([70.0, 70.0, 71.5, 70.0])  # ties
    for values in cases:
        curve = expected_max(values)
        for n in range(1, len(values) + 1):
            assert curve[n - 1] == pytest.approx(brute_force(values, n), abs=1e-9), (values, n)
    # more trials can only raise the expected best, towards the best value
    assert all(a[0] <= b[0] + 1e-12 for a, b in itertools.pairwise(expected_max(cases[3])))


# ------------------------------------------------------------------------------ a tuned runs folder
def write_trials(path: Path, rows: list[dict], schema: pa.Schema = TRIALS_SCHEMA) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def trial(study: str, method: str, number: int, state: str, objective: float | None, **kw) -> dict:
    return {
        "study": study,
        "recipe": f"recipes/{method}.yaml",
        "method": method,
        "trial": number,
        "state": state,
        "params": json.dumps(kw.pop("params", {"lr": 0.1 * (number + 1)}), sort_keys=True),
        "objective": objective,
        "epochs_trained": kw.pop("epochs", 2),
        "device_seconds": kw.pop("seconds", 100.0 + number),
        "run_id": kw.pop("run_id", f"{study}-{method}-{number}"),
        "budget": kw.pop("budget"),
        "sampler": "TPESampler",
        "objective_name": "validation top-1",
    }


def tuned_runs(runs: Path) -> None:
    """A teacher run (training 3600 s), kd and LS runs that are trials of study `main`, and four
    trials files: `main` (kd: budget 6, 4 completed, 1 pruned, 1 failed; LS: budget 3, 3 completed),
    `empty` (no completed trial, no run), `mixed` (method b without a completed trial beside a),
    a corrupt one and one lacking `budget`."""
    write_run(runs, "t_ce", "ce", 0, [80.0, 82.0], epoch_time_s=3598.0)  # 2 + 3598 seconds
    kd = [
        write_run(runs, "kd_trial", "kd", seed, [60.0, 70.0 + seed], teacher=TEACHER, teacher_arch="resnet18")
        for seed in range(2)
    ]
    ls = write_run(runs, "ls_trial", "label_smoothing", 0, [60.0, 73.0])
    states = ["complete", "complete", "complete", "pruned", "complete", "failed"]
    objectives = iter(KD_OBJECTIVES)
    rows = [
        trial(
            "main",
            "kd",
            k,
            state,
            next(objectives) if state == "complete" else None,
            budget=6,
            epochs=2 if state == "complete" else 1,
            params={"temperature": float(k + 1), "alpha": 0.5},
            **({"run_id": kd[k].name} if k < 2 else {}),
        )
        for k, state in enumerate(states)
    ]
    rows += [
        trial(
            "main", "label_smoothing", k, "complete", v, budget=3, **({"run_id": ls.name} if k == 0 else {})
        )
        for k, v in enumerate(LS_OBJECTIVES)
    ]
    write_trials(runs / "tuning" / "main" / "trials.parquet", rows)
    write_trials(
        runs / "tuning" / "empty" / "trials.parquet",
        [
            trial("empty", "ce", 0, "pruned", None, budget=2),
            trial("empty", "ce", 1, "failed", None, budget=2),
        ],
    )
    write_trials(
        runs / "tuning" / "mixed" / "trials.parquet",
        [
            trial("mixed", "a", 0, "complete", 50.0, budget=2),
            trial("mixed", "a", 1, "complete", 52.0, budget=2),
            trial("mixed", "b", 0, "pruned", None, budget=2),
        ],
    )
    (runs / "tuning" / "bad").mkdir()
    (runs / "tuning" / "bad" / "trials.parquet").write_bytes(b"PAR1 not parquet at all \x00" * 4)
    lacking = pa.schema([f for f in TRIALS_SCHEMA if f.name != "budget"])
    write_trials(
        runs / "tuning" / "lacks" / "trials.parquet",
        [{k: v for k, v in trial("lacks", "ce", 0, "complete", 1.0, budget=1).items() if k != "budget"}],
        lacking,
    )


@pytest.fixture(scope="module")
def board(tmp_path_factory) -> tuple[Path, Path]:
    """The tuned runs folder and its board, generated once for the module."""
    tmp = tmp_path_factory.mktemp("tuned")
    runs, out = tmp / "runs", tmp / "board"
    tuned_runs(runs)
    generate(runs, out)
    return runs, out


def test_tuning_parquet_figures(board):
    _, out = board
    rows = {(r["study"], r["method"]): r for r in pq.read_table(out / TUNING_FILE).to_pylist()}
    assert list(rows) == [
        ("empty", "ce"),
        ("main", "kd"),
        ("main", "label_smoothing"),
        ("mixed", "a"),
        ("mixed", "b"),
    ]
    assert rows["mixed", "a"]["expected_max"] == pytest.approx([51.0, 51.5])  # (50 + 52) / 2; 50/4 + 52 3/4
    assert rows["mixed", "b"]["expected_max"] == [] and rows["mixed", "b"]["completed"] == 0
    kd, ls, empty = rows["main", "kd"], rows["main", "label_smoothing"], rows["empty", "ce"]
    assert (kd["budget"], kd["trials"], kd["completed"], kd["pruned"], kd["failed"]) == (6, 6, 4, 1, 1)
    assert kd["epochs_trained"] == 2 * 4 + 1 * 2
    assert kd["device_seconds"] == pytest.approx(sum(100.0 + k for k in range(6)))
    assert (kd["best_objective"], kd["best_trial"]) == (75.0, 4)
    assert json.loads(kd["best_params"]) == {"alpha": 0.5, "temperature": 5.0}
    assert (ls["best_objective"], ls["best_trial"]) == (74.0, 1)
    for row, values in ((kd, KD_OBJECTIVES), (ls, LS_OBJECTIVES)):
        assert len(row["expected_max"]) == len(row["expected_max_std"]) == len(values)
        for n in range(1, len(values) + 1):
            mean, std = brute_force(values, n)
            assert row["expected_max"][n - 1] == pytest.approx(mean, abs=1e-9)
            assert row["expected_max_std"][n - 1] == pytest.approx(std, abs=1e-9)
    # the teacher (a run of the folder) counted once for the study, on each of its rows alike
    assert kd["teachers"] == ls["teachers"] == [TEACHER]
    assert kd["teacher_seconds"] == ls["teacher_seconds"] == pytest.approx(3600.0)
    # no completed trial: the counts, no curve, no best, no teacher counted
    assert (empty["trials"], empty["completed"], empty["pruned"], empty["failed"]) == (2, 0, 1, 1)
    assert empty["expected_max"] == [] and empty["best_objective"] is None
    assert empty["teacher_seconds"] is None


def test_markdown_tuning_section(board):
    _, out = board
    text = (out / "leaderboard.md").read_text()
    assert text.index("## Tuning") < text.index("## Runs set apart")
    section = text.split("## Tuning")[1].split("## Runs set apart")[0]
    main = section.split("### Study main")[1].split("### Study mixed")[0]
    mixed = section.split("### Study mixed")[1]
    assert "E\\[best of n\\]" in mixed and "| b | 2 | 1 | 0 / 1 / 0 | 2 |" in mixed
    k = 3  # the fewest completed trials of the study's methods (LS)
    assert f"E\\[best of {k}\\]" in main
    kd_at_k = brute_force(KD_OBJECTIVES, k)
    hours = sum(100.0 + t for t in range(6)) / 3600
    assert (
        f"| kd | 6 | 6 | 4 / 1 / 1 | 10 | {hours:.3f} | 75.00 (trial 4) | "
        f"{kd_at_k[0]:.2f} ± {kd_at_k[1]:.2f} | alpha=0.5, temperature=5.0 |"
    ) in main
    assert "**Unequal budgets** (kd 6, label\\_smoothing 3 trials)" in main
    assert f"{TEACHER.replace('_', chr(92) + '_')} 1.000 device-hours" in main
    assert "counted once per study" in main
    empty = section.split("### Study empty")[1].split("### Study main")[0]
    assert "| ce | 2 | 2 | 0 / 1 / 1 | 4 |" in empty and "| – | – | – |" in empty
    assert "same budget of 2 trials" in empty and "not counted" in empty
    # the two unusable files, one line each naming the file; the board went on
    assert re.search(r"^- tuning/bad/trials\.parquet: unreadable \(", section, re.M)
    assert "- tuning/lacks/trials.parquet: lacks column(s) budget\n" in section.replace("\\", "")


def test_regeneration_is_byte_identical(board, tmp_path):
    runs, out = board
    generate(runs, tmp_path / "again")
    for name in (*OUTPUT_FILES, TUNING_FILE):
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes(), name


def test_without_trials_files_no_tuning_section(tmp_path):
    """Only unusable trials files (empty, a mistyped objective, an unknown state): the section lists
    them and no tuning.parquet is written, an earlier board's removed; no tuning folder at all: no
    section (the committed study's test checks its bytes)."""
    runs, out = tmp_path / "runs", tmp_path / "board"
    write_run(runs, "ce", "ce", 0, [70.0, 71.0])
    generate(runs, tmp_path / "plain")
    assert "Tuning" not in (tmp_path / "plain" / "leaderboard.md").read_text()
    assert "tuning" not in (tmp_path / "plain" / "index.html").read_text()
    write_trials(runs / "tuning" / "x" / "trials.parquet", [trial("x", "ce", 0, "complete", 1.0, budget=1)])
    generate(runs, out)
    assert (out / TUNING_FILE).exists()
    (runs / "tuning" / "x" / "trials.parquet").write_bytes(b"")
    mistyped = pa.schema(
        [f if f.name != "objective" else pa.field("objective", pa.string()) for f in TRIALS_SCHEMA]
    )
    write_trials(
        runs / "tuning" / "y" / "trials.parquet",
        [trial("y", "ce", 0, "complete", "high", budget=1)],
        mistyped,
    )
    write_trials(runs / "tuning" / "z" / "trials.parquet", [trial("z", "ce", 0, "done", 1.0, budget=1)])
    result = generate(runs, out)
    assert not (out / TUNING_FILE).exists() and result.runs_used == 1
    section = (out / "leaderboard.md").read_text().split("## Tuning")[1].replace("\\", "")
    assert "- tuning/x/trials.parquet: unreadable (" in section
    assert "- tuning/y/trials.parquet: column objective: 'high' is not a number or null" in section
    assert (
        "- tuning/z/trials.parquet: column state: 'done' is not one of complete, pruned, failed, running"
        in section
    )


@needs_chromium
def test_page_plots_every_method_with_its_band(board, tmp_path):
    """Headless Chromium: the study's plot has a legend entry per method, drawn inside it, no two
    texts overlapping; a band, a line and N points per method; the empty study no plot."""
    _, out = board
    page = tmp_path / "probed.html"
    page.write_text((out / "index.html").read_text().replace("</body>", f"<script>{PROBE}</script></body>"))
    dom = chromium(tmp_path, page, LAPTOP, "--dump-dom").stdout
    check, probe = dumped(dom, "data-render-check"), dumped(dom, "data-probe")
    plots = {p["id"]: p for p in probe["plots"]}
    drawn = {p["id"]: p for p in check["plots"]}
    main = plots["tuning2-expected-max"]
    assert main["legend"] == ["kd", "label_smoothing"] and len(set(main["colours"])) == 2
    assert main["clashes"] == [] and main["outside"] == [], main
    assert drawn["tuning2-expected-max"]["marks"] == 2 * 2 + len(KD_OBJECTIVES) + len(LS_OBJECTIVES)
    assert drawn["tuning2-expected-max"]["drawn"] == drawn["tuning2-expected-max"]["marks"]
    assert "tuning1-expected-max" not in plots  # the empty study: its counts, no curve
    mixed = plots["tuning3-expected-max"]  # b, with no completed trial, in the legend, drawing nothing
    assert mixed["legend"] == ["a", "b"] and mixed["clashes"] == [] and mixed["outside"] == []
    assert drawn["tuning3-expected-max"]["marks"] == drawn["tuning3-expected-max"]["drawn"] == 2 + 2
    tables = {t["id"]: t for t in check["tables"]}
    assert tables["tuning2-budget"]["rows"] == 2 and tables["tuning2-budget"]["right"] <= LAPTOP[0]
    html = (out / "index.html").read_text()
    assert html.index('<section id="tuning">') < html.index('<section id="set-apart">')
    assert "<p>No completed trial: no curve.</p>" in html.split("<h3>Study empty</h3>")[1].split("<h3>")[0]
    assert ">b (no completed trial)<title>b</title>" in html
