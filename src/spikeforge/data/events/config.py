"""Recipe options for event-camera datasets (``[data.events]``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EventConfig:
    split_by: str = "count"  # "count": equal event counts per frame | "time": equal time windows
    size: int = 0  # spatial size after downsampling (0 = sensor resolution)
    denoise_us: int = 0  # drop events with no neighbour event within this many µs (0 = off)
    cache_dir: str = ""  # "" = <data root>/.spikeforge-cache
    skip_bad: bool = False  # skip malformed samples with a warning instead of raising
