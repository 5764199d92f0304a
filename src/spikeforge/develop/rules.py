"""SD-SNN's per-epoch rules as an ordered list of rule objects.

Each rule declares the buffers it attaches to a pruned layer (state saved in ``model.safetensors``, so
``--resume`` continues exactly and compaction knows what to drop) and the per-layer metrics it
reports (``develop.<layer>.<metric>``). At the end of epoch ``e`` they act in this order
(:class:`~spikeforge.develop.schedule.Schedule` gives C and the starts):

1. :class:`SynapticConstraint` — update every synapse's range; from ``e > C`` project the weights
   into their ranges (:mod:`.constraint`);
2. :class:`Regeneration` — from ``e > 2C``: restore masked synapses whose shadow weights kept
   growing (:mod:`.regeneration`);
3. :class:`Revival` (only with ``regen_revives_neurons``) — a pruned neuron that regrew synapses
   takes its share off its layer's rate and is exempt from this epoch's pruning (:func:`.rates.revive`);
4. :class:`NeuronalPruning` — from ``e > 2C``: mask the least important neurons at the current
   rates (:mod:`.pruning`), then gate the batch norms of dead channels;
5. :class:`NeurotrophicRates` — from ``e > 2C``: the rates of the next epoch (:mod:`.rates`).

The rules act layer by layer within a rule; a layer's rules read only that layer's state (and the
rates rule the next pruned layer's survivors), so this order equals the reference's layer-major loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .config import DevelopConfig
from .constraint import CONSTRAINT_BUFFERS, attach_ranges, project, range_stats, remember, update_ranges
from .masking import alive_neurons, layer_mask, sync_gates
from .pruning import prune_neurons, surviving_neurons
from .rates import next_rate, revive
from .regeneration import REGENERATION_BUFFERS, attach_regeneration, is_conv, regenerate, threshold_percentile
from .schedule import Schedule

LayerMetrics = dict[str, dict[str, float]]  # layer name -> metric -> value


def by_kind(layer: nn.Module, conv: float, fc: float) -> float:
    """The conv or the fc constant of a pair, by the layer's kind."""
    return conv if is_conv(layer) else fc


@dataclass
class EpochStep:
    """What the rules share while one epoch's development happens."""

    epoch: int
    schedule: Schedule
    cfg: DevelopConfig
    model: nn.Module
    layers: dict[str, nn.Module]  # the pruned layers, in model order
    batchnorms: dict[str, str]  # pruned conv -> the batch norm it feeds
    rates: dict[str, float]  # cumulative pruning rates in percent, updated in place
    regrown: dict[str, torch.Tensor] = field(default_factory=dict)  # layer -> bool [out]: regrew this epoch
    exempt: dict[str, torch.Tensor] = field(default_factory=dict)  # layer -> bool [out]: not pruned this epoch

    @property
    def pruning(self) -> bool:
        """Regeneration, pruning and rate updates act in this epoch."""
        return self.cfg.prune and self.schedule.pruning(self.epoch)


class Rule:
    """One SD-SNN mechanism."""

    buffers: tuple[str, ...] = ()  # per-layer buffers this rule attaches and owns
    metrics: tuple[str, ...] = ()  # per-layer metrics it reports every epoch

    def attach(self, layer: nn.Module) -> None:
        """Register this rule's buffers on a pruned layer."""

    def apply(self, step: EpochStep) -> LayerMetrics:
        """Act at the end of an epoch; returns this rule's metrics for every layer."""
        return {}

    def after_step(self, layers: dict[str, nn.Module], cfg: DevelopConfig, constrained: bool) -> None:
        """After each optimizer step (``constrained``: the constraint was active last epoch)."""


class SynapticConstraint(Rule):
    buffers = CONSTRAINT_BUFFERS
    metrics = ("ranges_expanded", "ranges_contracted", "range_width", "range_hi", "range_lo")

    def attach(self, layer: nn.Module) -> None:
        attach_ranges(layer)

    def apply(self, step: EpochStep) -> LayerMetrics:
        updates = {n: update_ranges(layer, step.schedule.consecutive, step.cfg.contraction)
                   for n, layer in step.layers.items()}
        if step.schedule.constrained(step.epoch):
            for layer in step.layers.values():
                project(layer)
                remember(layer)
        return {n: {"ranges_expanded": updates[n].expanded, "ranges_contracted": updates[n].contracted,
                    **range_stats(layer)} for n, layer in step.layers.items()}

    def after_step(self, layers: dict[str, nn.Module], cfg: DevelopConfig, constrained: bool) -> None:
        """With ``project_every_step``: keep weights in their ranges during epochs ``e > C``."""
        if cfg.project_every_step and constrained:
            for layer in layers.values():
                project(layer)


