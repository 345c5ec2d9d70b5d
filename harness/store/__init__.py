"""What a run leaves on disk: its folder, status and lock (`rundir`), atomic files and locks
(`files`), metrics.parquet (`metrics_file`), checkpoints, provenance.

May import: `harness.errors`, `harness.config`, `harness.metrics.columns` (the column registry).
Never the loop, sweeps or the CLI.
"""
