"""Experiment trackers beside the Parquet record: TensorBoard, MLflow and Weights & Biases.

A recipe's `tracking:` section (or `--track tensorboard,mlflow,wandb`) names the trackers; each
logs the same things (docs/tracking.md): the resolved recipe as flattened typed params; run id,
seed, setting, method and teacher as tags; per epoch every numeric column of the metrics row
(`epoch/<column>`: student, teacher, held-out, fidelity, lr, throughput) at step = epoch; every
`runtime.log_every` steps the step's loss and its named parts (`step/<part>`) at the global step;
at the end the last row as `final/<column>` and metrics.parquet as an artifact (MLflow, W&B).

`Trackers` fans these calls out on rank 0 only. A tracker that fails (server down, disk full)
logs one warning and is dropped; the run goes on, Parquet stays the record. A resumed run
continues the same tracker runs: the W&B run id, the MLflow run id and the last logged epoch
and step are kept in `<run folder>/trackers.json`, and what was logged before is not logged again.
`check_installed` is the preflight: a tracker whose package is missing is one `TrackerError` line
with its install command, before anything trains.

May import: `harness.config` (the recipe), `harness.errors`, `harness.schema`, `harness.store`;
each tracker's package inside its adapter only.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import netrc
import os
import socket
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from harness.config.recipe import Recipe, TrackingConfig
from harness.errors import HarnessError
from harness.metrics.columns import TEACHER_METRICS
from harness.schema import to_dict
from harness.store.files import write_json
from harness.store.rundir import RunDir

log = logging.getLogger("harness")

#: tracker -> (module that must import, the extra that installs it)
PACKAGES = {
    "tensorboard": ("tensorboard", "harness[tensorboard]"),
    "mlflow": ("mlflow", "harness[mlflow]"),
    "wandb": ("wandb", "harness[wandb]"),
}
#: the longest param value MLflow stores (a longer description is cut, never refused)
PARAM_MAX = 6000
#: the file in the run folder that lets a resumed run continue its tracker runs
STATE_FILE = "trackers.json"


class TrackerError(HarnessError):
    """A tracker that cannot be used: its package is not installed."""


def check_installed(tracking: TrackingConfig | None) -> None:
    """Raise `TrackerError` (exit 2) naming the install command of the first tracker asked for
    whose package does not import."""
    for name in tracking.trackers if tracking is not None else ():
        module, extra = PACKAGES[name]
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a module set to None in sys.modules, a broken parent
            found = False
        if not found:
            raise TrackerError(f"tracking: {name} is not installed; pip install '{extra}' (or {module})")


def with_trackers(tracking: TrackingConfig | None, names: Iterable[str], group: str | None) -> list[str]:
    """The `--set` overrides that turn on `names` (`--track`) beside a recipe's own `tracking`
    trackers, and set the sweep's `group` where trackers are on and the recipe names none."""
    overrides = []
    names = list(dict.fromkeys(names))
    if names:
        on = list(dict.fromkeys([*(tracking.trackers if tracking else []), *names]))
        overrides.append(f"tracking.trackers={json.dumps(on)}")
    has_group = tracking is not None and tracking.group is not None
    if group is not None and not has_group and (names or (tracking is not None and tracking.trackers)):
        overrides.append(f"tracking.group={json.dumps(group)}")
    return overrides


def parse_track(text: str | None) -> list[str]:
    """`tensorboard,mlflow` -> ['tensorboard', 'mlflow'] (the `--track` option)."""
    if not text:
        return []
    names = [part.strip() for part in text.split(",") if part.strip()]
    for name in names:
        if name not in PACKAGES:
            raise TrackerError(f"--track {text}: unknown tracker {name!r}; choose from {', '.join(PACKAGES)}")
    return names


