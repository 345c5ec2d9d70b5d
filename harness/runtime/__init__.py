"""Where and how a run computes: the device, kernels and seeds, precision, memory format, the
DDP world (`torchrun`) and the stop signals. `runtime.Runtime` gathers the first four, started once
per run and handed to whatever computes (the loop, the teacher and its cache, `harness eval`).

May import: `harness.errors`, `harness.config`. Nothing above it (no loop, no teachers, no data).
"""
