"""Sweeps through a real Slurm (scripts/slurm-local.sh: a private one-node cluster) and --jobs N.

Every test that needs the cluster skips, with the reason, only when it cannot start.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from harness.config import load_recipe
from harness.store.metrics_file import read_metrics
from tests.support.recipes import KD, REPO, run_cli, tiny_recipe, write_recipe
from tests.support.runs import EXACT

pytestmark = [pytest.mark.fashion, pytest.mark.slow]

POLL = ("--poll", "0.5")


@pytest.fixture(scope="module")
def slurm():
    """Start the private cluster (idempotent); its SLURM_CONF for the sweeps of these tests."""
    proc = subprocess.run(
        [str(REPO / "scripts" / "slurm-local.sh"), "start"], capture_output=True, text=True, timeout=300
    )
    if proc.returncode != 0:
        pytest.skip(f"a local Slurm could not start: {(proc.stderr or proc.stdout).strip()}")
    conf = proc.stdout.strip().rsplit("SLURM_CONF=", 1)[-1].rstrip(")")
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf
    yield conf
    if old is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = old


def exact(run: Path) -> list[tuple]:
    return [tuple(r[k] for k in EXACT) for r in read_metrics(run / "metrics.parquet")]


def summary(runs_dir: Path) -> dict:
    """The newest sweep summary of `runs_dir`."""
    files = sorted((runs_dir / "sweeps").glob("*.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(files[-1].read_text())


def outcomes(runs_dir: Path) -> dict[str, str]:
    return {r["run_id"]: r["outcome"] for r in summary(runs_dir)["runs"]}


def wait_status(run: Path, ready, timeout: float = 180) -> dict:
    """Poll the run's status.json until `ready(status)`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            status = json.loads((run / "status.json").read_text())
        except (OSError, json.JSONDecodeError):
            status = {}
        if ready(status):
            return status
        time.sleep(0.2)
    raise AssertionError(f"{run}: status never got ready")


def job_of(run: Path) -> str:
    return json.loads((run / "slurm.json").read_text())["job_id"]


@pytest.fixture
def four(tmp_path) -> list[str]:
    """Two tiny 1-epoch recipes; x seeds 0,1 = 4 runs."""
    for lr in (0.05, 0.1):
        write_recipe(
            tmp_path / "r" / f"ce_{lr}.yaml",
            tiny_recipe(optim={"name": "sgd", "lr": lr}, schedule={"epochs": 1}),
        )
    return [str(tmp_path / "r" / "*.yaml"), "--seeds", "0,1"]


def test_four_runs_through_slurm_match_two_local_workers(slurm, four, tmp_path):
    local, cluster = tmp_path / "local", tmp_path / "slurm"
    proc = run_cli("sweep", *four, "--runs-dir", str(local), "--jobs", "2", "--no-leaderboard")
    assert proc.returncode == 0, proc.stderr
    # two workers at once, each on its own share of the cores
    folders = sorted(p.parent for p in local.glob("*/provenance.json"))
    provs = [json.loads((f / "provenance.json").read_text()) for f in folders]
    assert len(provs) == 4 and {p["scheduler"]["slot"] for p in provs} == {"0", "1"}
    spans = sorted(
        (
            time.mktime(time.strptime(p["started"], "%Y-%m-%dT%H:%M:%S%z")),
            json.loads((f / "status.json").read_text())["updated"],
        )
        for p, f in zip(provs, folders, strict=True)
    )
    assert any(b[0] <= a[1] for a, b in itertools.pairwise(spans)), spans  # two runs at once
    cpus = {tuple(p["scheduler"]["cpus"]) for p in provs}
    if (os.cpu_count() or 1) >= 2:
        assert len(cpus) == 2 and not set.intersection(*map(set, cpus)), cpus

    proc = run_cli("sweep", *four, "--runs-dir", str(cluster), "--executor", "slurm", *POLL)
    assert proc.returncode == 0, proc.stderr
    assert set(outcomes(cluster).values()) == {"ran"}
    assert "leaderboard:" in proc.stdout and (cluster / "leaderboard" / "leaderboard.md").exists()
    for run in sorted(local.glob("*/metrics.parquet")):
        assert exact(cluster / run.parent.name) == exact(run.parent), run.parent.name
        prov = json.loads((cluster / run.parent.name / "provenance.json").read_text())["scheduler"]
        assert prov["name"] == "slurm" and prov["node"] and prov["array_index"] in (0, 1, 2, 3)
        assert prov["job_id"] == job_of(cluster / run.parent.name)
    # again: everything is done, nothing is submitted
    proc = run_cli("sweep", *four, "--runs-dir", str(cluster), "--executor", "slurm", *POLL)
    assert proc.returncode == 0 and set(outcomes(cluster).values()) == {"skipped"}, proc.stderr
    assert "submitted" not in proc.stderr


