"""Shared model plumbing."""

from __future__ import annotations

import torch
from torch import nn


def scaled(channels: int, width: float) -> int:
    """Channel count times the width multiplier, at least 1."""
    return max(1, int(round(channels * width)))


class Net(nn.Sequential):
    """A model: ``[T, B, C, H, W] -> [T, B, classes]``.

    Every model is a sequence of explicitly named children (residual stages are children too),
    so module paths such as ``sn1`` or ``layer2.0.sn1`` are stable names for sites and layers.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 3:
            raise ValueError(f"expected a time-first input [T, B, ...], got shape {tuple(x.shape)}")
        return super().forward(x)
