"""The ``[develop]`` extension: SD-SNN adaptive structural development in the training engine.

Per epoch ``e`` (1-based, :class:`~spikeforge.develop.schedule.Schedule` gives C and the starts):

1. update every pruned layer's synaptic ranges (:mod:`.constraint`);
2. ``e > C``: project the weights into their ranges;
3. ``e > 2C``: regeneration (:mod:`.regeneration`); a pruned neuron that regrew synapses is
   revived (``regen_revives_neurons``: its layer's rate drops by ``100/N``, :func:`.rates.revive`);
   then neuronal pruning at the current rates (:mod:`.pruning`), then the neurotrophic rate update
   for the next epoch (:mod:`.rates`).

Pruned layers default to the reference's choice: ``sdsnn_convnet`` conv2 and fc1 (not the first
layer, not the output layer); ``cifar_convnet`` all convs and the hidden fc; other models every
synaptic layer but the first and the last.

Metrics returned per epoch (flat keys, merged into ``metrics.jsonl``): ``develop.pruning_rate``
(fraction of all conv/linear weights that are effectively zero) and per pruned layer ``L``:
``develop.L.rate`` (cumulative rate in percent in effect this epoch, 0 before pruning starts),
``neurons``, ``neurons_alive``, ``neurons_pruned`` (this epoch), ``survivors``, ``synapses_masked``,
``synapses_regenerated`` and ``neurons_revived`` (this epoch), ``ranges_expanded``, ``ranges_contracted``,
``range_width``, ``range_hi``, ``range_lo`` (layer means).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from ..models import synaptic_layers
from .chain import resize
from .config import DevelopConfig
from .constraint import attach_ranges, project, range_stats, remember, update_ranges
from .masking import (
    alive_neurons,
    attach_channel_gate,
    attach_mask,
    following_batchnorms,
    is_masked,
    sync_gates,
)
from .pruning import prune_neurons, surviving_neurons
from .rates import next_rate, revive
from .regeneration import attach_regeneration, is_conv, regenerate, threshold_percentile
from .schedule import Schedule

FIRST_LAYERS_OWN_RATE = ("cifar_convnet",)  # models whose first conv is pruned in the reference


def default_layers(model_name: str, model: nn.Module) -> list[str]:
    names = list(synaptic_layers(model))
    return names[:-1] if model_name in FIRST_LAYERS_OWN_RATE else names[1:-1]


def initial_rate(cfg: DevelopConfig, name: str, layer: nn.Module) -> float:
    if name in cfg.initial_rates:
        return cfg.initial_rates[name]
    return cfg.conv_initial_rate if is_conv(layer) else cfg.fc_initial_rate


def in_model_order(model: nn.Module, names: list[str]) -> list[str]:
    """``names`` validated and sorted in forward-definition order (the relative rate rule needs it)."""
    layers = synaptic_layers(model)
    for n in names:
        if n not in layers:
            raise ValueError(f"develop.layers: {n!r} is not a conv/linear layer; layers are {list(layers)}")
    return [n for n in layers if n in set(names)]


def equip(model: nn.Module, names: list[str]) -> dict[str, str]:
    """Make ``names`` masked, ranged, regenerating layers and gate their batch norms."""
    names = in_model_order(model, names)
    for n in names:
        layer = attach_mask(model.get_submodule(n))
        attach_ranges(layer)
        attach_regeneration(layer)
    bn_of = following_batchnorms(model, names)
    for bn in bn_of.values():
        attach_channel_gate(model.get_submodule(bn))
    return bn_of


def overall_pruning_rate(model: nn.Module) -> float:
    """Effectively zero weights / all weights of the network's conv and linear layers."""
    zero, total = 0, 0
    with torch.no_grad():
        for layer in synaptic_layers(model).values():
            w = layer.weight * layer.weight_mask if is_masked(layer) else layer.weight
            zero += int((w == 0).sum())
            total += w.numel()
    return zero / max(1, total)


