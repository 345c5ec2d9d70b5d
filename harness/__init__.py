"""harness: a benchmark harness for image classification with knowledge distillation.

Does knowledge distillation beat label smoothing, and why? Recipes pair a timm architecture with
a training strategy and a data loader; runs write per-epoch metrics to Parquet; the leaderboard
compares every strategy with its matched label-smoothing baseline over seeds.

The public API, importable as attributes after a plain `import harness`:
`harness.strategies.build(name, **params)`, the metric functions of `harness.metrics` and
`harness.leaderboard.generate(runs_dir, out_dir)`. Each of these parts is imported on first use
(PEP 562's module `__getattr__`), never at import time, so `import harness` alone loads no torch.
This lazy re-export is the one place where the bottom of the package names parts above it
(docs/architecture.md, `LAZY_EXPORTS` in tests/test_architecture.py).
"""

from types import ModuleType

__version__ = "0.1.0"

#: the public parts, imported by `__getattr__` on first use
PUBLIC_PARTS = ("leaderboard", "metrics", "strategies")

__all__ = ["__version__", *PUBLIC_PARTS]


def __getattr__(name: str) -> ModuleType:
    """Import a public part on first use (PEP 562); the import keeps it here as an attribute."""
    if name == "leaderboard":
        import harness.leaderboard as part
    elif name == "metrics":
        import harness.metrics as part
    elif name == "strategies":
        import harness.strategies as part
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return part


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(PUBLIC_PARTS))
