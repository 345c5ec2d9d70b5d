"""The strategy registry and the interface every strategy implements.

A strategy is a loss with its own validated parameters, written as a `torch.nn.Module` so it can
own trainable modules (connectors, projection heads, a learnable temperature) and non-trainable
state (buffers: a per-class soft-label table, a memory bank). Per training step the runner builds
one `StepInputs` and calls `strategy(step)`, which returns a dict holding `"loss"` (the scalar to
minimise) and its named, unweighted parts (e.g. `"ce"`, `"kl"`). The runner logs every part and
never branches on the strategy. What a strategy needs, it declares:

* `needs_teacher` (class attribute): the recipe must name a teacher; `step.teacher_logits` is set.
* `declared_features(params)` (a class method returning a `FeatureSpec`; the instance's read-only
  `features` is its value; the recipe checks it without building the strategy): the stages of the student's
  and the teacher's timm feature pyramid (`feature_info` indices, negative from the end, or
  `"pre_logits"` for the pooled embedding the classifier reads) it needs; they arrive in
  `step.student_features[stage]` and `step.teacher_features[stage]` from the same student forward
  as the logits (timm's `forward_intermediates`), the teacher's under no_grad. A strategy that
  needs teacher features cannot use the teacher cache (refused at validation).
* `setup(info)`: called once, after the models exist and before the optimizer is built, with
  the feature shapes and the data size; create modules and buffers here. Under DDP `info` also
  holds this rank, the number of ranks and the all-reduce-sum (`info.reduce`, a no-op alone), for
  state that must agree across ranks at every step (CRD's memory banks).
* `param_groups(lr, weight_decay)`: the optimizer groups of its trainable parameters (default:
  one group with the recipe's lr and weight decay).
* `partial_sums` (class attribute): names of buffers that hold per-rank sums within an epoch;
  the runner sums them across ranks before a checkpoint (keeping them on rank 0 only).
* `end_epoch(reduce)`: called on every rank after an epoch's last step, with an all-reduce-sum
  function (a no-op alone), e.g. to turn an epoch's statistics into next epoch's targets.

Its `state_dict()` (parameters and buffers) is saved in every checkpoint and restored on resume.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch

from harness.errors import RecipeError, TeacherError
from harness.schema import from_dict, suggest, to_dict

_REGISTRY: dict[str, type[Strategy]] = {}

LossDict = dict[str, torch.Tensor]
Stage = int | Literal["pre_logits"]
Reduce = Callable[[list[torch.Tensor]], None]


def alone(tensors: list[torch.Tensor]) -> None:
    """The all-reduce-sum of a single process: every tensor is already the total."""


@dataclass(frozen=True)
class FeatureSpec:
    """Feature stages a strategy needs: timm `feature_info` indices (negative from the end) or
    `"pre_logits"` (the pooled embedding the classifier reads), for the student and the teacher."""

    student: tuple[Stage, ...] = ()
    teacher: tuple[Stage, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.student or self.teacher)


@dataclass(frozen=True)
class SetupInfo:
    """What a strategy may size its modules and state by (shapes exclude the batch dimension)."""

    num_classes: int
    train_size: int = 0  # samples in the training split (all ranks): memory banks by sample index
    epochs: int = 1
    steps_per_epoch: int = 1
    student_shapes: dict[Stage, tuple[int, ...]] = field(default_factory=dict)
    teacher_shapes: dict[Stage, tuple[int, ...]] = field(default_factory=dict)
    rank: int = 0  # under DDP: this rank, among `world_size`
    world_size: int = 1
    reduce: Reduce = alone  # sums each tensor across ranks in place (the one `end_epoch` gets)


@dataclass
class StepInputs:
    """Everything a strategy may read at one training step.

    `epoch` is the 0-based epoch being trained, `step` the number of updates done before this
    one, `progress` = (epoch + batch / steps_per_epoch) / epochs in [0, 1). `indices` are the
    batch's positions in the training split (None where the loader cannot report them).
    """

    student_logits: torch.Tensor
    targets: torch.Tensor
    teacher_logits: torch.Tensor | None = None
    indices: torch.Tensor | None = None
    epoch: int = 0
    epochs: int = 1
    step: int = 0
    progress: float = 0.0
    num_classes: int = 0
    student_features: dict[Stage, torch.Tensor] = field(default_factory=dict)
    teacher_features: dict[Stage, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.num_classes:
            self.num_classes = int(self.student_logits.shape[-1])

    def teacher(self, name: str) -> torch.Tensor:
        """The teacher's logits, or a clear error naming the strategy that needs them."""
        if self.teacher_logits is None:
            raise TeacherError(f"strategy {name!r} needs teacher logits; the recipe names no teacher")
        return self.teacher_logits