class DevelopHook:
    """Per-epoch structural development of the layers ``names``."""

    def __init__(self, cfg: DevelopConfig, names: list[str], bn_of: dict[str, str],
                 rates: dict[str, float]) -> None:
        self.cfg, self.names, self.bn_of = cfg, names, bn_of
        self.rates = dict(rates)
        self.last_epoch = 0
        self.consecutive: int | None = None  # C of the run, known after the first epoch

    def _layers(self, model: nn.Module) -> dict[str, nn.Module]:
        return {n: model.get_submodule(n) for n in self.names}

    def _kind_value(self, layer: nn.Module, conv: float, fc: float) -> float:
        return conv if is_conv(layer) else fc

    def after_step(self, model: nn.Module) -> None:
        """With ``project_every_step``: keep weights in their ranges during epochs ``e > C``."""
        c = self.consecutive
        if self.cfg.project_every_step and c is not None and self.last_epoch >= c:
            for layer in self._layers(model).values():
                project(layer)

    def on_epoch_end(self, epoch: int, epochs: int, model: nn.Module) -> dict[str, Any]:
        cfg, sched = self.cfg, Schedule.from_config(self.cfg, epochs)
        layers = self._layers(model)
        out: dict[str, Any] = {}
        for n, layer in layers.items():
            upd = update_ranges(layer, sched.consecutive, cfg.contraction)
            out[f"develop.{n}.ranges_expanded"] = upd.expanded
            out[f"develop.{n}.ranges_contracted"] = upd.contracted
        if sched.constrained(epoch):
            for layer in layers.values():
                project(layer)
                remember(layer)
        pruning = cfg.prune and sched.pruning(epoch)
        for n, layer in layers.items():
            restored, revived, pruned = 0, 0, []
            if pruning:
                q0 = self._kind_value(layer, cfg.conv_regen_percentile, cfg.fc_regen_percentile)
                q = threshold_percentile(q0, cfg.regen_growth, cfg.regen_max_percentile, sched.offset(epoch))
                streak = int(self._kind_value(layer, cfg.conv_regen_epochs, cfg.fc_regen_epochs))
                alive_before = alive_neurons(layer.weight_mask)
                restored = regenerate(layer, q, sched.count(streak)) if cfg.regenerate else 0
                regrown = alive_neurons(layer.weight_mask) & ~alive_before
                revived = int(regrown.sum())
                exempt = None
                if revived and cfg.regen_revives_neurons:
                    self.rates[n] = revive(self.rates[n], revived, int(layer.weight_mask.shape[0]))
                    exempt = regrown  # not re-pruned in the epoch it regrew, even if the rate grew meanwhile
                pruned = prune_neurons(layer, self.rates[n], exempt)
            out[f"develop.{n}.synapses_regenerated"] = restored
            out[f"develop.{n}.neurons_revived"] = revived
            out[f"develop.{n}.neurons_pruned"] = len(pruned)
            out[f"develop.{n}.rate"] = self.rates[n] if pruning else 0.0
        sync_gates(model, self.bn_of)
        survivors = {n: surviving_neurons(layer, int(self._kind_value(layer, cfg.conv_min_inputs,
                                                                           cfg.fc_min_inputs)))
                     for n, layer in layers.items()}
        if pruning and cfg.adaptive_rates:
            steps = sched.steps(epoch)
            for i, n in enumerate(self.names):
                nxt = survivors[self.names[i + 1]] if i + 1 < len(self.names) else None
                self.rates[n] = next_rate(self.rates[n], steps, survivors[n], nxt, cfg)
        for n, layer in layers.items():
            out[f"develop.{n}.survivors"] = survivors[n]
            out[f"develop.{n}.neurons"] = int(layer.weight_mask.shape[0])
            out[f"develop.{n}.neurons_alive"] = int(alive_neurons(layer.weight_mask).sum())
            out[f"develop.{n}.synapses_masked"] = int((layer.weight_mask == 0).sum())
            out.update({f"develop.{n}.{k}": v for k, v in range_stats(layer).items()})
        out["develop.pruning_rate"] = overall_pruning_rate(model)
        self.last_epoch = epoch
        self.consecutive = sched.consecutive
        return out

    def metadata(self) -> dict[str, Any]:
        return {"layers": list(self.names), "batchnorms": dict(self.bn_of), "rates": dict(self.rates)}

    def state_dict(self) -> dict[str, Any]:
        return {"rates": dict(self.rates), "last_epoch": self.last_epoch, "consecutive": self.consecutive}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rates.update({k: float(v) for k, v in state["rates"].items()})
        self.last_epoch = int(state["last_epoch"])
        c = state.get("consecutive")
        self.consecutive = None if c is None else int(c)


class DevelopExtension:
    section = "develop"

    def prepare(self, recipe: Any, model: nn.Module, splits: Any, device: torch.device,
                saved: dict[str, Any] | None = None) -> list[Any]:
        """Equip the pruned layers (``saved`` is unused: masks and rates come back with the checkpoint)."""
        cfg: DevelopConfig = recipe.develop
        if cfg.widths:
            resize(model, cfg.widths)
        names = in_model_order(model, list(cfg.layers) or default_layers(recipe.model.name, model))
        unknown = sorted(set(cfg.initial_rates) - set(names))
        if unknown:
            raise ValueError(f"develop.initial_rates names layers that are not pruned: {unknown}; pruned: {names}")
        sched = Schedule.from_config(cfg, recipe.train.epochs)
        if cfg.prune and recipe.train.epochs < sched.first_pruning_epoch:
            warnings.warn(f"develop: a {recipe.train.epochs}-epoch run never prunes (C = {sched.consecutive}, "
                          f"first pruning epoch {sched.first_pruning_epoch}); lower develop.min_consecutive_epochs "
                          "or train longer", stacklevel=2)
        bn_of = equip(model, names)
        model.to(device)
        rates = {n: initial_rate(cfg, n, model.get_submodule(n)) for n in names}
        return [DevelopHook(cfg, names, bn_of, rates)]

    def restore(self, recipe: Any, model: nn.Module, meta: dict[str, Any]) -> None:
        """Rebuild the trained structure: compacted widths, then the masked layers in ``meta``.

        A restored model is for inference: masks are multiplied into the weights on load.
        """
        cfg: DevelopConfig = recipe.develop
        if cfg.widths:
            resize(model, cfg.widths)
        if "layers" in meta:
            names = list(meta["layers"])
        else:
            names = [] if cfg.widths else (list(cfg.layers) or default_layers(recipe.model.name, model))
        bn_of = equip(model, names)
        for n in [*names, *bn_of.values()]:
            model.get_submodule(n).bake_on_load = True


EXTENSION = DevelopExtension()
