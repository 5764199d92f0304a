"""What every dataset reader returns: tensors in memory plus the facts the engine needs.

Static image datasets keep ``x`` as ``uint8 [N, C, H, W]`` (normalised per batch on the training
device). Event datasets keep ``x`` as frames ``[N, T, C, H, W]`` (``kind = "frames"``), any
dtype; the engine moves T to the front.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ArrayDataset:
    """A labelled dataset held in memory."""

    x: torch.Tensor
    y: torch.Tensor  # int64 [N]

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"x has {self.x.shape[0]} samples but y has {self.y.shape[0]}")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, n: int) -> ArrayDataset:
        """The first ``n`` samples (all if ``n <= 0``)."""
        return self if n <= 0 or n >= len(self) else ArrayDataset(self.x[:n], self.y[:n])


@dataclass
class DatasetInfo:
    """Facts about a dataset: shape, classes and normalisation."""

    name: str
    num_classes: int
    in_channels: int
    input_size: int
    kind: str = "image"  # "image": uint8 [N, C, H, W]; "frames": [N, T, C, H, W]
    mean: tuple[float, ...] = field(default_factory=tuple)  # per channel, in [0, 1] units
    std: tuple[float, ...] = field(default_factory=tuple)
    classes: tuple[str, ...] = field(default_factory=tuple)
    # the source files each part was read from: "train", "test" and optionally "meta" (files both
    # splits use, e.g. CIFAR's batches.meta) -> absolute paths; :mod:`.fingerprint` lists them
    files: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass
class DataSplits:
    train: ArrayDataset
    test: ArrayDataset
    info: DatasetInfo
