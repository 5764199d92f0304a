"""The data a run was trained on: recorded when training starts, compared whenever the run meets data again.

``train`` records the fingerprint (:mod:`spikeforge.data.fingerprint`) of the data it loaded in the
run directory. ``evaluate``, ``convert``, ``verify``, ``compact`` and ``train --resume`` read data
through :func:`load_run_data`: by default from the folder the run recorded (its recipe's
``data.root``), and whatever folder it is, its fingerprint is compared with the recorded one. A
difference in files, sample counts or contents is a ``DataMismatchWarning`` naming it; another
sample shape, kind of data or list of classes is a ``DataMismatchError``. Runs written before
the fingerprint was recorded are not compared.
"""

from __future__ import annotations

from pathlib import Path

from .. import data
from ..data.base import DataSplits
from ..data.config import DataConfig
from ..data.fingerprint import DataFingerprint, compare, fingerprint
from .run_files import RunDir
from .schema import Recipe


def record_data(run: RunDir, cfg: DataConfig, splits: DataSplits) -> None:
    """Write the fingerprint of ``splits``, loaded for ``cfg`` from ``cfg.root`` (the resolved recipe's folder)."""
    run.write_data_fingerprint(fingerprint(cfg, cfg.root or None, splits).to_dict())


def check_data(run: RunDir, cfg: DataConfig, root: str | Path | None, splits: DataSplits) -> bool:
    """Compare ``splits`` (loaded from ``root``, or ``cfg.root`` when ``None``) with the data the run recorded;
    returns whether the run had a record to compare with."""
    doc, source = run.read_data_fingerprint()
    if doc is None:
        return False
    saved = DataFingerprint.from_dict(doc, source)
    compare(saved, fingerprint(cfg, root, splits)).check()
    return True


def load_run_data(run: RunDir, recipe: Recipe, data_root: str | Path | None = None) -> DataSplits:
    """The run's dataset from ``data_root`` (default: the folder it was trained on), checked against its record."""
    splits = data.load_dataset(recipe.data, data_root)  # looked up now: tests replace it
    check_data(run, recipe.data, data_root, splits)
    return splits
