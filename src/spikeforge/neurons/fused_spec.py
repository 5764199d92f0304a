"""Static description of a neuron for the fused loops (shared by the eager and compiled paths)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .surrogate import Surrogate

Coef = float | torch.Tensor


@dataclass(frozen=True)
class Spec:
    """The non-tensor part of a neuron: baked into the loops, and part of a compiled loop's key."""

    threshold: float
    v_reset: float | None
    detach_reset: bool
    surrogate: Surrogate


def is_one(k: Coef) -> bool:
    """True for the Python float 1.0, whose multiplication the loops skip (exactly)."""
    return not isinstance(k, torch.Tensor) and k == 1.0
