"""Event-camera datasets. ``EVENT_DATASETS`` maps dataset names to loaders
``(root: Path, cfg: DataConfig) -> DataSplits``.

Decoders (one per file format) return structured arrays of :data:`EVENT_DTYPE`
(``x``, ``y``: int16, ``t``: int64 µs, ``p``: uint8 0/1); :class:`FrameSpec` turns events into
``[T, 2, H, W]`` count frames; loaders cache the frames on disk. See ``docs/events.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..base import DataSplits
from .aedat2 import read_aedat2
from .aedat3 import read_aedat3
from .aedat4 import read_aedat4
from .common import EVENT_DTYPE, EventFormatError, make_events
from .config import EventConfig
from .datasets import EventDatasetInfo, load_cifar10dvs, load_nmnist
from .frames import FrameSpec, center_crop, denoise, downsample, to_frames
from .gesture import load_dvsgesture, read_gesture_labels
from .nmnist import read_nmnist

if TYPE_CHECKING:  # data.config imports events.config: avoid the import cycle
    from ..config import DataConfig

EVENT_DATASETS: dict[str, Callable[[Path, DataConfig], DataSplits]] = {
    "nmnist": load_nmnist,
    "dvsgesture": load_dvsgesture,
    "cifar10dvs": load_cifar10dvs,
}

__all__ = [
    "EVENT_DATASETS", "EVENT_DTYPE", "EventConfig", "EventDatasetInfo", "EventFormatError", "FrameSpec",
    "center_crop", "denoise", "downsample", "load_cifar10dvs", "load_dvsgesture", "load_nmnist",
    "make_events",
    "read_aedat2", "read_aedat3", "read_aedat4", "read_gesture_labels", "read_nmnist", "to_frames",
]
