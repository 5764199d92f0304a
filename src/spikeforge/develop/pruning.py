"""Structured neuronal pruning driven by the synaptic ranges.

Synapse score (per layer):

    σ_ji = M_ji · (ρ_ji − min ρ) / (max ρ − min ρ),     ρ = r_hi + |r_lo|   (min/max over the layer)

Neuron importance ``I_j = Σ_i σ_ji`` over its incoming synapses (fc: a weight row; conv: the
``in×k×k`` weights of an output channel). With a cumulative rate ``p`` (percent) the layer keeps
its masks so that the ``⌊N·p/100⌋`` least important neurons have all incoming synapses masked.
Already pruned neurons score 0, so ``p`` is cumulative. When all ranges are equal (``max ρ =
min ρ``) every score is 0; ties are broken by the L1 norm of the neuron's effective incoming
weights (our choice; the reference then prunes by index), then by index.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .access import buffer, weight


def synapse_scores(layer: nn.Module) -> torch.Tensor:
    """σ: min-max normalised range widths times the mask."""
    rho = buffer(layer, "range_hi") + buffer(layer, "range_lo").abs()
    lo, hi = rho.min(), rho.max()
    span = hi - lo
    norm = (rho - lo) / span if float(span) > 0 else torch.zeros_like(rho)
    return norm * buffer(layer, "weight_mask")


def neuron_importance(layer: nn.Module) -> torch.Tensor:
    """``I_j``: the sum of neuron j's incoming synapse scores, shape ``[out]``."""
    return synapse_scores(layer).flatten(1).sum(1)


def pruning_order(layer: nn.Module) -> torch.Tensor:
    """Neuron indices from least to most important (ties: smaller L1 weight first, then index)."""
    importance = neuron_importance(layer)
    l1 = (weight(layer).detach() * buffer(layer, "weight_mask")).abs().flatten(1).sum(1)
    by_l1 = torch.sort(l1, stable=True).indices
    return by_l1[torch.sort(importance[by_l1], stable=True).indices]


ROUND_OFF = 1e-6  # N·p/100 is an integer up to float error after a revival lowered p by whole neurons


def prune_count(neurons: int, rate: float) -> int:
    return min(neurons, max(0, math.floor(neurons * rate / 100.0 + ROUND_OFF)))


@torch.no_grad()
def prune_neurons(layer: nn.Module, rate: float, exempt: torch.Tensor | None = None) -> list[int]:
    """Mask every incoming synapse of the ``⌊N·rate/100⌋`` least important neurons.

    ``exempt`` (bool ``[out]``) marks neurons that are not candidates this time (neurons revived by
    regeneration in this epoch). Returns the neurons that were alive before and are pruned now.
    """
    mask = buffer(layer, "weight_mask")
    n = mask.shape[0]
    order = pruning_order(layer)
    if exempt is not None:
        order = order[~exempt[order]]
    chosen = order[:prune_count(n, rate)]
    was_alive = mask.flatten(1).amax(1) > 0
    mask[chosen] = 0
    return sorted(int(j) for j in chosen if bool(was_alive[j]))


def surviving_neurons(layer: nn.Module, min_inputs: int) -> int:
    """``N − D``: neurons with at least ``min_inputs`` active incoming synapses."""
    return int((buffer(layer, "weight_mask").flatten(1).sum(1) >= min_inputs).sum())
