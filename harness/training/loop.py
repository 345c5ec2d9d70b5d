"""The one training loop: any strategy, any teacher, any loader; no per-strategy branches.

`Trainer.build` makes the data, the timm student, the strategy (and the teacher it needs), the
optimizer and scheduler; `Trainer.fit` trains epoch by epoch: teacher forward -> strategy ->
step, then evaluate -> write. After each evaluated epoch it appends a metrics row and rewrites
`metrics.parquet` atomically, and checkpoints. An interrupted run resumes from its last
checkpoint with `resume=True` and ends, on CPU, with exactly the metrics of an uninterrupted
run. The entry point, `harness.training.lifecycle.train(recipe, runs_dir)`, takes the run's lock and
signals around it and never retrains a finished run.

The pieces around the loop: `harness.runtime.runtime.Runtime` (device, seeds, autocast, memory
format, DDP world: started once per run and handed in), `harness.training.optim` (timm optimizer
and schedule), `harness.metrics.evaluate` (an epoch's metrics), `harness.teachers.teacher` and
`harness.teachers.cache` (the teacher and its soft-target cache), `harness.training.tracking`
(the epoch's loss sums) and `harness.runtime.signals` (stopping on SIGTERM/SIGINT).

Besides `fit`, benchmarks and scripts drive the loop through `fit_again` (the recipe's epochs
once more over a loader of their own), `training_steps` (one step per `next()`) and
`endless_batches`.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness import strategies
from harness.config.recipe import Recipe
from harness.data import DataBundle, build_data
from harness.data.base import Loader
from harness.errors import DivergedError, InterruptedRun, RunStateError
from harness.metrics.columns import TEACHER_COLUMNS, epoch_row, run_columns
from harness.metrics.evaluate import evaluate
from harness.models.features import split_output
from harness.runtime import distributed
from harness.runtime.distributed import World
from harness.runtime.runtime import Runtime
from harness.runtime.signals import StopSignal
from harness.store import checkpoint, provenance
from harness.store.files import write_json, write_text
from harness.store.metrics_file import read_metrics, write_metrics
from harness.store.rundir import RunDir
from harness.strategies import StepInputs
from harness.teachers import cache as teacher_cache
from harness.teachers.teacher import (
    RecipeTransform,
    Teacher,
    TrainRun,
    build_teacher,
    measure_teacher,
    view_forward,
)
from harness.training.assembly import setup_strategy, student_model, training_forward
from harness.training.optim import build_optimizer, build_scheduler
from harness.training.trackers import Trackers
from harness.training.tracking import LossTracker, progress_bar

log = logging.getLogger("harness")


@dataclass
class RunOptions:
    """How to execute a recipe (never part of the run's identity)."""

    device: str | None = None  # overrides recipe.runtime.device
    resume: bool = False  # continue an unfinished run from its last checkpoint
    restart: bool = False  # set an existing run aside (renamed, never deleted) and start over
    progress: bool | None = None  # progress bar; None: only on a terminal
    transform: RecipeTransform | None = None  # applied to teacher recipes too (e.g. smoke mode)


class Trainer:
    """One run of one recipe: build everything, train, evaluate, write, checkpoint.

    `runtime` is the run's `Runtime`, started by the caller (`lifecycle.train`); None starts it
    here from the recipe (its device overridden by `options.device`)."""

    def __init__(
        self,
        recipe: Recipe,
        runs_dir: Path,
        options: RunOptions,
        runtime: Runtime | None = None,
        train_teacher: TrainRun | None = None,
    ) -> None:
        self.recipe = recipe
        self.train_teacher = train_teacher  # trains a missing teacher run (None: one is required)
        self.runs_dir = Path(runs_dir)
        self.options = options
        self.runtime = runtime or Runtime.start(recipe.runtime, recipe.seed, options.device)
        self.run = RunDir(self.runs_dir, recipe.run_id)
        self.rows: list[dict[str, Any]] = []
        self.step = 0
        self.epoch = 0  # epochs completed
        self.trackers = Trackers()  # experiment trackers (none until `lifecycle.train` opens them)
        self._data: DataBundle | None = None  # set by `build`

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    @property
    def world(self) -> World:
        return self.runtime.world

    @property
    def data(self) -> DataBundle:
        """The run's data, once `build` has made it."""
        if self._data is None:
            raise RunStateError(f"run {self.recipe.run_id}: the trainer is not built yet (call build)")
        return self._data

    @property
    def built(self) -> bool:
        """Whether `build` got as far as the data (which `close` then closes)."""
        return self._data is not None

    def close(self) -> None:
        """Close the data's loaders (their workers and files), if built."""
        if self._data is not None:
            self._data.close()

    # -------------------------------------------------------------- building
    def build(self) -> None:
        """Data, student, strategy, teacher (and its cache), optimizer and scheduler, in the
        order that fixes every random draw."""
        r = self.recipe
        rt = self.runtime
        self._data = build_data(
            r.data,
            device=rt.device,
            seed=r.seed,
            rank=rt.world.rank,
            world_size=rt.world.world_size,
        )
        torch.manual_seed(r.seed)  # identical initial weights on every rank
        self.model, origin = student_model(r, self.data, rt)
        self.strategy = strategies.build_from(r.strategy.name, r.strategy.params)
        self.features = self.strategy.features
        self.train_model = training_forward(self.model, self.features.student, r, rt)
        self.teacher: Teacher | None = None
        if self.strategy.needs_teacher:
            self.teacher, weights = build_teacher(
                r,
                self.runs_dir,
                self.train_teacher,
                self.options.transform,
                self.data,
                rt,
            )
        origins = {"model": origin, "teacher": getattr(self.teacher, "origin", None)}
        provenance.report_pretrained(origins, self.say, self.run.provenance if self.world.is_main else None)
        self.global_batch = r.data.batch_size * self.world.world_size
        self.lr = r.optim.lr * (self.global_batch / r.optim.lr_base_batch if r.optim.lr_base_batch else 1.0)
        self.train_strategy = setup_strategy(self.strategy, r, self.data, self.model, self.teacher, rt)
        self.optimizer = build_optimizer(r, self.model, self.lr)
        for group in self.strategy.param_groups(self.lr, r.optim.weight_decay):
            self.optimizer.add_param_group(group)
        self.scheduler = build_scheduler(r, self.optimizer, len(self.data.train))
        teacher_metrics: dict[str, Any] = dict.fromkeys(TEACHER_COLUMNS)
        # the teacher's logits on each evaluated split: every epoch's fidelity compares with them
        self.teacher_logits: dict[str, list[torch.Tensor]] = {}
        if self.teacher is not None:
            teacher_metrics, self.teacher_logits = measure_teacher(
                self.teacher, self.data, r.eval.ece_bins, rt, self.say
            )
            if r.teacher is not None and r.teacher.cache:
                self.teacher = teacher_cache.open_or_build(
                    self.teacher,
                    weights,
                    self.data,
                    r,
                    runs_dir=self.runs_dir,
                    runtime=rt,
                    say=self.say,
                    forward=self.teacher_forward,
                    teacher_metrics=teacher_metrics,
                )
        self.columns = run_columns(
            r,
            strategy_params=self.strategy.param_dict(),
            global_batch=self.global_batch,
            lr_scaled=self.lr,
            eval_split=self.data.eval_split,
            teacher=teacher_metrics,
            holdout_hash=self.data.holdout_digest,
            environment=provenance.environment(rt.device, rt.world.world_size, rt.amp),
        )
        if self.world.is_main and self.data.holdout_digest is not None:
            provenance.record(
                self.run.provenance,
                "holdout",
                {"hash": self.data.holdout_digest, "samples": self.data.holdout_size},
            )
        # Training randomness (dropout, drop-path) starts here, apart per rank, whatever the
        # teacher's own training or evaluation did to the global generator.
        torch.manual_seed(r.seed + 1000 * self.world.rank)

    def teacher_forward(self, images: torch.Tensor) -> torch.Tensor:
        """The teacher exactly as a training step calls it (memory format, autocast)."""
        assert self.teacher is not None
        return view_forward(self.teacher, images, self.runtime)

    # -------------------------------------------------------------- state
    def state(self, step_in_epoch: int, tracker: LossTracker, elapsed: float) -> dict[str, Any]:
        return {
            "run_id": self.recipe.run_id,
            "recipe_hash": self.recipe.hash(),
            "epoch": self.epoch,
            "step": self.step,
            "step_in_epoch": step_in_epoch,
            "elapsed_in_epoch": elapsed,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "tracker": tracker.state(),
            "rng": checkpoint.rng_state(),
            "strategy": self.strategy.state_dict(),
        }

    def save_checkpoint(self, step_in_epoch: int, tracker: LossTracker, elapsed: float) -> None:
        self.strategy.merge_partial_sums(distributed.all_reduce_sum, keep=self.world.is_main)
        if self.world.distributed:
            tracker.merge(distributed.all_reduce_sum, keep=self.world.is_main)
        if self.world.is_main:
            checkpoint.save(self.run.last_checkpoint, self.state(step_in_epoch, tracker, elapsed))
        distributed.barrier()

    def restore(self) -> tuple[int, LossTracker, float]:
        """Load last.pt: returns (step within epoch, partial-epoch loss sums, elapsed seconds)."""
        state = checkpoint.load(self.run.last_checkpoint)
        if state.get("recipe_hash") != self.recipe.hash():
            raise RunStateError(f"{self.run.last_checkpoint}: checkpoint belongs to another recipe")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        checkpoint.set_rng_state(state["rng"])
        if "strategy" in state:
            self.strategy.load_state_dict(state["strategy"])
            if not self.world.is_main:  # the saved partial sums are all ranks' totals, kept on rank 0
                self.strategy.merge_partial_sums(lambda tensors: None, keep=False)
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        tracker = LossTracker(self.device)
        if self.world.is_main:  # the saved loss sums are all ranks' totals, kept on rank 0
            tracker.load(state["tracker"])
        if self.run.metrics.exists():
            self.rows = [r for r in read_metrics(self.run.metrics) if r["epoch"] <= self.epoch]
        return int(state["step_in_epoch"]), tracker, float(state["elapsed_in_epoch"])

    # -------------------------------------------------------------- records
    def say(self, line: str) -> None:
        """Say `line` in the log and the run's log file (rank 0 only)."""
        if self.world.is_main:
            log.info(line)
            self.run.log(line)

    def write_rows(self, status: str, diverged_step: int | None = None) -> None:
        if not self.world.is_main:
            return
        for row in self.rows:
            row["status"] = status
            row["diverged_step"] = diverged_step
        if self.rows:  # no rows read or made: the file on disk (if any) stays as it was
            write_metrics(self.run.metrics, self.rows)

    # -------------------------------------------------------------- training
    def batches(self, start: int, loader: Loader | None = None) -> Iterator[tuple[int, Any]]:
        """(position, batch) of the current epoch from batch `start` on, of `loader` (default: the
        run's training loader)."""
        return self.epoch_batches(self.epoch, start, loader)

    def epoch_batches(
        self, epoch: int, start: int = 0, loader: Loader | None = None
    ) -> Iterator[tuple[int, Any]]:
        """(position, batch) of `epoch`'s order and views from batch `start` on, of `loader`
        (default: the run's training loader)."""
        loader = self.data.train if loader is None else loader
        loader.set_epoch(epoch)
        for i, batch in enumerate(loader):
            if i >= start:
                yield i, batch

    def endless_batches(self) -> Iterator[tuple[int, Any]]:
        """(epoch, batch) of the training loader, epoch after epoch from the first, without end
        (for measuring steps outside `fit`)."""
        epoch = 0
        while True:
            for _, batch in self.epoch_batches(epoch):
                yield epoch, batch
            epoch += 1

    def training_steps(self, tracker: LossTracker) -> Iterator[int]:
        """Train one batch per `next()`, over `endless_batches` (each at its own epoch), adding
        its losses to `tracker`; yields the step count (for measuring steps outside `fit`)."""
        for epoch, batch in self.endless_batches():
            self.train_step(batch, tracker, epoch=epoch)
            yield self.step

    def step_inputs(
        self, batch: Any, x: torch.Tensor, i: int, steps: int, epoch: int | None = None
    ) -> StepInputs:
        """The student's forward (logits and declared features in one pass), the teacher's
        outputs and where training stands, for batch `i` of `steps` in `epoch` (default: the
        current one)."""
        epoch = self.epoch if epoch is None else epoch
        logits, feats = split_output(self.train_model(x))
        t_logits, t_feats = None, {}
        if self.teacher is not None:
            t_logits, t_feats = self.teacher.outputs_for(x, batch, epoch, self.features.teacher)
        epochs = self.recipe.schedule.epochs
        return StepInputs(
            student_logits=logits,
            targets=batch.targets,
            teacher_logits=t_logits,
            indices=batch.indices,
            epoch=epoch,
            epochs=epochs,
            step=self.step,
            progress=(epoch + i / max(steps, 1)) / epochs,
            num_classes=self.data.num_classes,
            student_features=feats,
            teacher_features=t_feats,
        )

    def train_step(
        self, batch: Any, tracker: LossTracker, i: int = 0, steps: int = 1, epoch: int | None = None
    ) -> dict[str, torch.Tensor]:
        """One update on `batch`, batch `i` of `steps` in `epoch` (default: the current one);
        returns its loss parts."""
        x = self.runtime.prepare(batch.images)
        with self.runtime.autocast():
            parts = self.train_strategy(self.step_inputs(batch, x, i, steps, epoch))
        self.optimizer.zero_grad(set_to_none=True)
        parts["loss"].backward()
        self.optimizer.step()
        self.step += 1
        if self.scheduler is not None:
            self.scheduler.step_update(num_updates=self.step)
        tracker.add(parts, len(batch), self.step)
        return parts

    def track_step(self, parts: dict[str, torch.Tensor]) -> None:
        """Send the step's loss and its named parts to the experiment trackers, if any (rank 0)."""
        if self.trackers:
            self.trackers.log_step(self.step, {k: float(v.detach()) for k, v in parts.items()})

    def check_finite(self, tracker: LossTracker) -> None:
        bad = distributed.all_reduce_max(tracker.first_bad_step() or -1)
        if bad >= 0:
            self.write_rows("diverged", bad)
            if self.world.is_main:
                self.run.write_status("diverged", epoch=self.epoch, step=bad, diverged_step=bad)
            raise DivergedError(f"run {self.recipe.run_id} diverged: non-finite loss at step {bad}")

    def fit(self, stop: StopSignal, loader: Loader | None = None) -> None:
        """Train every remaining epoch: train it, finish it (evaluate, write the metrics), then
        checkpoint it; a stop signal ends the run `interrupted` at a step or epoch boundary.
        `loader` trains on other batches than the run's training loader (the same count)."""
        start, tracker, elapsed = self.resume_point()
        while self.epoch < self.recipe.schedule.epochs:
            epoch_time = self.train_epoch(start, tracker, elapsed, stop, loader)
            self.finish_epoch(tracker, epoch_time)
            start, tracker, elapsed = 0, LossTracker(self.device), 0.0
            done = self.epoch == self.recipe.schedule.epochs
            self.checkpoint_epoch(done, tracker)
            if not done and stop.requested():
                self._interrupted(stop)

    def fit_again(self, stop: StopSignal, loader: Loader | None = None) -> None:
        """Train the recipe's epochs once more from the first, the model training on and each
        epoch's row appended (what the epoch benchmark times, over its timed `loader`)."""
        self.epoch = 0
        self.fit(stop, loader)

    def resume_point(self) -> tuple[int, LossTracker, float]:
        """(step within the epoch, its loss sums, its seconds so far) to train from: last.pt's
        with `resume` (then `running` is on disk at once), else the start of the epoch."""
        if not (self.options.resume and self.run.last_checkpoint.exists()):
            return 0, LossTracker(self.device), 0.0
        start, tracker, elapsed = self.restore()
        if self.world.is_main:  # training restarts now: say so before the epoch ends
            self.run.write_status("running", epoch=self.epoch, step=self.step)
        self.say(f"resuming at epoch {self.epoch + 1}, step {self.step}")
        return start, tracker, elapsed

    def train_epoch(
        self,
        start: int,
        tracker: LossTracker,
        elapsed: float,
        stop: StopSignal,
        loader: Loader | None = None,
    ) -> float:
        """Train the current epoch from its step `start` (`elapsed` seconds spent in it before)
        over `loader` (default: the run's training loader), checking the loss every `log_every`
        steps, checkpointing every `every_steps` and stopping at a step boundary on a signal;
        returns the epoch's seconds."""
        every = self.recipe.checkpoint.every_steps
        self.train_model.train()
        self.train_strategy.train()
        t0 = time.perf_counter() - elapsed
        steps = len(self.data.train if loader is None else loader)
        desc = f"epoch {self.epoch + 1}/{self.recipe.schedule.epochs}"
        bar = progress_bar(start, steps, desc, self.world.is_main, self.options.progress)
        for i, batch in self.batches(start, loader):
            parts = self.train_step(batch, tracker, i, steps)
            bar.update(1)
            if (i + 1) % self.recipe.runtime.log_every == 0:
                self.check_finite(tracker)
                self.track_step(parts)
                bar.set_postfix(loss=f"{float(tracker.sums['loss']) / max(tracker.count, 1):.4f}")
            stopping = stop.requested(self.step)
            if i + 1 < steps and (stopping or (every and self.step % every == 0)):
                self.check_finite(tracker)
                self.save_checkpoint(i + 1, tracker, time.perf_counter() - t0)
                if stopping:
                    bar.close()
                    self._interrupted(stop)
        bar.close()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - t0

    def finish_epoch(self, tracker: LossTracker, epoch_time: float) -> None:
        """Close the epoch (the strategy's epoch end, one set of BN statistics, the finite check),
        evaluate it where due and rewrite the metrics."""
        r = self.recipe
        self.strategy.end_epoch(distributed.all_reduce_sum)
        distributed.average_buffers(self.model)  # one set of BN statistics for eval and checkpoints
        self.check_finite(tracker)
        self.epoch += 1
        losses = tracker.means()
        samples = tracker.samples
        lr = self.optimizer.param_groups[0]["lr"]
        if self.epoch % r.eval.every == 0 or self.epoch == r.schedule.epochs:
            self.evaluate_epoch(losses, lr, epoch_time, samples)
        self.write_rows("completed" if self.epoch == r.schedule.epochs else "running")

    def evaluate_epoch(self, losses: dict[str, float], lr: float, epoch_time: float, samples: int) -> None:
        """Evaluate the student, append the epoch's metrics row and say it."""
        r = self.recipe
        t1 = time.perf_counter()
        m, held_out = (
            None
            if loader is None
            else evaluate(
                self.model,
                loader,
                self.data.num_classes,
                r.eval.ece_bins,
                self.runtime,
                reference=self.teacher_logits.get(split),
            )
            for split, loader in (("val", self.data.val), ("holdout", self.data.holdout))
        )
        assert m is not None
        eval_time = time.perf_counter() - t1
        self.rows.append(
            epoch_row(
                self.columns,
                epoch=self.epoch,
                step=self.step,
                metrics=m,
                holdout=held_out,
                losses=losses,
                lr=lr,
                epoch_time=epoch_time,
                eval_time=eval_time,
                samples=samples,
            )
        )
        self.trackers.log_epoch(self.epoch, self.rows[-1], self.columns)
        self.say(
            f"epoch {self.epoch}/{r.schedule.epochs} loss {losses.get('loss', math.nan):.4f} "
            f"top1 {m['top1']:.2f} nll {m['nll']:.4f} ece {m['ece']:.4f} "
            f"entropy {m['entropy']:.4f}"
            + (
                ""
                if held_out is None
                else f" | held out top1 {held_out['top1']:.2f} nll {held_out['nll']:.4f}"
            )
            + f" ({epoch_time:.1f} s, {samples / epoch_time:.0f} img/s)"
        )

    def checkpoint_epoch(self, done: bool, tracker: LossTracker) -> None:
        """Rank 0 keeps the epoch's weights where asked, then the final weights (`done`) or
        last.pt at the next epoch's start (`tracker` its empty sums), then the status; every rank
        waits for it."""
        r = self.recipe
        if self.world.is_main:
            if self.epoch in r.checkpoint.save_epochs:
                checkpoint.save(self.run.epoch_checkpoint(self.epoch), self._weights())
            if done:
                checkpoint.save(self.run.final_weights, self._weights())
            else:
                checkpoint.save(self.run.last_checkpoint, self.state(0, tracker, 0.0))
            self.run.write_status("completed" if done else "running", epoch=self.epoch, step=self.step)
            if done:
                # Only once `completed` is on disk: a kill before this line resumes from
                # last.pt instead of retraining from scratch over the finished metrics.
                self.run.last_checkpoint.unlink(missing_ok=True)
        distributed.barrier()

    def _weights(self) -> dict[str, Any]:
        d = self.data
        return {
            "run_id": self.recipe.run_id,
            "epoch": self.epoch,
            "arch": self.recipe.model.arch,
            "num_classes": d.num_classes,
            "in_chans": d.channels,
            "model": self.model.state_dict(),
        }

    def _interrupted(self, stop: StopSignal) -> None:
        name = signal.Signals(stop.signum).name if stop.signum else "a signal on another rank"
        self.write_rows("interrupted")
        if self.world.is_main:
            self.run.write_status("interrupted", epoch=self.epoch, step=self.step, signal=name)
        self.say(f"interrupted by {name} at step {self.step}: checkpoint saved, resume with --resume")
        raise InterruptedRun(f"run {self.recipe.run_id} interrupted by {name}; resume with --resume")

    def start_files(self) -> None:
        if not self.world.is_main:
            return
        write_text(self.run.recipe, self.recipe.to_yaml())
        record = provenance.collect(self.device, self.recipe.hash(), self.world.world_size)
        write_json(self.run.provenance, record)
