"""Neurotrophic adaptive pruning rates.

Each pruned layer ``l`` has a cumulative rate ``p_l`` (percent of its neurons). After each pruning
epoch, with ``S_l = N_l − D_l`` its surviving neurons (``D_l``: neurons with fewer than
``min_inputs`` active incoming synapses) and ``k`` ranging over the reference epochs the actual
epoch covers (:meth:`Schedule.steps`):

    relative rule (l followed by pruned layer n):  p_l += Σ_k exp(−k/τ_rel) · S_l / S_n
    absolute rule (the last pruned layer):         p_l += Σ_k α(k) · S_l / Z
        α(k) = a·exp(−k/τ)  for k < k_tail,   α(k) = α_tail  after

A layer's pruning grows with its survivors relative to its surviving targets (competition for
target-derived trophic support); the exponential decays make the structure settle, so the rates
converge. ``p_l`` is capped at ``max_rate``.

Revival (our rule, ``regen_revives_neurons``): when regeneration gives ``r`` pruned neurons of a
layer of ``N`` neurons active synapses again, ``p_l ← max(0, p_l − 100·r/N)`` before pruning, so
the cumulative count ``⌊N·p_l/100⌋`` no longer includes them, and that epoch's pruning skips them
(``prune_neurons(..., exempt)``): they keep their regrown synapses and compete again from the next
epoch on.
The reference keeps ``p_l``, so its pruning step re-masks a regrown neuron in the same epoch.
"""

from __future__ import annotations

import math

from .config import DevelopConfig


def absolute_alpha(k: float, cfg: DevelopConfig) -> float:
    if k < cfg.last_rate_tail_start:
        return cfg.last_rate_scale * math.exp(-k / cfg.last_rate_tau)
    return cfg.last_rate_tail


def relative_alpha(k: float, cfg: DevelopConfig) -> float:
    return math.exp(-k / cfg.relative_rate_tau)


def rate_increment(steps: list[int], survivors: int, next_survivors: int | None, cfg: DevelopConfig) -> float:
    """Δp for one actual epoch; ``next_survivors`` is None for the last pruned layer."""
    if next_survivors is None:
        return sum(absolute_alpha(k, cfg) for k in steps) * survivors / cfg.last_rate_divisor
    return sum(relative_alpha(k, cfg) for k in steps) * survivors / max(1, next_survivors)


def next_rate(rate: float, steps: list[int], survivors: int, next_survivors: int | None,
              cfg: DevelopConfig) -> float:
    return min(cfg.max_rate, rate + rate_increment(steps, survivors, next_survivors, cfg))


def revive(rate: float, revived: int, neurons: int) -> float:
    """The cumulative rate after ``revived`` of ``neurons`` pruned neurons regrew synapses."""
    return max(0.0, rate - 100.0 * revived / neurons)
