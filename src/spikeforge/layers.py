"""Time-distributed layers: inputs are ``[T, B, ...]``; T is folded into the batch.

Each class subclasses the matching ``torch.nn`` layer, so weights keep their usual names
(``conv1.weight``) and shapes; only ``forward`` changes. Batch norm therefore computes its
statistics over T·B samples (shared across time); dropout draws one mask per sample that is
shared across all time steps.
"""

from __future__ import annotations

import torch
from torch import nn


def fold(x: torch.Tensor) -> torch.Tensor:
    """``[T, B, ...] -> [T·B, ...]``."""
    return x.flatten(0, 1)


def unfold(y: torch.Tensor, time_steps: int) -> torch.Tensor:
    """``[T·B, ...] -> [T, B, ...]``."""
    return y.unflatten(0, (time_steps, -1))


def _time_distributed(base: type[nn.Module]) -> type[nn.Module]:
    class TimeDistributed(base):  # type: ignore[valid-type, misc]
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return unfold(super().forward(fold(x)), x.shape[0])

    TimeDistributed.__name__ = base.__name__
    TimeDistributed.__qualname__ = base.__name__
    TimeDistributed.__doc__ = f"Time-distributed ``nn.{base.__name__}`` over ``[T, B, ...]`` inputs."
    return TimeDistributed


Conv2d = _time_distributed(nn.Conv2d)
BatchNorm2d = _time_distributed(nn.BatchNorm2d)
BatchNorm1d = _time_distributed(nn.BatchNorm1d)
AvgPool2d = _time_distributed(nn.AvgPool2d)
MaxPool2d = _time_distributed(nn.MaxPool2d)
AdaptiveAvgPool2d = _time_distributed(nn.AdaptiveAvgPool2d)


class Linear(nn.Linear):
    """``nn.Linear`` over ``[T, B, ..., in]`` (already acts on the last dim)."""


class Flatten(nn.Module):
    """Flatten everything after ``[T, B]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2)


class Dropout(nn.Module):
    """Dropout with one mask per sample, shared over all time steps."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout p must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        mask = torch.bernoulli(torch.full_like(x[0], 1.0 - self.p)) / (1.0 - self.p)
        return x * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"
