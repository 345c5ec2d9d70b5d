"""Slurm resources of a sweep: the `slurm:` section of a sweep file, overridden by command options.

    slurm:
      partition: gpu            # sbatch --partition
      account: vision           # sbatch --account
      qos: normal               # sbatch --qos
      time: "10:00:00"          # time limit of each run's job: MM, HH:MM:SS or D-HH:MM:SS
      nodes: 1                  # nodes of each run (sbatch --nodes; one torchrun per node)
      gpus_per_run: 1           # GPUs of each run on each node (sbatch --gpus-per-node)
      cpus_per_run: 8           # CPU cores of each run on each node (sbatch --cpus-per-task)
      nproc_per_run: 1          # DDP processes of each run on each node (torchrun --nproc-per-node)
      mem: 64G                  # memory of each run (sbatch --mem)
      constraint: a100          # sbatch --constraint
      signal_before_s: 120      # SIGUSR2 this long before the time limit: checkpoint, requeue
      max_requeues: 3           # time-limit requeues of one run before it is reported failed
      sbatch: ["--exclusive"]   # any other sbatch options, `--key=value` or `--flag`

Checked like a recipe: an unknown key or a wrong type is one line naming it, exit status 2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from harness.errors import RecipeError
from harness.schema import field, from_dict, ge

_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")
_MEM = re.compile(r"^\d+[KMGT]?B?$", re.IGNORECASE)
_SBATCH = re.compile(r"^--[a-z][a-z0-9-]*(=.+)?$")


def time_minutes(text: str) -> int:
    """Slurm's time formats -> whole minutes (at least 1): `90`, `10:00:00`, `1-12:00:00`, `30:00`."""
    m = _TIME.match(text.strip())
    if not m:
        raise ValueError(text)
    days, a, b, c = (int(g) if g is not None else None for g in m.groups())
    if b is None:  # MM, or D-HH
        minutes = a * 60 if days is not None else a
    elif c is None:  # MM:SS, or D-HH:MM
        minutes = a * 60 + b if days is not None else a + (1 if b else 0)
    else:  # HH:MM:SS
        minutes = a * 60 + b + (1 if c else 0)
    return max(1, (days or 0) * 1440 + minutes)


def _check_time(value: str) -> str | None:
    try:
        time_minutes(value)
    except ValueError:
        return f"expected a Slurm time limit (MM, HH:MM:SS or D-HH:MM:SS), got {value!r}"
    return None


def _check_mem(value: str | None) -> str | None:
    if value is None or _MEM.match(value):
        return None
    return f"expected a Slurm memory size like 64G or 16000M, got {value!r}"


def _check_sbatch(values: list[str]) -> str | None:
    for v in values:
        if not _SBATCH.match(v):
            return f"expected sbatch options like --exclusive or --reservation=NAME, got {v!r}"
    return None


@dataclass(kw_only=True)
class SlurmResources:
    """What each run's job asks Slurm for (none of it changes a run's identity)."""

    partition: str | None = field(None, doc="sbatch --partition (default: the cluster's default)")
    account: str | None = field(None, doc="sbatch --account")
    qos: str | None = field(None, doc="sbatch --qos")
    time: str = field("12:00:00", check=_check_time, doc="time limit of each run's job")
    nodes: int = field(
        1, check=ge(1), doc="nodes of each run (sbatch --nodes): more than 1 starts one torchrun per node"
    )
    gpus_per_run: int = field(0, check=ge(0), doc="GPUs of each run on each node (sbatch --gpus-per-node)")
    cpus_per_run: int = field(
        1, check=ge(1), doc="CPU cores of each run on each node (sbatch --cpus-per-task)"
    )
    nproc_per_run: int = field(
        1, check=ge(1), doc="DDP processes of each run on each node: more than 1 starts it through torchrun"
    )
    mem: str | None = field(None, check=_check_mem, doc="memory of each run (sbatch --mem), e.g. 64G")
    constraint: str | None = field(None, doc="sbatch --constraint")
    signal_before_s: int = field(
        120, check=ge(10), doc="seconds before the time limit at which the run checkpoints and requeues"
    )
    max_requeues: int = field(3, check=ge(0), doc="time-limit requeues of one run before it fails")
    sbatch: list[str] = field([], check=_check_sbatch, doc="other sbatch options (`--key=value`, `--flag`)")

    @property
    def timeout_min(self) -> int:
        return time_minutes(self.time)

    def sbatch_extra(self) -> dict[str, Any]:
        """`sbatch:` options as submitit's additional parameters ({key: value or True})."""
        extra: dict[str, Any] = {}
        for opt in self.sbatch:
            key, _, value = opt[2:].partition("=")
            extra[key.replace("-", "_")] = value if value else True
        return extra


def load_resources(data: Any, where: str = "slurm") -> SlurmResources:
    """Strictly build the resources from a sweep file's `slurm:` mapping."""
    return from_dict(SlurmResources, data, where)


def with_options(resources: SlurmResources, **options: Any) -> SlurmResources:
    """Command-line options (None: not given) over the file's resources, checked the same way."""
    data = {k: v for k, v in vars(resources).items()}
    for key, value in options.items():
        if value is None or value == ():
            continue
        data[key] = list(value) if isinstance(value, tuple) else value
    try:
        return from_dict(SlurmResources, data, "slurm")
    except RecipeError as exc:  # name the option rather than the file key
        key, _, rest = str(exc).partition(": ")
        raise RecipeError(f"--{key.removeprefix('slurm.').replace('_', '-')}: {rest}") from None


__all__ = ["SlurmResources", "load_resources", "replace", "time_minutes", "with_options"]
