"""How a Slurm job starts a run on its nodes: one `torchrun` per node, joined by a rendezvous.

A job of `nodes: N` has one task per node (sbatch `--nodes=N --ntasks-per-node=1`). Each task
starts the same command, PyTorch's standard multi-node launch:

    torchrun --nnodes N --nproc-per-node G --node-rank $SLURM_NODEID \
        --rdzv-backend c10d --rdzv-endpoint HEAD:PORT --rdzv-id $SLURM_JOB_ID \
        -m harness run RECIPE --resume ...

HEAD is the allocation's first node (every task reads the same node list), PORT follows from the
job id (every task computes the same one without talking to the others, and a requeued job,
which keeps its id, meets on the same port again), and the rendezvous id is the job id. One node
is the case N = 1 of the same command, so a single-node run of several processes starts the same
way. Nothing here reads the environment or starts a process: plain values in, a command out.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: Rendezvous ports: PORT_BASE + job id modulo PORT_SPAN, below Linux's ephemeral range (32768+)
#: so that an outgoing connection never holds the port a rendezvous needs.
PORT_BASE = 20000
PORT_SPAN = 12000


@dataclass(frozen=True)
class Rendezvous:
    """Where and as what one node's torchrun joins the run's process group."""

    nodes: int  # torchrun --nnodes
    nproc_per_node: int  # torchrun --nproc-per-node (one rank per GPU)
    node_rank: int  # this node's index in the allocation (SLURM_NODEID)
    head: str  # the allocation's first node, host of the rendezvous store
    port: int
    run_id: str  # --rdzv-id: the Slurm job id

    @property
    def endpoint(self) -> str:
        return f"{self.head}:{self.port}"

    @property
    def world_size(self) -> int:
        return self.nodes * self.nproc_per_node


def rendezvous_port(job_id: str) -> int:
    """The rendezvous port of a job: PORT_BASE + (job id mod PORT_SPAN); `123_4` uses its digits."""
    digits = re.sub(r"\D", "", job_id)
    if not digits:
        raise ValueError(f"job id {job_id!r} has no digits to choose a rendezvous port from")
    return PORT_BASE + int(digits) % PORT_SPAN


def rendezvous_from_slurm(
    env: Mapping[str, str], hostnames: Sequence[str], nodes: int, nproc_per_node: int
) -> Rendezvous:
    """This node's rendezvous inside a Slurm job.

    `env` is the task's environment (SLURM_JOB_ID, SLURM_NODEID) and `hostnames` the allocation's
    nodes in order (submitit's `JobEnvironment().hostnames`, i.e. `scontrol show hostnames
    $SLURM_JOB_NODELIST`); the first of them hosts the rendezvous.
    """
    if not hostnames:
        raise ValueError("the job's node list is empty (SLURM_JOB_NODELIST unset?)")
    if len(hostnames) != nodes:
        raise ValueError(f"the job asked for {nodes} node(s) but Slurm allocated {len(hostnames)}")
    job_id = env.get("SLURM_JOB_ID", "")
    node_rank = int(env.get("SLURM_NODEID", "0"))
    if not 0 <= node_rank < nodes:
        raise ValueError(f"SLURM_NODEID {node_rank} outside the job's {nodes} node(s)")
    return Rendezvous(
        nodes=nodes,
        nproc_per_node=nproc_per_node,
        node_rank=node_rank,
        head=hostnames[0],
        port=rendezvous_port(job_id),
        run_id=job_id,
    )


def torchrun_command(
    rdzv: Rendezvous, harness_args: Sequence[str], python: str = sys.executable
) -> list[str]:
    """`python -m torch.distributed.run <rendezvous> -m harness <harness_args>` (torchrun)."""
    return [
        python,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        str(rdzv.nodes),
        "--nproc-per-node",
        str(rdzv.nproc_per_node),
        "--node-rank",
        str(rdzv.node_rank),
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        rdzv.endpoint,
        "--rdzv-id",
        rdzv.run_id,
        "-m",
        "harness",
        *harness_args,
    ]


__all__ = [
    "PORT_BASE",
    "PORT_SPAN",
    "Rendezvous",
    "rendezvous_from_slurm",
    "rendezvous_port",
    "torchrun_command",
]
