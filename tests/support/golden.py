"""Fixed inputs and helpers for the golden tests of the strategies.

Each golden test re-implements the reference code's formula (in float64, written from the file
it cites) and compares the strategy's loss and its gradient with respect to the student's logits
(and the strategy's own parameters, where it has some) on these inputs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from harness import strategies

N, K = 6, 7


def fixed_inputs(scale: float = 3.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(student logits, teacher logits, labels) in float64, the same on every machine."""
    g = torch.Generator().manual_seed(17)
    z = torch.randn(N, K, generator=g, dtype=torch.float64) * scale
    t = torch.randn(N, K, generator=g, dtype=torch.float64) * scale
    y = torch.randint(0, K, (N,), generator=g)
    return z, t, y


def value_and_grad(fn: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor) -> tuple[float, torch.Tensor]:
    """fn(z) and d fn / d z, for z taken as a fresh leaf."""
    leaf = z.detach().clone().requires_grad_()
    out = fn(leaf)
    (grad,) = torch.autograd.grad(out, leaf)
    return float(out.detach()), grad


def strategy_value_and_grad(
    strategy: strategies.Strategy, z: torch.Tensor, y: torch.Tensor, t: torch.Tensor | None = None, **fields
) -> tuple[float, torch.Tensor, dict[str, float]]:
    """The strategy's loss and gradient on float32 copies of the inputs, and its parts."""
    parts: dict[str, float] = {}

    def loss(leaf: torch.Tensor) -> torch.Tensor:
        out = strategy(leaf, y, None if t is None else t.float(), **fields)
        parts.update({k: float(v.detach()) for k, v in out.items()})
        return out["loss"]

    value, grad = value_and_grad(loss, z.float())
    return value, grad.double(), parts
