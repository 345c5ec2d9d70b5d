"""The strategy registry: one small file per training strategy, looked up by name.

A strategy is a loss with its own validated parameters. `build(name, **params)` returns an
instance with `needs_teacher` and `__call__(student_logits, targets, teacher_logits=None)`,
which returns a dict holding `"loss"` (the scalar to minimise) and its named, unweighted parts
(e.g. `"ce"`, `"kl"`). The runner logs every part and never branches on the strategy.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import torch

from harness.errors import RecipeError
from harness.schema import from_dict, suggest, to_dict

_REGISTRY: dict[str, type[Strategy]] = {}

LossDict = dict[str, torch.Tensor]


class Strategy(abc.ABC):
    """Base class: subclasses set `name`, `Params` (a dataclass) and implement `__call__`."""

    name: ClassVar[str]
    Params: ClassVar[type]
    needs_teacher: ClassVar[bool] = False

    def __init__(self, params: Any) -> None:
        self.params = params

    @abc.abstractmethod
    def __call__(
        self,
        student_logits: torch.Tensor,
        targets: torch.Tensor,
        teacher_logits: torch.Tensor | None = None,
    ) -> LossDict:
        """Loss and its unweighted parts for one batch."""

    def param_dict(self) -> dict[str, Any]:
        """The resolved parameters, defaults included (recorded with every run)."""
        return to_dict(self.params)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.param_dict().items())
        return f"{self.name}({args})"


def register(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator adding a strategy to the registry under `cls.name`; names are unique."""
    name = cls.name
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"strategy {name!r} is already registered by {_REGISTRY[name].__module__}")
    _REGISTRY[name] = cls
    return cls


def available() -> list[str]:
    """Sorted names of the registered strategies."""
    return sorted(_REGISTRY)


def get(name: str, path: str = "strategy.name") -> type[Strategy]:
    """The strategy class called `name`; an unknown name lists close matches and known names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        hint = suggest(name, _REGISTRY)
        raise RecipeError(
            f"{path}: unknown strategy {name!r}{hint} (known: {', '.join(available())})"
        ) from None


def build_from(name: str, params: dict[str, Any] | None, path: str = "strategy") -> Strategy:
    """Build a strategy, validating `params` strictly (errors name `<path>.params.<key>`)."""
    cls = get(name, f"{path}.name")
    return cls(from_dict(cls.Params, params or {}, f"{path}.params"))


def build(name: str, **params: Any) -> Strategy:
    """Public API: `build("kd", alpha=0.9, temperature=4)` -> a ready strategy."""
    return build_from(name, params)
