"""Structural development of chosen layers of a model, usable in any training loop.

``dev = Development(model, DevelopConfig(...), epochs, layers=["conv2", "fc1"])`` makes the layers
masked and ranged (:func:`equip`); then call ``dev.after_step()`` after every optimizer step and
``dev.end_epoch(epoch)`` once at the end of every epoch (1-based): the rules of :mod:`.rules` act in
order and the epoch's metrics come back. The engine's ``[develop]`` method wraps the same object.

Pruned layers default to the reference's choice: ``sdsnn_convnet`` conv2 and fc1 (not the first
layer, not the output layer); ``cifar_convnet`` all convs and the hidden fc; other models every
synaptic layer but the first and the last.

Metrics (flat keys): ``develop.pruning_rate`` (fraction of all conv/linear weights that are
effectively zero) and per pruned layer ``L`` the metrics its rules declare: ``develop.L.rate``
(cumulative rate in percent in effect this epoch, 0 before pruning starts), ``neurons``,
``neurons_alive``, ``neurons_pruned`` (this epoch), ``survivors``, ``synapses_masked``,
``synapses_regenerated`` and ``neurons_revived`` (this epoch), ``ranges_expanded``,
``ranges_contracted``, ``range_width``, ``range_hi``, ``range_lo`` (layer means).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from ..models import synaptic_layers
from .access import weight
from .config import DevelopConfig
from .masking import attach_channel_gate, attach_mask, following_batchnorms, is_masked, layer_mask
from .regeneration import is_conv
from .rules import ALL_RULES, EpochStep, Rule, rules_for
from .schedule import Schedule

FIRST_LAYERS_OWN_RATE = ("cifar_convnet",)  # models whose first conv is pruned in the reference
PREFIX = "develop"


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


def equip(model: nn.Module, names: list[str], rules: tuple[Rule, ...] = ALL_RULES) -> dict[str, str]:
    """Make ``names`` masked layers carrying every rule's buffers, gate their batch norms; returns
    the batch norm of each pruned conv."""
    names = in_model_order(model, names)
    for n in names:
        layer = attach_mask(model.get_submodule(n))
        for rule in rules:
            rule.attach(layer)
    bn_of = following_batchnorms(model, names)
    for bn in bn_of.values():
        attach_channel_gate(model.get_submodule(bn))
    return bn_of


def overall_pruning_rate(model: nn.Module) -> float:
    """Effectively zero weights / all weights of the network's conv and linear layers."""
    zero, total = 0, 0
    with torch.no_grad():
        for layer in synaptic_layers(model).values():
            w = weight(layer) * layer_mask(layer) if is_masked(layer) else weight(layer)
            zero += int((w == 0).sum())
            total += w.numel()
    return zero / max(1, total)


class Development:
    """SD-SNN development of ``layers`` of ``model`` over a run of ``epochs`` epochs (module docstring)."""

    def __init__(self, model: nn.Module, cfg: DevelopConfig, epochs: int, layers: list[str] | None = None) -> None:
        self.model, self.cfg = model, cfg
        self.schedule = Schedule.from_config(cfg, epochs)
        self.names = in_model_order(model, list(layers or cfg.layers or default_layers("", model)))
        unknown = sorted(set(cfg.initial_rates) - set(self.names))
        if unknown:
            raise ValueError(f"develop.initial_rates names layers that are not pruned: {unknown}; "
                             f"pruned: {self.names}")
        if cfg.prune and epochs < self.schedule.first_pruning_epoch:
            warnings.warn(f"develop: a {epochs}-epoch run never prunes (C = {self.schedule.consecutive}, first "
                          f"pruning epoch {self.schedule.first_pruning_epoch}); lower "
                          "develop.min_consecutive_epochs or train longer", stacklevel=2)
        self.rules = rules_for(cfg)
        self.batchnorms = equip(model, self.names)
        self.rates = {n: initial_rate(cfg, n, model.get_submodule(n)) for n in self.names}
        self.last_epoch = 0
        self.consecutive: int | None = None  # C of the run, known after the first epoch

    def layers(self) -> dict[str, nn.Module]:
        return {n: self.model.get_submodule(n) for n in self.names}

    def after_step(self) -> None:
        """Call after every optimizer step (projects weights with ``project_every_step``)."""
        constrained = self.consecutive is not None and self.last_epoch >= self.consecutive
        for rule in self.rules:
            rule.after_step(self.layers(), self.cfg, constrained)

    def end_epoch(self, epoch: int) -> dict[str, float]:
        """Call once after epoch ``epoch`` (1-based): the rules act in order; returns the epoch's metrics."""
        step = EpochStep(epoch, self.schedule, self.cfg, self.model, self.layers(), self.batchnorms, self.rates)
        out: dict[str, float] = {}
        for rule in self.rules:
            for layer, metrics in rule.apply(step).items():
                out.update({f"{PREFIX}.{layer}.{k}": v for k, v in metrics.items()})
        out[f"{PREFIX}.pruning_rate"] = overall_pruning_rate(self.model)
        self.last_epoch, self.consecutive = epoch, self.schedule.consecutive
        return out

    def metadata(self) -> dict[str, Any]:
        """The structure: pruned layers, their batch norms, the current rates."""
        return {"layers": list(self.names), "batchnorms": dict(self.batchnorms), "rates": dict(self.rates)}

    def state_dict(self) -> dict[str, Any]:
        return {"rates": dict(self.rates), "last_epoch": self.last_epoch, "consecutive": self.consecutive}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rates.update({k: float(v) for k, v in state["rates"].items()})
        self.last_epoch = int(state["last_epoch"])
        c = state.get("consecutive")
        self.consecutive = None if c is None else int(c)
