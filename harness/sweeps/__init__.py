"""Many runs: sweep files, plans and cost estimates, summaries and status, the nightly, the worker
and the executors (local slots, Slurm through submitit, the multi-node launch).

May import `harness.training` (a run), `harness.store`, `harness.config`, `harness.leaderboard`
(regeneration at the end). Never the CLI.
"""
