"""Dendritic-spine synaptic constraint: a per-synapse range ``[r_lo, r_hi]`` that adapts.

Initialisation (per layer): ``r_hi = +max|W|``, ``r_lo = −max|W|``. The reference uses
``±max(W)``; with symmetric initialisations these agree, and ``max|W|`` guarantees every initial
weight lies inside its range, so the first projection does not clip initial negative weights.

After each epoch, with ``w`` the (shadow) weight and ``w'`` its value at the previous epoch end:

    streak_hi ← streak_hi + 1 and excess ← excess + (w − r_hi)   if w ≥ r_hi, else both reset
    when streak_hi = C:   r_hi ← r_hi + excess / C               (move out by the mean excess)
    (mirror rule for r_lo with w ≤ r_lo and excess r_lo − w, r_lo ← r_lo − excess / C)
    shrink ← shrink + 1 if |w| < |w'| else 0
    when shrink = C:      r_hi ← κ·r_hi,  r_lo ← κ·r_lo   (κ = 0.75)

Once the constraint is active (epoch > C) weights are projected: ``w ← clamp(w, r_lo, r_hi)``.
A single signed streak counter serves both bounds (a weight cannot be above ``r_hi`` and below
``r_lo`` at once). All state lives in buffers of the layer so it is saved in ``model.safetensors``
and restored by ``--resume``: ``range_hi``, ``range_lo``, ``prev_weight``, ``excess_sum`` (float)
and ``excess_streak``, ``shrink_streak`` (int32).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .access import buffer, weight

STREAK_DTYPE = torch.int32  # int32, not int16: gloo (CPU DDP) cannot broadcast int16 buffers
CONSTRAINT_BUFFERS = ("range_hi", "range_lo", "prev_weight", "excess_sum", "excess_streak", "shrink_streak")


def attach_ranges(layer: nn.Module) -> None:
    """Register the constraint buffers, initialised from the layer's current weights."""
    w = weight(layer).detach()
    bound = w.abs().max()
    layer.register_buffer("range_hi", torch.full_like(w, float(bound)))
    layer.register_buffer("range_lo", torch.full_like(w, -float(bound)))
    layer.register_buffer("prev_weight", w.clone())
    layer.register_buffer("excess_sum", torch.zeros_like(w))
    layer.register_buffer("excess_streak", torch.zeros(w.shape, dtype=STREAK_DTYPE, device=w.device))
    layer.register_buffer("shrink_streak", torch.zeros(w.shape, dtype=STREAK_DTYPE, device=w.device))


@dataclass
class RangeUpdate:
    expanded: int  # bounds moved out this epoch (a weight sitting exactly on its bound moves it by 0)
    contracted: int  # synapses whose range contracted this epoch


@torch.no_grad()
def update_ranges(layer: nn.Module, consecutive: int, contraction: float) -> RangeUpdate:
    """One epoch of the range rules above (does not project)."""
    w = weight(layer).detach()
    hi, lo, streak, excess = (buffer(layer, n) for n in ("range_hi", "range_lo", "excess_streak", "excess_sum"))
    above, below = w >= hi, w <= lo
    one = torch.ones_like(streak)
    # signed streak: +n = n epochs in a row above r_hi, -n = below r_lo
    streak.copy_(torch.where(above, streak.clamp(min=0) + one,
                             torch.where(below, streak.clamp(max=0) - one, torch.zeros_like(streak))))
    excess.copy_(torch.where(above, torch.where(streak == 1, 0.0, excess) + (w - hi),
                             torch.where(below, torch.where(streak == -1, 0.0, excess) + (lo - w), 0.0)))
    grow_hi, grow_lo = streak >= consecutive, streak <= -consecutive
    hi.add_(torch.where(grow_hi, excess / consecutive, 0.0))
    lo.sub_(torch.where(grow_lo, excess / consecutive, 0.0))
    done = grow_hi | grow_lo
    moved = done & (excess > 0)
    streak.masked_fill_(done, 0)
    excess.masked_fill_(done, 0.0)

    shrink, prev = buffer(layer, "shrink_streak"), buffer(layer, "prev_weight")
    shrink.copy_(torch.where(w.abs() < prev.abs(), shrink + 1, torch.zeros_like(shrink)))
    contract = shrink >= consecutive
    hi.copy_(torch.where(contract, hi * contraction, hi))
    lo.copy_(torch.where(contract, lo * contraction, lo))
    shrink.masked_fill_(contract, 0)
    prev.copy_(w)
    return RangeUpdate(int(moved.sum()), int(contract.sum()))


@torch.no_grad()
def project(layer: nn.Module) -> None:
    """``w ← clamp(w, r_lo, r_hi)`` (shadow weights included)."""
    w = weight(layer)
    w.copy_(torch.minimum(torch.maximum(w, buffer(layer, "range_lo")), buffer(layer, "range_hi")))


@torch.no_grad()
def remember(layer: nn.Module) -> None:
    """Record the current weights as the previous-epoch weights (after a projection)."""
    buffer(layer, "prev_weight").copy_(weight(layer))


def range_stats(layer: nn.Module) -> dict[str, float]:
    """Mean range width ``r_hi − r_lo`` and mean bounds of the layer."""
    hi, lo = buffer(layer, "range_hi"), buffer(layer, "range_lo")
    return {"range_width": float((hi - lo).mean()), "range_hi": float(hi.mean()),
            "range_lo": float(lo.mean())}
