"""Event-camera datasets. ``EVENT_DATASETS`` maps dataset names to loaders
``(root: Path, cfg: DataConfig) -> DataSplits``."""

from __future__ import annotations

from collections.abc import Callable

EVENT_DATASETS: dict[str, Callable] = {}
