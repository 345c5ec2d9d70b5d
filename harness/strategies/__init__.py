"""Training strategies: one module per strategy, registered by name.

Public API (used by tools outside the project):
    `harness.strategies.build(name, **params)` -> strategy with `needs_teacher` and
    `__call__(student_logits, targets, teacher_logits=None) -> {"loss": ..., <parts>}`.

Every module in this package other than `registry` and `functional` defines one strategy and is
imported here, so adding a strategy means adding its file (and its test) and nothing else.
"""

import importlib
import pkgutil

from harness.strategies.registry import Strategy, available, build, build_from, get, register

_NOT_STRATEGIES = {"registry", "functional"}

for _info in pkgutil.iter_modules(__path__):
    if _info.name not in _NOT_STRATEGIES and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["Strategy", "available", "build", "build_from", "get", "register"]
