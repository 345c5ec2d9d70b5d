"""Many runs: sweep files, plans and cost estimates, summaries and status, the nightly, the worker
and the executors (local slots, Slurm through submitit, the multi-node launch).

Modules, lower first (each imports only those above it):

* `resources`: a run's Slurm resources (the sweep file's `slurm:`);
* `spec`: the sweep file format (`SweepFile`, `SweepEntry`, `load_sweep_file`, `parse_seeds`, `expand`);
* `plan`: `PlannedRun`, `plan_sweep`, `with_teacher_runs` (the teacher runs a sweep trains), `teacher_run_id`;
* `summary`: `RunRecord`, `SweepSummary`, the outcomes and the exit status;
* `executor`: `SweepOptions`, the `Executor` interface, the leaderboard at the end;
* `slurm.scheduler`: the Slurm client commands, job states, preflight, each run's `slurm.json`;
* `status`: the tables of run states (`harness sweep --status`, the runs a Slurm sweep follows);
* `triage`: what a sweep does with each run, the same under every executor;
* `worker`: one run in its own process (`python -m harness.sweeps.worker SPEC RESULT`);
* `local`: `SerialExecutor` (`--jobs 1`) and `SlotsExecutor` (`--jobs N`);
* `launch`: one `torchrun` per node of a Slurm job; `slurm.job`: `RunJob`, what a job runs;
* `slurm.submission` (submit, follow, finish) and `slurm.executor` (`SlurmExecutor`);
* `sweep`: `run_sweep` and `executor_for`, the one choice of executor;
* `nightly`: the nightly benchmark; `estimate`: `--plan`'s device-hours.

May import `harness.training` (a run), `harness.store`, `harness.config`, `harness.leaderboard`
(regeneration at the end). Never the CLI.
"""
