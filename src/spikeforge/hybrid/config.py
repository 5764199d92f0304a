"""Recipe section ``[hybrid]``: which neuron sites become SpikingReLU units."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class HybridConfig:
    sites: str = "none"  # "none" | "last:K" | "first:K" | "every:N" | "auto:BUDGET" | comma-separated names/globs
    levels: int = 15  # L: quantization levels of each SpikingReLU
    calibration_samples: int = 1000  # held-out training samples used by the auto policy
