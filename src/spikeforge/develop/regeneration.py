"""Synaptic regeneration: pruned synapses whose shadow weight keeps growing come back.

With ``k`` reference epochs since pruning began, the threshold is the ``q(k)`` percentile

    q(k) = min(q_max, q0 + g^k)        (q0 = 60 fc, 65 conv; g = 1.1; q_max = 99)

of the layer's (shadow) weights. A *candidate* is

- fc: a masked synapse with ``w_ji > P_q(W)``;
- conv: a fully masked kernel ``(j, i)`` whose weight sum ``Σ_xy w_jixy > P_q`` of all kernel sums.

A candidate for ``R`` consecutive epochs is restored (conv: the whole ``k×k`` kernel) and its
counter resets; a non-candidate's counter resets. As ``q → q_max`` regeneration fades. The
counter lives in the buffer ``regen_streak`` (shape of the weight for fc, ``[out, in]`` for conv).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .access import buffer, weight
from .constraint import STREAK_DTYPE

PERCENT = 100.0
REGENERATION_BUFFERS = ("regen_streak",)


def is_conv(layer: nn.Module) -> bool:
    return isinstance(layer, nn.Conv2d)


def attach_regeneration(layer: nn.Module) -> None:
    w = weight(layer)
    shape = w.shape[:2] if is_conv(layer) else w.shape
    layer.register_buffer("regen_streak", torch.zeros(shape, dtype=STREAK_DTYPE, device=w.device))


def percentile(x: torch.Tensor, q: float) -> torch.Tensor:
    """The ``q``-th percentile (nearest rank) of all elements of ``x``."""
    flat = x.detach().flatten()
    rank = min(flat.numel(), max(1, math.ceil(q / PERCENT * flat.numel())))
    return flat.float().kthvalue(rank).values.to(x.dtype)


def threshold_percentile(q0: float, growth: float, q_max: float, offset: float) -> float:
    """q(k) = min(q_max, q0 + growth^k)."""
    try:
        rise: float = growth ** offset
    except OverflowError:
        rise = math.inf
    return min(q_max, q0 + rise)


@torch.no_grad()
def regenerate(layer: nn.Module, q: float, streak_epochs: int) -> int:
    """Advance the candidate streaks; restore those reaching ``streak_epochs``. Returns synapses restored."""
    w, mask, streak = weight(layer).detach(), buffer(layer, "weight_mask"), buffer(layer, "regen_streak")
    if is_conv(layer):
        sums = w.sum(dim=(2, 3))
        candidate = (mask.amax(dim=(2, 3)) == 0) & (sums > percentile(sums, q))
    else:
        candidate = (mask == 0) & (w > percentile(w, q))
    streak.copy_(torch.where(candidate, streak + 1, torch.zeros_like(streak)))
    restore = streak >= streak_epochs
    streak.masked_fill_(restore, 0)
    mask[restore] = 1.0  # conv: a [out, in] index restores whole kernels
    per_unit = int(w.shape[2] * w.shape[3]) if is_conv(layer) else 1
    return int(restore.sum()) * per_unit