@pytest.fixture(scope="module")
def long_run(tmp_path_factory):
    """A 4-epoch recipe (long enough to be interrupted mid-run) and its uninterrupted metrics."""
    root = tmp_path_factory.mktemp("slurm_long")
    path = write_recipe(
        root / "long.yaml", tiny_recipe(data={"train_subset": 2048}, schedule={"epochs": 4, "name": "cosine"})
    )
    # one thread, as a Slurm job of one core (cpus_per_run 1) runs it: CPU results are exact for
    # one thread count
    proc = run_cli(
        "sweep", str(path), "--runs-dir", str(root / "ref"), "--no-leaderboard", env={"OMP_NUM_THREADS": "1"}
    )
    assert proc.returncode == 0, proc.stderr
    run_id = load_recipe(path).run_id
    return path, run_id, exact(root / "ref" / run_id)


def release(job: str) -> None:
    """A requeued job waits out Slurm's requeue delay (BeginTime): let it start again now."""
    deadline = time.time() + 60
    while time.time() < deadline:
        state = subprocess.run(
            ["squeue", "-h", "-j", job, "-o", "%T %r"], capture_output=True, text=True
        ).stdout
        if state.startswith("PENDING"):
            subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], capture_output=True)
            if (
                "BeginTime"
                not in subprocess.run(
                    ["squeue", "-h", "-j", job, "-o", "%r"], capture_output=True, text=True
                ).stdout
            ):
                return
        time.sleep(0.2)


def test_preempted_and_requeued_job_resumes_exactly(slurm, long_run, tmp_path):
    path, run_id, reference = long_run
    runs = tmp_path / "runs"
    args = ("sweep", str(path), "--runs-dir", str(runs), "--executor", "slurm", "--no-leaderboard", *POLL)
    proc = run_cli(*args, "--no-wait")
    assert proc.returncode == 0 and "submitted" in proc.stdout, proc.stderr
    run = runs / run_id
    job = job_of(run)
    # the signal Slurm sends before a time limit or a pre-emption (--signal=USR2@N): checkpoint, requeue
    wait_status(run, lambda s: s.get("status") == "running" and s.get("epoch", 0) >= 1)
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    first = wait_status(run, lambda s: s.get("status") == "interrupted")
    release(job)
    # then Slurm's own requeue (SIGTERM to the job's processes), later in the run
    wait_status(run, lambda s: s.get("status") == "running" and s.get("epoch", 0) >= 2)
    subprocess.run(["scontrol", "requeue", job], check=True)
    second = wait_status(run, lambda s: s.get("status") == "interrupted")
    assert 0 < first["step"] < second["step"] < reference[-1][EXACT.index("step")]
    release(job)
    proc = run_cli(*args)  # adopts the requeued job instead of submitting another, and follows it
    assert proc.returncode == 0, proc.stderr
    assert f"already has job {job}" in proc.stderr and outcomes(runs)[run_id] == "ran"
    assert exact(run) == reference
    assert (run / "log.txt").read_text().count("resuming at epoch") == 2
    assert json.loads((run / "provenance.json").read_text())["scheduler"]["restart_count"] == 2


