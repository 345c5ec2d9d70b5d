"""`harness sweep --plan`: device-hours from the nightly history, else the per-architecture rates."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.config import load_recipe
from harness.store.rundir import RunDir
from harness.sweeps.estimate import pack, parse_window
from harness.sweeps.executor import SweepOptions
from harness.sweeps.nightly import write_snapshot
from harness.sweeps.plan import plan_sweep
from harness.sweeps.sweep import run_sweep
from tests.support.recipes import REPO, kd_strategy, run_cli, tiny_recipe, write_recipe

STUDY = REPO / "sweeps" / "fashion_mnist_study.yaml"


#: The recipes of the study's first, timed run: 33 runs in 64 min of training on a 2-core CPU (README).
TIMED = (
    "resnet10t_ce",
    "resnet10t_defective_kd",
    "resnet10t_kd",
    "resnet10t_kd_t1",
    "resnet10t_kd_t1_ls_teacher",
    "resnet10t_label_smoothing",
    "resnet10t_tfkd_reg",
    "resnet10t_tfkd_self",
    "resnet18_ce",
    "resnet18_label_smoothing",
    "resnet18_reversed_kd",
)


def measured_study(tmp_path):
    """A sweep file of the 11 recipes whose 33 runs the README timed (all are committed runs)."""
    committed = {p.name.rsplit("-s", 1)[0] for p in (REPO / "leaderboard" / "runs").iterdir()}
    assert set(TIMED) <= committed
    lines = ["seeds: [0, 1, 2]", "recipes:"]
    lines += [f"  - {REPO / 'recipes' / 'fashion_mnist' / name}.yaml" for name in TIMED]
    path = tmp_path / "measured_study.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow
def test_plan_of_the_study_fits_its_measured_time(tmp_path):
    # the committed study's runs took 64 min of training on the reference CPU (README); its plan
    # must agree
    study = measured_study(tmp_path)
    proc = run_cli(
        "sweep",
        "--file",
        str(study),
        "--plan",
        "--devices",
        "1",
        "--window",
        "90m",
        "--history",
        str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    total = next(line for line in proc.stdout.splitlines() if line.startswith("total:"))
    hours = float(total.split()[1])
    assert 0.8 <= hours <= 1.4, total
    assert "1 devices x 1.5 h: fits" in proc.stdout
    proc = run_cli(
        "sweep",
        "--file",
        str(study),
        "--plan",
        "--devices",
        "1",
        "--window",
        "30m",
        "--history",
        str(tmp_path),
    )
    assert proc.returncode == 1 and "does NOT fit" in proc.stdout


@pytest.mark.slow
def test_history_replaces_the_rate_and_unknown_runs_are_said(tmp_path):
    runs = plan_sweep([], STUDY, [0], [])
    group = runs[0].group
    write_snapshot(
        tmp_path / "2026-01-01.parquet", [{"night": "2026-01-01", "group": group, "img_per_s_mean": 100.0}]
    )
    write_snapshot(
        tmp_path / "2026-01-02.parquet", [{"night": "2026-01-02", "group": group, "img_per_s_mean": 50.0}]
    )
    proc = run_cli("sweep", "--file", str(STUDY), "--seeds", "0", "--plan", "--history", str(tmp_path))
    line = next(line for line in proc.stdout.splitlines() if line.startswith(runs[0].run_id))
    assert "history 2026-01-02" in line and " 50 " in line  # the newest night wins
    nightly = run_cli(
        "sweep",
        "--file",
        str(REPO / "sweeps" / "nightly_gpu.yaml"),
        "--plan",
        "--devices",
        "8",
        "--window",
        "10h",
    )
    assert (
        nightly.returncode == 0 and "cannot tell" in nightly.stdout
    )  # CIFAR-100 has no rate before its first night


def test_packing_and_windows():
    assert pack([4, 3, 3, 2], 2) == 6 and pack([1.0], 8) == 1.0  # longest first onto the least-loaded device
    assert parse_window("10h") == 10 and parse_window("90m") == 1.5 and parse_window("3600s") == 1


def test_the_example_sweep_is_the_default_job_over_three_seeds(tmp_path):
    # sweeps/example.yaml says what it runs and what its plan is: both must hold
    example = REPO / "sweeps" / "example.yaml"
    setup = (REPO / "scripts" / "setup.sh").read_text()
    default = next(w for w in setup.split() if w.startswith("recipes/") and w.endswith(".yaml"))
    result = CliRunner().invoke(main, ["sweep", "--file", str(example), "--plan", "--history", str(tmp_path)])
    assert result.exit_code == 0, result.output
    rows = [line.split()[0] for line in result.output.splitlines()[1:-1]]
    assert rows == [load_recipe(REPO / default, [f"seed={s}"]).run_id for s in (0, 1, 2)]
    comment = " ".join(line.lstrip("# ") for line in example.read_text().splitlines() if line.startswith("#"))
    assert "the default job over three seeds" in comment and default in comment
    total = result.output.splitlines()[-1]  # total: 0.3 device-hours over 3 runs
    assert total.endswith(" device-hours over 3 runs"), total
    assert f"`--plan` says 3 runs, {total.split()[1]} device-hours" in comment


def test_plan_of_a_sweep_naming_a_missing_recipe_exits_2_naming_the_entry(tmp_path):
    write_recipe(tmp_path / "a.yaml", tiny_recipe())
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("recipes:\n  - a.yaml\n  - nope.yaml\n")
    runs_dir = tmp_path / "runs"
    entry = f"{sweep}: recipes[1]: {tmp_path / 'nope.yaml'}: recipe file not found"
    plan = CliRunner().invoke(main, ["sweep", "--file", str(sweep), "--plan", "--history", str(tmp_path)])
    assert plan.exit_code == 2, plan.output
    assert f"invalid: {entry}" in plan.stdout and plan.stderr == f"error: {entry}\n"
    # the sweep itself, under --fail-fast: the same line, nothing written
    args = ["sweep", "--file", str(sweep), "--fail-fast", "--runs-dir", str(runs_dir)]
    run = CliRunner().invoke(main, args)
    assert run.exit_code == 2 and run.stderr == f"error: {entry}\n" and not runs_dir.exists()


def shared_teacher_sweep(folder, **data):
    """Two students of one teacher run that the sweep file does not list."""
    write_recipe(folder / "teacher.yaml", tiny_recipe(data=data))
    for name, alpha in (("kd9", 0.9), ("kd5", 0.5)):
        student = tiny_recipe(strategy=kd_strategy(alpha), teacher={"run": "teacher.yaml"}, data=data)
        write_recipe(folder / f"{name}.yaml", student)
    sweep = folder / "sweep.yaml"
    sweep.write_text("seeds: [0]\nrecipes: [kd9.yaml, kd5.yaml]\n")
    return sweep


def test_plan_counts_and_times_the_teacher_run_the_sweep_trains_once(tmp_path):
    sweep = shared_teacher_sweep(tmp_path)
    teacher = load_recipe(tmp_path / "teacher.yaml", ["seed=0"]).run_id
    runs_dir = tmp_path / "runs"
    args = ["sweep", "--file", str(sweep), "--plan", "--runs-dir", str(runs_dir), "--history", str(tmp_path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    rows = result.output.splitlines()[1:-1]
    assert [row.split()[0] for row in rows] == [teacher, *(p.run_id for p in plan_sweep(sweep_file=sweep))]
    assert rows[0].split()[1] == "(teacher)" and rows[0].split()[2] == "2"  # its epochs, timed as a run
    assert result.output.splitlines()[-1].endswith("over 3 runs (3 unknown), 1 of them teacher runs")
    RunDir(runs_dir, teacher).write_status("completed")  # a completed teacher run is not trained again
    result = CliRunner().invoke(main, args)
    assert teacher not in result.output and "over 2 runs (2 unknown)\n" in result.output


def test_the_summary_counts_and_marks_the_teacher_run(tmp_path):
    # every run fails at its data check, before any worker starts: the summary still lists them all
    sweep = shared_teacher_sweep(tmp_path, root=str(tmp_path / "nowhere"))
    teacher = load_recipe(tmp_path / "teacher.yaml", ["seed=0"]).run_id
    summary = run_sweep(plan_sweep(sweep_file=sweep), tmp_path / "runs", SweepOptions(leaderboard=False))
    text = summary.render()
    assert text.startswith(f"sweep {summary.sweep_id}: 3 runs (1 teacher run): 3 failed"), text
    assert f"failed      {teacher}  teacher of " in text
    saved = json.loads(summary.path.read_text())
    assert saved["counts"]["failed"] == 3 and saved["runs"][0]["run_id"] == teacher
    assert [r["teacher_of"] is not None for r in saved["runs"]] == [True, False, False]