class Strategy(torch.nn.Module, abc.ABC):
    """Base class: subclasses set `name`, `Params` (a dataclass) and implement `forward(step)`."""

    name: ClassVar[str]
    Params: ClassVar[type]
    needs_teacher: ClassVar[bool] = False
    partial_sums: ClassVar[tuple[str, ...]] = ()
    #: Parameters for an example of the strategy (the contract test): fills the required ones.
    example: ClassVar[dict[str, Any]] = {}

    def __init__(self, params: Any) -> None:
        super().__init__()
        self.params = params

    @classmethod
    def declared_features(cls, params: Any) -> FeatureSpec:
        """The feature stages the strategy needs with these (validated) `params` (default: none)."""
        return FeatureSpec()

    @property
    def features(self) -> FeatureSpec:
        """The feature stages this strategy needs: what `declared_features` says of its params
        (read-only, so the recipe's checks and the run see the same stages)."""
        return self.declared_features(self.params)

    def __call__(
        self,
        step: StepInputs | torch.Tensor,
        targets: torch.Tensor | None = None,
        teacher_logits: torch.Tensor | None = None,
        **fields: Any,
    ) -> LossDict:
        """`strategy(step)`, or the short form `strategy(student_logits, targets, teacher_logits,
        **other StepInputs fields)` for logit-only use outside a training loop."""
        if not isinstance(step, StepInputs):
            assert targets is not None, "strategy(student_logits, targets, ...) needs the targets"
            step = StepInputs(student_logits=step, targets=targets, teacher_logits=teacher_logits, **fields)
        return super().__call__(step)

    @abc.abstractmethod
    def forward(self, step: StepInputs) -> LossDict:
        """Loss and its unweighted parts for one batch."""

    def setup(self, info: SetupInfo) -> None:
        """Create modules and buffers once the shapes are known (default: nothing)."""

    def param_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """Optimizer groups of the strategy's own trainable parameters (none by default)."""
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": params, "lr": lr, "weight_decay": weight_decay}] if params else []

    def end_epoch(self, reduce: Reduce) -> None:
        """Called on every rank after an epoch's last step (default: nothing)."""

    def merge_partial_sums(self, reduce: Reduce, keep: bool) -> None:
        """Sum the `partial_sums` buffers across ranks; `keep` on one rank, zero elsewhere, so
        the totals are unchanged and a checkpoint written by that rank holds all of them."""
        buffers = [getattr(self, name) for name in self.partial_sums]
        if buffers:
            reduce(buffers)
            if not keep:
                for b in buffers:
                    b.zero_()

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


def check(name: str, params: dict[str, Any] | None, path: str = "strategy") -> Any:
    """The validated `Params` of strategy `name`, without building the strategy (errors name
    `<path>.name` or `<path>.params.<key>`)."""
    cls = get(name, f"{path}.name")
    return from_dict(cls.Params, params or {}, f"{path}.params")


def declared_features(name: str, params: dict[str, Any] | None, path: str = "strategy") -> FeatureSpec:
    """The feature stages strategy `name` needs with `params`, without building it."""
    return get(name, f"{path}.name").declared_features(check(name, params, path))


def build_from(name: str, params: dict[str, Any] | None, path: str = "strategy") -> Strategy:
    """Build a strategy, validating `params` strictly (errors name `<path>.params.<key>`)."""
    return get(name, f"{path}.name")(check(name, params, path))


def build(name: str, **params: Any) -> Strategy:
    """Public API: `build("kd", alpha=0.9, temperature=4)` -> a ready strategy."""
    return build_from(name, params)


def check_stages(stages: Sequence[Stage], path: str) -> tuple[Stage, ...]:
    """Validate a list of feature stages from a recipe (ints or "pre_logits")."""
    for s in stages:
        if not (s == "pre_logits" or (isinstance(s, int) and not isinstance(s, bool))):
            raise RecipeError(f"{path}: stage {s!r} is neither an integer nor 'pre_logits'")
    return tuple(stages)