def test_scancelled_job_is_failed_then_resumed_by_the_next_sweep(slurm, long_run, tmp_path):
    path, run_id, reference = long_run
    runs = tmp_path / "runs"
    args = [
        sys.executable,
        "-m",
        "harness",
        "sweep",
        str(path),
        "--runs-dir",
        str(runs),
        "--executor",
        "slurm",
    ]
    args += ["--no-leaderboard", *POLL]
    sweep = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = runs / run_id
    wait_status(run, lambda s: s.get("status") == "running" and s.get("epoch", 0) >= 1)
    subprocess.run(["scancel", job_of(run)], check=True)
    _, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 1, err
    record = summary(runs)["runs"][0]
    assert record["outcome"] == "failed" and "cancelled" in record["error"] and "resumes" in record["error"]
    proc = run_cli(*args[3:])
    assert proc.returncode == 0, proc.stderr
    assert outcomes(runs)[run_id] == "ran" and exact(run) == reference


def test_students_wait_for_their_teacher_and_fail_with_it(slurm, tmp_path):
    write_recipe(tmp_path / "r" / "teacher.yaml", tiny_recipe(schedule={"epochs": 1}))
    # a teacher that diverges at its second epoch (lr x 1e8)
    write_recipe(
        tmp_path / "r" / "bad_teacher.yaml",
        tiny_recipe(schedule={"epochs": 2, "name": "step", "decay_epochs": 1, "decay_rate": 1e8}),
    )
    sweep_file = tmp_path / "r" / "sweep.yaml"
    for name, teacher in (("student", "teacher.yaml"), ("bad_student", "bad_teacher.yaml")):
        write_recipe(
            tmp_path / "r" / f"{name}.yaml",
            tiny_recipe(strategy=KD, teacher={"run": teacher}, schedule={"epochs": 1}),
        )
    sweep_file.write_text(
        "slurm: {cpus_per_run: 1, time: '10:00'}\n"
        "recipes: [student.yaml, teacher.yaml, bad_student.yaml, bad_teacher.yaml]\n"
    )
    runs = tmp_path / "runs"
    proc = run_cli("sweep", "--file", str(sweep_file), "--runs-dir", str(runs), "--executor", "slurm", *POLL)
    assert proc.returncode == 1, proc.stderr
    ids = {p.stem: load_recipe(p).run_id for p in (tmp_path / "r").glob("*teacher.yaml")}
    ids |= {p.stem: load_recipe(p).run_id for p in (tmp_path / "r").glob("*student.yaml")}
    got = outcomes(runs)
    assert got[ids["teacher"]] == "ran" and got[ids["student"]] == "ran"
    assert got[ids["bad_teacher"]] == "diverged" and got[ids["bad_student"]] == "failed"
    err = {r["run_id"]: r["error"] for r in summary(runs)["runs"]}[ids["bad_student"]]
    assert err == f"teacher run {ids['bad_teacher']} diverged"
    student = json.loads((runs / ids["student"] / "slurm.json").read_text())
    teacher = json.loads((runs / ids["teacher"] / "slurm.json").read_text())
    assert student["dependency"] == f"afterok:{teacher['job_id']}"
    assert student["started"] >= teacher["ended"]  # trained after its teacher, which trained once
    assert (runs / ids["teacher"] / "log.txt").read_text().count("epoch 1/1 loss") == 1
    assert not (runs / ids["bad_student"] / "metrics.parquet").exists()


