"""Where and how a run computes: the device, kernels and seeds, precision, memory format, the
DDP world (`torchrun`) and the stop signals.

May import: `harness.errors`, `harness.config`. Nothing above it (no loop, no teachers, no data).
"""
