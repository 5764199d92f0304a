"""Recipe section ``[data]``."""

from __future__ import annotations

from dataclasses import dataclass, field

from .events.config import EventConfig


@dataclass
class DataConfig:
    name: str = "mnist"  # a key of spikeforge.data.DATASETS
    root: str = ""  # "" = the dataset's default folder under ../shared/data (or --data)
    time_steps: int = 4  # T
    encoding: str = "direct"  # "direct" (analog repeated over T) | "rate" (Bernoulli) | "frames" (events)
    train_limit: int = 0  # use the first N training samples (0 = all)
    test_limit: int = 0
    crop_padding: int = 0  # random crop with this zero padding (0 = off)
    flip: bool = False  # random horizontal flip
    cutout: int = 0  # cutout square side in pixels (0 = off)
    image_size: int = 0  # image folders: centre-crop + resize to S x S (0 = keep the native size)
    cache_dir: str = ""  # image folders: decoded-image cache ("" = <root>/.spikeforge-cache or ~/.cache)
    mean: list[float] = field(default_factory=list)  # per-channel mean in [0, 1] units (empty = dataset's)
    std: list[float] = field(default_factory=list)  # per-channel std (empty = dataset's)
    events: EventConfig = field(default_factory=EventConfig)
