"""Naming and addressing neuron sites and synaptic layers.

A *site* is any :class:`~spikeforge.neurons.Site` module (a spiking neuron, or a hybrid ReLU
unit). Its name is its module path in the model (``layer2.0.sn1``), stable across runs because
models build their children with explicit names. Policies (hybrid), masks (structural
development) and metrics all use these names.
"""

from __future__ import annotations

import fnmatch

from torch import nn

from ..neurons import Site

SYNAPTIC_TYPES: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear)


def neuron_sites(model: nn.Module) -> dict[str, Site]:
    """All sites in forward-definition order, keyed by module path."""
    return {name: m for name, m in model.named_modules() if isinstance(m, Site)}


def synaptic_layers(model: nn.Module) -> dict[str, nn.Module]:
    """All conv/linear layers keyed by module path."""
    return {name: m for name, m in model.named_modules() if isinstance(m, SYNAPTIC_TYPES)}


def match_sites(model: nn.Module, patterns: list[str]) -> list[str]:
    """Site names matching any glob pattern (``layer3.*``, ``sn1``), in model order.

    Raises ``ValueError`` naming a pattern that matches no site.
    """
    names = list(neuron_sites(model))
    chosen: list[str] = []
    for pat in patterns:
        hits = [n for n in names if fnmatch.fnmatchcase(n, pat)]
        if not hits:
            raise ValueError(f"site pattern {pat!r} matches no neuron site; sites are {names}")
        chosen.extend(h for h in hits if h not in chosen)
    return [n for n in names if n in chosen]


def replace_module(model: nn.Module, name: str, new: nn.Module) -> nn.Module:
    """Replace the submodule at dotted path ``name``; returns the old module."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, child)
    setattr(parent, child, new)
    return old
