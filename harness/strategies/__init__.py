"""Training strategies: one module per strategy, registered by name.

Public API (used by tools outside the project):
    `harness.strategies.build(name, **params)` -> a strategy (a `torch.nn.Module`) with
    `needs_teacher`, `features` and `strategy(StepInputs(...)) -> {"loss": ..., <parts>}`
    (the interface: `harness.strategies.registry`).

Every module in this package other than `registry` and `functional` defines one strategy and is
imported here, so adding a strategy means adding its file (and its test) and nothing else.
"""

import importlib
import pkgutil

from harness.strategies.registry import (
    FeatureSpec,
    SetupInfo,
    StepInputs,
    Strategy,
    available,
    build,
    build_from,
    get,
    register,
)

_NOT_STRATEGIES = {"registry", "functional"}

for _info in pkgutil.iter_modules(__path__):
    if _info.name not in _NOT_STRATEGIES and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = [
    "FeatureSpec",
    "SetupInfo",
    "StepInputs",
    "Strategy",
    "available",
    "build",
    "build_from",
    "get",
    "register",
]
