"""Surrogate gradients for the Heaviside spike function.

Forward: ``s = Θ(x) = 1[x ≥ 0]`` where ``x = h − θ`` is the membrane potential minus threshold.
Backward: ``∂s/∂x ≈ σ'(x)`` where σ' is the surrogate derivative of the chosen shape:

- ``atan``:      σ'(x) = (α/2) / (1 + (π α x / 2)²)
- ``sigmoid``:   σ'(x) = α · sig(α x) · (1 − sig(α x))
- ``rectangle``: σ'(x) = 1[|x| < w/2] / w            (SD-SNN: w = 1)
- ``triangle``:  σ'(x) = max(0, w − |x|) / w²

Each surrogate is a small frozen dataclass: ``derivative(x)`` is the formula above and
calling the instance applies the spike function with that surrogate as its gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, cast

import torch


class _SpikeFunction(torch.autograd.Function):
    """Heaviside forward, ``surrogate.derivative`` backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        return grad_out * ctx.surrogate.derivative(x), None


class Surrogate:
    """Base class: subclasses define ``derivative``; ``name`` keys the table below."""

    name: str = ""

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, _SpikeFunction.apply(x, self))  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class Atan(Surrogate):
    alpha: float = 2.0
    name = "atan"

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return (self.alpha / 2) / (1 + (math.pi / 2 * self.alpha * x) ** 2)


@dataclass(frozen=True)
class Sigmoid(Surrogate):
    alpha: float = 4.0
    name = "sigmoid"

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        sg = torch.sigmoid(self.alpha * x)
        return self.alpha * sg * (1 - sg)


@dataclass(frozen=True)
class Rectangle(Surrogate):
    width: float = 1.0
    name = "rectangle"

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return (x.abs() < self.width / 2).to(x.dtype) / self.width


@dataclass(frozen=True)
class Triangle(Surrogate):
    width: float = 1.0
    name = "triangle"

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return (self.width - x.abs()).clamp(min=0) / self.width**2


SURROGATES: dict[str, type[Surrogate]] = {
    cls.name: cls for cls in (Atan, Sigmoid, Rectangle, Triangle)
}


def make_surrogate(name: str, **params: float) -> Surrogate:
    """Build a surrogate by name, e.g. ``make_surrogate("atan", alpha=2.0)``."""
    try:
        cls = SURROGATES[name]
    except KeyError:
        raise ValueError(f"unknown surrogate {name!r}; expected one of {sorted(SURROGATES)}") from None
    return cls(**params)