# ------------------------------------------------------------------------------ what is logged
def flat_params(recipe: Recipe) -> dict[str, bool | int | float | str]:
    """The resolved recipe flattened to `section.key` params, numbers and booleans kept as such,
    None as `null`, lists and mappings as JSON."""
    out: dict[str, bool | int | float | str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        elif isinstance(value, (bool, int, float, str)):
            out[prefix] = value
        else:
            out[prefix] = "null" if value is None else json.dumps(value, sort_keys=True)

    d = to_dict(recipe)
    d.pop("tracking", None)
    walk("", d)
    return out


def run_tags(recipe: Recipe) -> dict[str, str]:
    """The run's tags: run id, seed, setting, method and teacher (`none` without one)."""
    teacher = recipe.teacher
    source = "none"
    if teacher is not None:
        source = teacher.run or teacher.weights or teacher.arch or "none"
    tags = {
        "run_id": recipe.run_id,
        "seed": str(recipe.seed),
        "setting": recipe.setting()[0],
        "method": recipe.label,
        "teacher": source,
    }
    if recipe.tracking is not None and recipe.tracking.group:
        tags["group"] = recipe.tracking.group
    return tags


def epoch_scalars(row: dict[str, Any], run_columns: dict[str, Any]) -> dict[str, float]:
    """An epoch's numeric columns of a metrics row (those not repeated on every row, and the
    teacher's metrics), the loss parts as `train_part_<name>`; None and NaN left out."""
    values: dict[str, float] = {}
    for key, value in row.items():
        if key == "epoch" or (key in run_columns and key not in TEACHER_METRICS):
            continue
        if key == "train_parts" and isinstance(value, dict):
            for part, v in value.items():
                values[f"train_part_{part}"] = v
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            values[key] = value
    return {k: float(v) for k, v in values.items() if v is not None and math.isfinite(float(v))}


# ------------------------------------------------------------------------------ the adapters
class Tracker(Protocol):
    """One tracker's run: what `Trackers` calls on it."""

    name: str

    def log(self, values: dict[str, float], step: int) -> None: ...

    def finish(self, summary: dict[str, float], metrics_file: Path) -> None: ...

    def close(self, ok: bool) -> None: ...


class TensorBoardTracker:
    """Event files through `torch.utils.tensorboard.SummaryWriter`; params as hparams, tags as text."""

    name = "tensorboard"

    def __init__(self, folder: Path, params: dict[str, Any], tags: dict[str, str], fresh: bool) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        self.writer = SummaryWriter(log_dir=str(folder))
        if fresh:
            experiment, start, end = hparams(params, {})
            for summary in (experiment, start, end):
                self.writer.file_writer.add_summary(summary)
            for key, value in tags.items():
                self.writer.add_text(f"tags/{key}", value, 0)

    def log(self, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def finish(self, summary: dict[str, float], metrics_file: Path) -> None:
        self.log(summary, int(summary.get("final/epoch", 0)))

    def close(self, ok: bool) -> None:
        self.writer.close()


class MlflowTracker:
    """An MLflow run through `MlflowClient` (a local folder store by default)."""

    name = "mlflow"

    def __init__(
        self,
        uri: str,
        experiment: str,
        run_name: str,
        run_id: str | None,
        params: dict[str, Any],
        tags: dict[str, str],
    ) -> None:
        if "://" not in uri and not uri.startswith("file:"):  # a folder: MLflow's file store
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.entities import Param, RunTag
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)
        if run_id is None:
            run = self.client.create_run(self._experiment_id(experiment), run_name=run_name, tags=tags)
            run_id = run.info.run_id
            items = list(params.items())
            for i in range(0, len(items), 100):  # MLflow takes at most 100 params a call
                batch = [Param(k, str(v)[:PARAM_MAX]) for k, v in items[i : i + 100]]
                self.client.log_batch(run_id, params=batch)
            self.client.log_batch(run_id, tags=[RunTag("mlflow.runName", run_name)])
        else:
            self.client.update_run(run_id, status="RUNNING")
        self.run_id = run_id

    def _experiment_id(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name)
        except Exception:  # another run of the sweep made it first
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def log(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(key, value, now, step) for key, value in values.items()]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + 1000])

    def finish(self, summary: dict[str, float], metrics_file: Path) -> None:
        self.log(summary, int(summary.get("final/epoch", 0)))
        self.client.log_artifact(self.run_id, str(metrics_file))

    def close(self, ok: bool) -> None:
        self.client.set_terminated(self.run_id, "FINISHED" if ok else "KILLED")