def test_a_slurm_sweep_and_a_local_sweep_on_one_folder_train_each_run_once(slurm, four, tmp_path):
    runs = tmp_path / "runs"
    two = [four[0].replace("*", "ce_0.1"), "--seeds", "0,1"]
    base = [sys.executable, "-m", "harness", "sweep", *two, "--runs-dir", str(runs), "--no-leaderboard"]
    cluster = subprocess.Popen(
        [*base, "--executor", "slurm", *POLL],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while not list(runs.glob("*/slurm.json")) and time.time() < deadline:
        time.sleep(0.1)
    local = subprocess.run(base, cwd=REPO, capture_output=True, text=True, timeout=300)
    _, err = cluster.communicate(timeout=300)
    assert cluster.returncode == 0 and local.returncode == 0, err + local.stderr
    summaries = [json.loads(p.read_text()) for p in (runs / "sweeps").glob("*.json")]
    assert len(summaries) == 2
    for run in runs.glob("*-s?-*"):
        got = sorted(r["outcome"] for s in summaries for r in s["runs"] if r["run_id"] == run.name)
        assert got.count("ran") == 1 and set(got) <= {"ran", "skipped", "busy"}, (run.name, got)
        assert (run / "log.txt").read_text().count("epoch 1/1 loss") == 1


def test_bad_slurm_input_is_one_line_and_submits_nothing(slurm, four, tmp_path):
    runs = tmp_path / "runs"
    cases = [
        (["--partition", "nosuch"], {}, "slurm.partition: unknown partition 'nosuch'"),
        (["--time", "soon"], {}, "--time: expected a Slurm time limit"),
        (["--nodes", "2"], {}, "slurm.nodes: 2 nodes asked for each run, but partition 'debug' has 1"),
        ([], {"PATH": "/nonexistent"}, "sbatch not found on PATH"),
    ]
    bad_conf = tmp_path / "down.conf"
    bad_conf.write_text(
        Path(slurm).read_text().replace("SlurmctldPort=", "MessageTimeout=1\nSlurmctldPort=1")
    )
    cases.append(([], {"SLURM_CONF": str(bad_conf)}, "the Slurm controller does not answer"))
    sweep_file = tmp_path / "r" / "typed.yaml"
    sweep_file.write_text("slurm: {gpus_per_run: two}\nrecipes: ['*.yaml']\n")
    for extra, env, message in cases:
        if "PATH" in env:
            env = {"PATH": os.path.dirname(sys.executable)}  # python, but no Slurm client
        proc = run_cli(
            "sweep", *four, "--runs-dir", str(runs), "--executor", "slurm", *extra, env=env, timeout=120
        )
        assert proc.returncode == 2, (extra, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (extra, proc.stderr)
    proc = run_cli("sweep", "--file", str(sweep_file), "--runs-dir", str(runs), "--executor", "slurm")
    assert proc.returncode == 2 and "slurm.gpus_per_run: must be an integer" in proc.stderr, proc.stderr
    assert not list(runs.glob("*/slurm.json"))  # nothing submitted


def test_a_rerun_adopts_queued_jobs_and_a_local_sweep_leaves_them(slurm, four, tmp_path):
    runs = tmp_path / "runs"
    held = (
        "--executor",
        "slurm",
        "--no-wait",
        "--no-leaderboard",
        "--sbatch=--hold",
    )  # queued, never started
    proc = run_cli("sweep", *four, "--runs-dir", str(runs), *held)
    assert proc.returncode == 0 and set(outcomes(runs).values()) == {"submitted"}, proc.stderr
    jobs = {p.parent.name: job_of(p.parent) for p in runs.glob("*/slurm.json")}
    try:
        assert len(jobs) == 4 and len(set(jobs.values())) == 4
        again = run_cli("sweep", *four, "--runs-dir", str(runs), *held)
        assert again.returncode == 0 and again.stderr.count("already has job") == 4, again.stderr
        assert {p.parent.name: job_of(p.parent) for p in runs.glob("*/slurm.json")} == jobs
        local = run_cli("sweep", *four, "--runs-dir", str(runs), "--no-leaderboard")
        assert local.returncode == 0 and set(outcomes(runs).values()) == {"busy"}, local.stderr
        assert not list(runs.glob("*/metrics.parquet"))
        status = run_cli("sweep", "status", str(runs))
        assert status.returncode == 0 and status.stdout.count("pending") == 4, status.stdout
    finally:
        subprocess.run(["scancel", *jobs.values()], check=False)


@pytest.mark.timeout(600)  # a reference run of 2 processes, then the job twice
def test_two_process_run_starts_through_torchrun_rendezvous_and_resumes_exactly(slurm, tmp_path):
    """`nproc_per_run: 2`: the job's one task starts torchrun with a c10d rendezvous on the
    allocation's first node (the one-node case of the multi-node launch); SIGUSR2 checkpoints it,
    the requeued job resumes it, and it ends with the metrics of an uninterrupted `--nproc 2` run."""
    path = write_recipe(
        tmp_path / "ddp.yaml", tiny_recipe(data={"train_subset": 2048}, schedule={"epochs": 3})
    )
    run_id = load_recipe(path).run_id
    # the reference: torchrun by hand on this machine, one thread per rank as in a 2-core job
    ref = tmp_path / "ref"
    run_cli(
        "run", str(path), "--runs-dir", str(ref), "--nproc", "2", env={"OMP_NUM_THREADS": "1"}, check=True
    )
    runs = tmp_path / "runs"
    args = ("sweep", str(path), "--runs-dir", str(runs), "--executor", "slurm", "--no-leaderboard", *POLL)
    args += ("--nproc-per-run", "2", "--cpus-per-run", "2")
    proc = run_cli(*args, "--no-wait")
    assert proc.returncode == 0 and "submitted" in proc.stdout, proc.stderr
    run = runs / run_id
    job = job_of(run)
    wait_status(run, lambda s: s.get("status") == "running" and s.get("epoch", 0) >= 1)
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    stopped = wait_status(run, lambda s: s.get("status") == "interrupted")
    release(job)
    proc = run_cli(*args)  # adopts the requeued job and follows it
    assert proc.returncode == 0 and outcomes(runs)[run_id] == "ran", proc.stderr
    assert 0 < stopped["step"] < exact(ref / run_id)[-1][EXACT.index("step")]
    assert exact(run) == exact(ref / run_id)
    assert (run / "log.txt").read_text().count("resuming at epoch") == 1
    record = json.loads((run / "slurm.json").read_text())
    node = record["node"]
    assert record["rendezvous"] == {
        "endpoint": f"{node}:{20000 + int(job) % 12000}",
        "id": job,
        "nodes": [node],
        "nproc_per_node": 2,
        "world_size": 2,
    }
    assert json.loads((run / "provenance.json").read_text())["world_size"] == 2


def test_tune_through_slurm_keeps_two_trials_in_flight(slurm, tmp_path):
    """`harness tune --executor slurm --jobs 2`: each trial is one Slurm job, told from its run."""
    data = {"train_subset": 128, "val_subset": 64, "batch_size": 16, "holdout": {"size": 64}}
    write_recipe(tmp_path / "tiny_ce.yaml", tiny_recipe(data=data, schedule={"epochs": 1}))
    spec = tmp_path / "tune.yaml"
    spec.write_text("recipes: [tiny_ce.yaml]\ntrials: 2\nsampler: {name: random, seed: 1}\n")
    runs = tmp_path / "runs"
    args = ("--runs-dir", str(runs), "--executor", "slurm", "--jobs", "2", *POLL, "--no-leaderboard")
    proc = run_cli("tune", "--file", str(spec), *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = pq.read_table(runs / "tuning" / "tune" / "trials.parquet").to_pylist()
    assert [r["state"] for r in rows] == ["complete", "complete"]
    for r in rows:
        assert job_of(runs / r["run_id"])  # trained by a Slurm job
        assert r["objective"] == read_metrics(runs / r["run_id"] / "metrics.parquet")[-1]["holdout_top1"]
