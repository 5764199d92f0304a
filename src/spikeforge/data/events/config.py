"""Recipe options for event-camera datasets (``[data.events]``).

The number of frames ``T`` is the recipe's ``data.time_steps``. See ``docs/events.md``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EventConfig:
    split_by: str = "count"  # "count": equal event counts per frame | "time": equal time windows
    # | "window": fixed windows of window_us from the first event (frame k = [t0 + k·w, t0 + (k+1)·w); events
    # after T windows are dropped, a shorter sample ends in empty frames) - tonic's ToFrame(time_window=w)
    window_us: int = 0
    size: int = 0  # spatial size after downsampling, x -> x * size // W (0 = sensor resolution / crop)
    crop: int = 0  # centre crop to crop x crop pixels before downsampling (0 = off; N-MNIST 34 -> 32)
    denoise_us: int = 0  # drop events with no event at a neighbouring pixel within this many µs (0 = off)
    cache: bool = True  # cache decoded frames on disk (safetensors, atomic writes)
    cache_dir: str = ""  # "" = $SPIKEFORGE_CACHE or ~/.cache/spikeforge/events (data folders stay untouched)
    skip_bad: bool = False  # skip malformed samples with a warning (counted in info.skipped), don't raise