class WandbTracker:
    """A W&B run (`wandb.init` with `resume="allow"`), its files under the run folder."""

    name = "wandb"

    def __init__(
        self, folder: Path, config: Any, run_name: str, run_id: str | None, params: dict, tags: dict
    ) -> None:
        import wandb
        from wandb.sdk.lib.runid import generate_id

        self.wandb = wandb
        self.run = wandb.init(
            project=config.project,
            entity=config.entity,
            group=tags.get("group"),
            tags=[*config.tags, tags["method"], tags["setting"]],
            name=run_name,
            id=run_id or generate_id(),
            resume="allow",
            dir=str(folder),
            mode=wandb_mode(config.mode),
            config={**params, **{f"tag.{k}": v for k, v in tags.items()}},
            settings=wandb.Settings(console="off", x_disable_stats=True, silent=True),
        )
        self.run_id = self.run.id
        self.run.define_metric("epoch")
        self.run.define_metric("epoch/*", step_metric="epoch")
        self.run.define_metric("final/*", step_metric="epoch")
        self.run.define_metric("step")
        self.run.define_metric("step/*", step_metric="step")

    def log(self, values: dict[str, float], step: int) -> None:
        x = "step" if any(k.startswith("step/") for k in values) else "epoch"
        self.run.log({x: step, **values})

    def finish(self, summary: dict[str, float], metrics_file: Path) -> None:
        self.run.summary.update(summary)
        artifact = self.wandb.Artifact(f"metrics-{self.run_id}", type="metrics")
        artifact.add_file(str(metrics_file))
        self.run.log_artifact(artifact)

    def close(self, ok: bool) -> None:
        self.run.finish(exit_code=0 if ok else 1)


def wandb_mode(mode: str) -> str:
    """`online` or `offline`: WANDB_MODE when set; with `auto`, offline (said in one log line)
    when there is no API key (WANDB_API_KEY, ~/.netrc) or api.wandb.ai does not answer in 3 s."""
    env = os.environ.get("WANDB_MODE")
    if env:
        return "offline" if env in ("offline", "dryrun") else env
    if mode != "auto":
        return mode
    reason = None
    if not _wandb_api_key():
        reason = "no API key (WANDB_API_KEY or `wandb login`)"
    else:
        host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
        try:
            socket.create_connection((host.split(":")[0], int(host.split(":")[1]) if ":" in host else 443), 3)
        except OSError:
            reason = f"{host} does not answer"
    if reason:
        log.info("wandb: %s; logging offline in the run folder (upload later with `wandb sync`)", reason)
        return "offline"
    return "online"


def _wandb_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


