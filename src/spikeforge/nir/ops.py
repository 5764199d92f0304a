"""Time-distributed operations for NIR primitives that spikeforge's layers do not already cover.

Inputs are ``[T, B, *shape]`` (``shape`` as in NIR: no batch, no time).

- :class:`Conv1d`: ``nn.Conv1d`` over ``[T, B, C, L]``;
- :class:`SumPool2d`: ``Σ`` over each window (``avg_pool2d`` with ``divisor_override = 1``: the sum
  itself, not a mean times the window size, so integer spike counts stay exact);
- :class:`Scale`: ``y = s ⊙ x`` (``s`` one float, or a buffer shaped like the node);
- :class:`NirFlatten`: NIR's ``Flatten(start_dim, end_dim)`` on the batch-free dims (spikeforge's
  ``layers.Flatten`` covers ``start_dim = 0, end_dim = −1``);
- :class:`Delay`: ``y[t] = x[t − d]`` with ``d = delay/dt`` steps per element (0 before the start).
"""

from __future__ import annotations

import torch
from torch import nn

from .. import layers as L
from .neuron import Carry

TIME_BATCH_DIMS = 2


class Conv1d(nn.Conv1d):
    """Time-distributed ``nn.Conv1d`` over ``[T, B, C, L]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return L.unfold(super().forward(L.fold(x)), x.shape[0])


class SumPool2d(nn.AvgPool2d):
    """Time-distributed sum pooling (NIR ``SumPool2d``)."""

    def __init__(self, kernel_size: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]) -> None:
        super().__init__(kernel_size, stride, padding, divisor_override=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return L.unfold(super().forward(L.fold(x)), x.shape[0])


class Scale(nn.Module):
    """``y = s ⊙ x`` (NIR ``Scale``): ``value`` for one factor, else a buffer ``scale`` shaped like the node."""

    scale: torch.Tensor | None

    def __init__(self, shape: tuple[int, ...], value: float | None) -> None:
        super().__init__()
        self.value = value
        self.register_buffer("scale", None if value is not None else torch.zeros(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.value is not None:
            return x * self.value
        assert self.scale is not None
        return x * self.scale

    def extra_repr(self) -> str:
        return f"scale={self.value:.6g}" if self.value is not None else "scale=per-element"


class NirFlatten(nn.Module):
    """NIR ``Flatten(start_dim, end_dim)``; dims count from the first batch-free dim."""

    def __init__(self, start_dim: int, end_dim: int) -> None:
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        end = self.end_dim if self.end_dim < 0 else self.end_dim + TIME_BATCH_DIMS
        return x.flatten(self.start_dim + TIME_BATCH_DIMS, end)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Delay(nn.Module):
    """``y[t] = x[t − d]`` (NIR ``Delay``), ``d ≥ 0`` whole time steps: ``value`` for all elements, else a
    buffer ``steps`` shaped like the node; ``max_steps`` is the largest delay."""

    steps: torch.Tensor | None

    def __init__(self, shape: tuple[int, ...], value: int | None, max_steps: int) -> None:
        super().__init__()
        if max_steps < 0 or (value is not None and value < 0):
            raise ValueError("delays must be >= 0 time steps")
        self.value, self.max_steps = value, max_steps
        self.register_buffer("steps", None if value is not None else torch.zeros(shape, dtype=torch.long))

    def forward(self, x_seq: torch.Tensor, carry: Carry | None = None) -> torch.Tensor:
        t, d_max = x_seq.shape[0], self.max_steps
        if d_max == 0:
            return x_seq
        past = carry.value if carry is not None and carry.value is not None else \
            torch.zeros((d_max, *x_seq.shape[1:]), dtype=x_seq.dtype, device=x_seq.device)
        full = torch.cat([past, x_seq])  # full[d_max + t] = x[t]
        if self.value is not None:
            out = full[d_max - self.value: d_max - self.value + t]
        else:
            assert self.steps is not None
            idx = torch.arange(t, device=x_seq.device).view(t, *([1] * (x_seq.dim() - 1))) + d_max
            idx = (idx - self.steps.unsqueeze(0)).expand(t, *x_seq.shape[1:])
            out = torch.gather(full, 0, idx)
        if carry is not None:
            carry.value = full[-d_max:]
        return out

    def extra_repr(self) -> str:
        return f"steps={self.value}" if self.value is not None else f"steps=per-element (max {self.max_steps})"
