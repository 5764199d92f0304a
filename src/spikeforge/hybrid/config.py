"""Recipe section ``[hybrid]``: which neuron sites become SpikingReLU units.

``sites`` is a policy spec (see :mod:`spikeforge.hybrid.policy`). The ``calibration_*`` fields
only matter for ``auto:BUDGET``: the last ``calibration_samples`` training samples are held out
of training; the first ``calibration_fit_fraction`` of them fine-tune each candidate for
``calibration_steps`` steps (batches of ``calibration_batch_size``), the rest measure its loss
and event-driven SOPs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class HybridConfig:
    sites: str = "none"  # "none" | "all" | "last:K" | "first:K" | "every:N[@O]" | "auto:BUDGET" | names/globs
    levels: int = 15  # L: quantization levels of each SpikingReLU
    calibration_samples: int = 1000  # held-out training samples used by the auto policy
    calibration_fit_fraction: float = 0.5  # share of the calibration split used to fine-tune candidates
    calibration_batch_size: int = 50
    calibration_steps: int = 8  # optimizer steps of each candidate's fine-tune
    min_benefit: float = 0.0  # auto: a site must lower the calibration loss by more than this
    max_sites: int = 0  # auto: at most this many sites (0 = no limit)