# ------------------------------------------------------------------------------ the fan-out
class Trackers:
    """The run's trackers (none by default): every call goes to each, a failing one is dropped
    with one warning; what a resumed run logged before (`trackers.json`) is not logged again."""

    def __init__(self, trackers: list[Tracker] | None = None, state_file: Path | None = None) -> None:
        self.trackers = trackers or []
        self.state_file = state_file
        self.state: dict[str, Any] = {}
        if state_file is not None and state_file.exists():
            try:
                self.state = json.loads(state_file.read_text())
            except (OSError, ValueError) as exc:  # unreadable: new tracker runs, the run goes on
                log.warning("tracking: cannot read %s (%s); starting new tracker runs", state_file, exc)

    def __bool__(self) -> bool:
        return bool(self.trackers)

    @classmethod
    def open(cls, recipe: Recipe, run: RunDir, runs_dir: Path, is_main: bool) -> Trackers:
        """Start (or continue) the trackers `recipe.tracking` names, on rank 0 only."""
        tracking = recipe.tracking
        if not is_main or tracking is None or not tracking.trackers:
            return cls()
        self = cls([], run.root / STATE_FILE)
        params, tags = flat_params(recipe), run_tags(recipe)
        for name in tracking.trackers:
            self._call(name, lambda n=name: self._add(n, recipe, run, runs_dir, params, tags))
        self._save()
        return self

    def _add(
        self, name: str, recipe: Recipe, run: RunDir, runs_dir: Path, params: dict, tags: dict[str, str]
    ) -> None:
        tracking = recipe.tracking
        assert tracking is not None
        known = self.state.get(name, {})
        if name == "tensorboard":
            root = tracking.tensorboard.root
            folder = Path(root) / recipe.run_id if root else run.root / "tensorboard"
            tracker: Tracker = TensorBoardTracker(folder, params, tags, fresh=not known)
            self.state[name] = {"folder": str(folder)}
        elif name == "mlflow":
            uri = tracking.mlflow.tracking_uri or str((runs_dir / "mlruns").resolve())
            experiment = tracking.mlflow.experiment or tags["setting"]
            tracker = MlflowTracker(uri, experiment, recipe.run_id, known.get("run_id"), params, tags)
            self.state[name] = {"run_id": tracker.run_id, "tracking_uri": uri, "experiment": experiment}
        else:
            tracker = WandbTracker(run.root, tracking.wandb, recipe.run_id, known.get("run_id"), params, tags)
            self.state[name] = {"run_id": tracker.run_id}
        self.trackers.append(tracker)

    def _call(self, name: str, call: Any) -> None:
        """`call()`, or one warning naming the tracker, which is dropped (the run goes on)."""
        try:
            call()
        except Exception as exc:
            line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            kind = type(exc).__name__
            log.warning("tracking: %s failed (%s: %s); the run goes on without it", name, kind, line)
            self.trackers = [t for t in self.trackers if t.name != name]

    def _each(self, method: str, *args: Any) -> None:
        for tracker in list(self.trackers):
            self._call(tracker.name, lambda t=tracker: getattr(t, method)(*args))

    def _save(self, durable: bool = True) -> None:
        """Write the state file: atomically and synced (`write_json`) at epochs, or only replaced
        (no fsync: a step's log costs no disk flush; a crash may lose it and re-log a few steps)."""
        if self.state_file is not None and self.state_file.parent.exists():
            try:
                if durable:
                    write_json(self.state_file, self.state)
                else:
                    tmp = self.state_file.with_name(f".{STATE_FILE}.tmp")
                    tmp.write_text(json.dumps(self.state, indent=2, sort_keys=True) + "\n")
                    os.replace(tmp, self.state_file)
            except OSError as exc:
                log.warning("tracking: cannot write %s (%s)", self.state_file, exc)
                self.state_file = None

    def log_step(self, step: int, parts: dict[str, float]) -> None:
        """The step's loss and its named parts, once per step (a replayed step is skipped)."""
        if not self.trackers or step <= self.state.get("last_step", 0):
            return
        self._each("log", {f"step/{k}": v for k, v in parts.items()}, step)
        self.state["last_step"] = step
        self._save(durable=False)

    def log_epoch(self, epoch: int, row: dict[str, Any], run_columns: dict[str, Any]) -> None:
        """An epoch's metrics row, once per epoch (an epoch logged before a resume is skipped)."""
        if not self.trackers or epoch <= self.state.get("last_epoch", 0):
            return
        values = epoch_scalars(row, run_columns)
        self._each("log", {f"epoch/{k}": v for k, v in values.items()}, epoch)
        self.state["last_epoch"] = epoch
        self._save()

    def finish(self, rows: list[dict[str, Any]], run_columns: dict[str, Any], metrics_file: Path) -> None:
        """The last row as the `final/` summary and metrics.parquet as an artifact; then close."""
        if self.trackers and rows:
            summary = {f"final/{k}": v for k, v in epoch_scalars(rows[-1], run_columns).items()}
            summary["final/epoch"] = float(rows[-1]["epoch"])
            if not self.state.get("finished"):
                self._each("finish", summary, metrics_file)
                self.state["finished"] = True
                self._save()
        self.close(ok=True)

    def close(self, ok: bool = False) -> None:
        """End every tracker's run (failed or interrupted unless `ok`)."""
        self._each("close", ok)
        self.trackers = []
        self._save()