class Regeneration(Rule):
    buffers = REGENERATION_BUFFERS
    metrics = ("synapses_regenerated", "neurons_revived")  # neurons_revived: pruned neurons that regrew synapses

    def attach(self, layer: nn.Module) -> None:
        attach_regeneration(layer)

    def _regenerate(self, step: EpochStep, name: str, layer: nn.Module) -> int:
        cfg = step.cfg
        q0 = by_kind(layer, cfg.conv_regen_percentile, cfg.fc_regen_percentile)
        q = threshold_percentile(q0, cfg.regen_growth, cfg.regen_max_percentile, step.schedule.offset(step.epoch))
        streak = int(by_kind(layer, cfg.conv_regen_epochs, cfg.fc_regen_epochs))
        alive_before = alive_neurons(layer_mask(layer))
        restored = regenerate(layer, q, step.schedule.count(streak))
        step.regrown[name] = alive_neurons(layer_mask(layer)) & ~alive_before
        return restored

    def apply(self, step: EpochStep) -> LayerMetrics:
        out: LayerMetrics = {}
        for n, layer in step.layers.items():
            restored = self._regenerate(step, n, layer) if step.pruning and step.cfg.regenerate else 0
            regrown = int(step.regrown[n].sum()) if n in step.regrown else 0
            out[n] = {"synapses_regenerated": restored, "neurons_revived": regrown}
        return out


class Revival(Rule):
    """A regrown neuron survives the epoch it regrew in (our rule; see :mod:`.rates`)."""

    def apply(self, step: EpochStep) -> LayerMetrics:
        for n, regrown in step.regrown.items():
            revived = int(regrown.sum())
            if step.pruning and revived:
                step.rates[n] = revive(step.rates[n], revived, int(regrown.shape[0]))
                step.exempt[n] = regrown  # not re-pruned in the epoch it regrew, even if the rate grew meanwhile
        return {}


class NeuronalPruning(Rule):
    metrics = ("neurons_pruned", "rate", "neurons", "neurons_alive", "synapses_masked")

    def apply(self, step: EpochStep) -> LayerMetrics:
        pruned = {n: prune_neurons(layer, step.rates[n], step.exempt.get(n)) if step.pruning else []
                  for n, layer in step.layers.items()}
        sync_gates(step.model, step.batchnorms)
        out: LayerMetrics = {}
        for n, layer in step.layers.items():
            mask = layer_mask(layer)
            out[n] = {"neurons_pruned": len(pruned[n]), "rate": step.rates[n] if step.pruning else 0.0,
                      "neurons": int(mask.shape[0]), "neurons_alive": int(alive_neurons(mask).sum()),
                      "synapses_masked": int((mask == 0).sum())}
        return out


class NeurotrophicRates(Rule):
    metrics = ("survivors",)

    def apply(self, step: EpochStep) -> LayerMetrics:
        cfg = step.cfg
        survivors = {n: surviving_neurons(layer, int(by_kind(layer, cfg.conv_min_inputs, cfg.fc_min_inputs)))
                     for n, layer in step.layers.items()}
        if step.pruning and cfg.adaptive_rates:
            names = list(step.layers)
            for i, n in enumerate(names):
                nxt = survivors[names[i + 1]] if i + 1 < len(names) else None
                step.rates[n] = next_rate(step.rates[n], step.schedule.steps(step.epoch), survivors[n], nxt, cfg)
        return {n: {"survivors": s} for n, s in survivors.items()}


ALL_RULES: tuple[Rule, ...] = (SynapticConstraint(), Regeneration(), Revival(), NeuronalPruning(), NeurotrophicRates())
OWNED_BUFFERS: tuple[str, ...] = tuple(b for rule in ALL_RULES for b in rule.buffers)


def rules_for(cfg: DevelopConfig) -> list[Rule]:
    """The rules of a configuration, in order (revival only with ``regen_revives_neurons``)."""
    return [r for r in ALL_RULES if not isinstance(r, Revival) or cfg.regen_revives_neurons]
