"""Checks every dataset reader applies the same way, each failing with one line naming the place.

* :func:`require_samples` / :func:`require_split` - both splits hold at least one sample (after
  ``data.train_limit`` / ``data.test_limit`` and after ``data.events.skip_bad`` dropped malformed
  files), so a run never trains zero steps and writes a checkpoint;
* :func:`require_class_files` - a class folder holds at least one sample file (an empty folder
  would silently drop its class; in an image folder it would also shift every later label);
* :func:`check_labels` - labels lie in ``[0, num_classes)``.

All raise :class:`DataError` subclasses (``ValueError``) whose message starts with the folder or
file concerned.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from .base import DataSplits

SPLIT_WORDS = {"train": "training", "test": "test"}
T = TypeVar("T")


class DataError(ValueError):
    """Data that does not match what the reader expects (the message names the file or folder)."""


class DataFormatError(DataError):
    """A dataset file that does not match its documented format (the message names the file)."""


class EmptySplitError(DataError):
    """A training or test split without samples."""


class EmptyClassError(DataError):
    """A class folder without sample files."""


class DataMismatchError(DataError):
    """Data whose shape, kind or classes differ from the data a run was trained on."""


class DataMismatchWarning(UserWarning):
    """Data that loads but differs from what was asked for or recorded (a wrong folder or name?)."""


def require_split(samples: int, split: str, name: str, where: str | Path, hint: str = "") -> None:
    """Raise :class:`EmptySplitError` if split ``split`` ("train"/"test") of dataset ``name`` has 0 samples.

    ``where`` is the dataset folder (or file) named in the message; ``hint`` (optional) says why
    the split may be empty, e.g. how many malformed files were skipped.
    """
    if samples == 0:
        extra = f" ({hint})" if hint else ""
        raise EmptySplitError(f"{where}: the {SPLIT_WORDS[split]} split of dataset {name!r} has 0 samples{extra}; "
                              "expected at least 1")


def require_samples(splits: DataSplits, where: str | Path, hint: str = "") -> DataSplits:
    """Return ``splits`` if both splits hold samples; else raise :class:`EmptySplitError` (:func:`require_split`)."""
    require_split(len(splits.train), "train", splits.info.name, where, hint)
    require_split(len(splits.test), "test", splits.info.name, where, hint)
    return splits


def require_class_files(folder: Path, files: Sequence[T], what: str,
                        error: type[ValueError] = EmptyClassError) -> Sequence[T]:
    """Return ``files`` if it is not empty; else raise ``error`` naming ``folder``.

    ``what`` describes the expected files, e.g. ``".bin event files"``.
    """
    if not files:
        raise error(f"{folder}: class folder holds no {what}; expected at least one (an empty folder would "
                    "silently drop its class)")
    return files


def check_labels(y: np.ndarray, num_classes: int, where: Path | str) -> None:
    """Raise :class:`DataFormatError` if a label lies outside ``[0, num_classes)``."""
    if y.size and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise DataFormatError(f"{where}: labels span [{int(y.min())}, {int(y.max())}], "
                        f"expected [0, {num_classes - 1}]")
