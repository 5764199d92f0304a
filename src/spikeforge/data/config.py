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
    events: EventConfig = field(default_factory=EventConfig)
