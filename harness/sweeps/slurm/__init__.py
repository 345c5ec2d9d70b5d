"""The Slurm executor: one job per run through submitit, followed until the last one ends.

What it keeps from the local sweep: a completed run is skipped, a diverged one reported, an
unfinished one resumed (the job runs the same worker as a local sweep, `python -m
harness.sweeps.worker`, which calls `lifecycle.train` with resume), a run held by another process
is `busy` (the same triage, `harness.sweeps.triage`), a failure ends that run only, and the
leaderboard is regenerated at the end.

* **One job per run**, the runs without a teacher in the sweep in one job array (they share the
  resources), each student on its own with an `afterok` dependency on its teacher's job, so the
  teacher trains once, before its students; a failed teacher leaves its students failed, with
  the reason (Slurm cancels them: `--kill-on-invalid-dep=yes`).
* **Several processes or nodes.** A run of `nproc_per_run` > 1 or `nodes` > 1 has one task per
  node; each starts `torchrun --nnodes N --nproc-per-node G --node-rank $SLURM_NODEID
  --rdzv-backend c10d --rdzv-endpoint <first node>:<port> --rdzv-id <job id> -m harness run
  RECIPE --resume` (harness.sweeps.launch); one node is the case N = 1 of the same command.
  The first node's task writes the Slurm record and handles the pre-emption signal.
* **Recorded before and after submission.** `<run>/slurm.json` is written (atomically) with
  state `submitting` before sbatch and with the job id right after; SIGINT/SIGTERM are held
  back in between, so an interrupted sweep never leaves a run submitted but unrecorded. A
  sweep run again adopts the jobs still queued or running instead of submitting them twice; and
  should a run ever get two jobs (a sweep killed with -9 inside sbatch), the run's lock lets only
  one of them train.
* **Pre-emption and time limits.** Each job asks for SIGUSR2 `signal_before_s` before its time
  limit (sbatch `--signal`). submitit catches it in the job's main process and calls
  `RunJob.checkpoint`, which passes SIGTERM to the worker: the run stops at its next step,
  writes its checkpoint and exits; submitit then requeues the job, whose next start resumes the
  run exactly. A job requeued or pre-empted by Slurm itself (`scontrol requeue`, a pre-empting
  partition) gets SIGTERM, which reaches the worker the same way. A job killed outright
  (`scancel`, a node failure) is reported failed, and the next sweep resumes the run from its
  last checkpoint.

Modules: `scheduler` (the Slurm client commands, job states, the preflight and each run's
`slurm.json` record), `job` (`RunJob`, what a job runs), `submission` (submit, follow, finish)
and `executor` (`SlurmExecutor`, the whole of `--executor slurm`). The status table of a runs
folder is `harness.sweeps.status`. This package's face imports nothing (submitit loads only
when a sweep submits).
"""
