"""Hybrid training with SpikingReLU sites (issue 3), usable with the engine or in your own loop.

- :mod:`.spiking_relu`: the quantized unit ``y = s·clamp(round(x/s), 0, L)`` (LSQ), a plain module;
- :mod:`.policy`: which neuron sites become SpikingReLU (``select`` / ``select_sites``) and
  ``apply_hybrid`` to swap them in;
- :mod:`.config`: the recipe section ``[hybrid]``; :mod:`.extension`: the training method (``METHOD``);
- :mod:`.compare`: train, convert and verify one run per policy.

Conversion to an all-spiking network and its verification live in :mod:`spikeforge.reparam`.
"""

from .compare import compare_policies, format_table
from .config import HybridConfig
from .extension import METHOD, HybridHook, HybridMethod
from .policy import (
    AutoConfig,
    AutoResult,
    Calibration,
    Selection,
    apply_hybrid,
    auto_select,
    parse_spec,
    select,
    select_sites,
)
from .spiking_relu import BatchShare, SpikingReLU

__all__ = [
    "METHOD", "AutoConfig", "AutoResult", "BatchShare", "Calibration", "HybridConfig", "HybridHook", "HybridMethod",
    "Selection", "SpikingReLU", "apply_hybrid", "auto_select", "compare_policies", "format_table", "parse_spec",
    "select", "select_sites",
]
