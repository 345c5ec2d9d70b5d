"""The multi-node launch of a Slurm run (harness.sweeps.launch) and its `nodes` resource.

Plain values in, a torchrun command out; the `nodes` checks go through the real CLI (they fail
before Slurm is asked anything, so no cluster is needed).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from submitit import JobEnvironment

from harness.config import load_recipe
from harness.errors import RecipeError
from harness.store.metrics_file import read_metrics
from harness.sweeps.launch import (
    PORT_BASE,
    PORT_SPAN,
    Rendezvous,
    rendezvous_from_slurm,
    rendezvous_port,
    torchrun_command,
)
from harness.sweeps.resources import SlurmResources, load_resources
from tests.support.recipes import REPO, run_cli, tiny_recipe, write_recipe


def _after(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_two_nodes_meet_on_the_first_node_at_the_port_of_their_job():
    hosts = ["gpu07", "gpu08"]
    commands = []
    for node in ("0", "1"):
        env = {"SLURM_JOB_ID": "123456", "SLURM_NODEID": node, "SLURM_JOB_NUM_NODES": "2"}
        rdzv = rendezvous_from_slurm(env, hosts, nodes=2, nproc_per_node=4)
        assert rdzv.world_size == 8 and rdzv.node_rank == int(node)
        commands.append(torchrun_command(rdzv, ["run", "r.yaml", "--resume"], python="/py"))
    first, second = commands
    port = PORT_BASE + 123456 % PORT_SPAN
    assert first[:3] == ["/py", "-m", "torch.distributed.run"]
    assert first[-5:] == ["-m", "harness", "run", "r.yaml", "--resume"]
    for command in commands:
        assert _after(command, "--nnodes") == "2" and _after(command, "--nproc-per-node") == "4"
        assert _after(command, "--rdzv-backend") == "c10d"
        assert _after(command, "--rdzv-endpoint") == f"gpu07:{port}"
        assert _after(command, "--rdzv-id") == "123456"
    assert [_after(c, "--node-rank") for c in commands] == ["0", "1"]
    # the two commands differ in the node rank only
    assert [a for a in first if a != "0"] == [a for a in second if a != "1"]


def test_the_node_list_slurm_gives_names_the_first_node(monkeypatch):
    # Slurm's compressed list, read by submitit as `scontrol show hostnames` prints it (in a job
    # that submitit started, as a run's job is)
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "gpu[08-09],cpu3")
    hosts = JobEnvironment().hostnames
    assert hosts == ["gpu08", "gpu09", "cpu3"]
    rdzv = rendezvous_from_slurm({"SLURM_JOB_ID": "77", "SLURM_NODEID": "2"}, hosts, 3, 1)
    assert rdzv.endpoint == f"gpu08:{PORT_BASE + 77}" and rdzv.node_rank == 2


def test_one_node_is_the_same_command_with_one_node():
    rdzv = rendezvous_from_slurm({"SLURM_JOB_ID": "5", "SLURM_NODEID": "0"}, ["vm"], 1, 2)
    command = torchrun_command(rdzv, ["run", "r.yaml"], python="/py")
    assert _after(command, "--nnodes") == "1" and _after(command, "--node-rank") == "0"
    assert _after(command, "--rdzv-endpoint") == f"vm:{PORT_BASE + 5}"


def test_ports_stay_below_the_ephemeral_range_and_array_tasks_differ():
    ports = {rendezvous_port(str(job)) for job in range(1_000_000, 1_000_000 + PORT_SPAN)}
    assert len(ports) == PORT_SPAN and min(ports) == PORT_BASE and max(ports) < 32768
    assert rendezvous_port("41_3") != rendezvous_port("41_4")


@pytest.mark.parametrize(
    ("env", "hosts", "message"),
    [
        ({"SLURM_JOB_ID": "9", "SLURM_NODEID": "0"}, [], "node list is empty"),
        ({"SLURM_JOB_ID": "9", "SLURM_NODEID": "0"}, ["a"], "asked for 2 node(s) but Slurm allocated 1"),
        ({"SLURM_JOB_ID": "9", "SLURM_NODEID": "2"}, ["a", "b"], "SLURM_NODEID 2 outside"),
        ({"SLURM_NODEID": "0"}, ["a", "b"], "no digits"),
    ],
)
def test_an_inconsistent_allocation_is_named(env, hosts, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        rendezvous_from_slurm(env, hosts, 2, 1)


def test_nodes_resource_is_an_integer_of_at_least_one():
    assert load_resources({"nodes": 4}).nodes == 4 and SlurmResources().nodes == 1
    for bad, message in (("two", "must be an integer, got 'two'"), (0, "must be >= 1, got 0")):
        with pytest.raises(RecipeError, match=f"slurm.nodes: {message}"):
            load_resources({"nodes": bad})


def test_bad_nodes_on_the_command_line_or_in_the_file_is_one_line_exit_2(tmp_path):
    write_recipe(tmp_path / "r.yaml", tiny_recipe())
    sweep_file = tmp_path / "s.yaml"
    sweep_file.write_text("slurm: {nodes: 0}\nrecipes: [r.yaml]\n")
    cases = [
        (["--file", str(sweep_file)], "slurm.nodes: must be >= 1, got 0"),
        ([str(tmp_path / "r.yaml"), "--nodes", "two"], "--nodes: must be an integer, got 'two'"),
        ([str(tmp_path / "r.yaml"), "--nodes", "0"], "--nodes: must be >= 1, got 0"),
    ]
    for args, message in cases:
        proc = run_cli("sweep", *args, "--runs-dir", str(tmp_path / "runs"), "--executor", "slurm")
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], (args, proc.stderr)
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").glob("*/slurm.json"))


@pytest.mark.fashion
@pytest.mark.slow
def test_two_node_commands_started_by_hand_train_one_run_of_world_size_2(tmp_path):
    """The N = 2 commands, each started as one node would (here both on this machine, one rank
    each): their agents meet at the rendezvous and train one run of two ranks."""
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(schedule={"epochs": 1}))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    nodes = []
    for rank in (0, 1):
        rdzv = Rendezvous(nodes=2, nproc_per_node=1, node_rank=rank, head="127.0.0.1", port=port, run_id="t2")
        harness_args = ["run", str(path), "--runs-dir", str(tmp_path / "runs"), "--no-progress"]
        command = torchrun_command(rdzv, harness_args, python=sys.executable)
        nodes.append(subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True))
    errors = [node.communicate(timeout=300)[1] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], errors
    run = tmp_path / "runs" / load_recipe(path).run_id
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    assert json.loads((run / "provenance.json").read_text())["world_size"] == 2
    assert "process group: backend gloo, 2 rank(s)" in errors[0]
    assert [r["global_batch_size"] for r in read_metrics(run / "metrics.parquet")] == [128]
