"""Datasets: name -> loader, and :func:`load_dataset`, the one entry point the engine uses.

A loader is ``(root: Path, cfg: DataConfig) -> DataSplits``. Static image datasets live in
:mod:`.static` / :mod:`.imagefolder`; event datasets register themselves in
``spikeforge.data.events.EVENT_DATASETS``. The dataset folder is, in order: the ``root``
argument (the CLI's ``--data``), the recipe's ``data.root`` (a trained run's recipe records the
folder it was trained from), or — printed on stderr when it is used — the fallback
``../shared/data/<folder>`` relative to the working directory, ``<folder>`` from :data:`DEFAULT_ROOTS`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import cast

from . import events as _events
from .base import ArrayDataset, DatasetInfo, DataSplits
from .config import DataConfig
from .fingerprint import DataFingerprint, FingerprintDiff
from .imagefolder import load_image_folder
from .static import load_cifar10, load_cifar100, load_fashion_mnist, load_mnist, load_mnist_bundled
from .validate import DataError, DataMismatchError, DataMismatchWarning, EmptySplitError

Loader = Callable[[Path, DataConfig], DataSplits]

STATIC_DATASETS: dict[str, Loader] = {
    "mnist": load_mnist,
    "fashion-mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "imagefolder": load_image_folder,
    "mnist-bundled": load_mnist_bundled,
}
NO_ROOT = frozenset({"mnist-bundled"})  # shipped in the package: no folder needed
SHARED_DATA = Path("..") / "shared" / "data"  # the fallback, relative to the working directory
DEFAULT_ROOTS: dict[str, str] = {
    "mnist": "mnist",
    "fashion-mnist": "fashion-mnist",
    "cifar10": "cifar10-jpeg",  # the shared copy is an image folder; python batches work too
    "cifar100": "cifar100",
    "imagefolder": "imagenet",
    "nmnist": "nmnist-1k",
    "cifar10dvs": "cifar10-dvs",
    "dvsgesture": "dvs-gesture",
}


def datasets() -> dict[str, Loader]:
    """Every known dataset (static + event), looked up now so later registrations count."""
    return {**STATIC_DATASETS, **_events.EVENT_DATASETS}


DATASETS: dict[str, Loader]  # declared for type checkers; the value comes from __getattr__ below


def __getattr__(name: str) -> dict[str, Loader]:
    """``DATASETS`` (module attribute): a fresh ``{**STATIC_DATASETS, **EVENT_DATASETS}`` on each access."""
    if name == "DATASETS":
        return datasets()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def resolve_root(cfg: DataConfig, root: str | Path | None = None) -> Path:
    """The dataset folder for ``cfg`` (see the module docstring); raises if it does not exist."""
    if root:
        path, source = Path(root).expanduser(), "--data"
    elif cfg.root:
        path, source = Path(cfg.root).expanduser(), "data.root"
    else:
        path, source = SHARED_DATA / DEFAULT_ROOTS.get(cfg.name, cfg.name), "the fallback folder"
    if not path.exists():
        raise FileNotFoundError(f"dataset {cfg.name!r}: {path} ({source}, resolved {path.resolve()}) "
                                "does not exist; pass --data DATASET_FOLDER or set data.root in the recipe")
    if not path.is_dir():
        raise NotADirectoryError(f"dataset {cfg.name!r}: {path} ({source}) is a file; expected the dataset folder")
    if source == "the fallback folder":
        print(f"dataset {cfg.name!r}: no --data and no data.root given; using {path} (resolved {path.resolve()})",
              file=sys.stderr)
    return path


def dataset_folder(cfg: DataConfig, root: str | Path | None = None) -> Path | None:
    """The folder ``load_dataset`` reads ``cfg`` from (``None`` for a dataset shipped in the package)."""
    return None if cfg.name in NO_ROOT else resolve_root(cfg, root)


def _check_stats(values: list[float], info: DatasetInfo, field_name: str) -> tuple[float, ...]:
    if len(values) != info.in_channels:
        raise ValueError(f"data.{field_name} has {len(values)} values, expected one per channel "
                         f"({info.in_channels}) for {info.name}")
    return tuple(float(v) for v in values)


def load_dataset(cfg: DataConfig, root: str | Path | None = None) -> DataSplits:
    """Load the dataset ``cfg.name`` from ``root`` (or ``cfg.root``, or the default folder)."""
    table = datasets()
    if cfg.name not in table:
        raise ValueError(f"data.name: unknown dataset {cfg.name!r}; valid names: {', '.join(sorted(table))}")
    folder = dataset_folder(cfg, root)  # None only for a dataset shipped in the package, whose loader ignores it
    splits = table[cfg.name](cast(Path, folder), cfg)
    if cfg.mean or cfg.std:  # explicit normalisation overrides the dataset's constants
        if cfg.mean:
            splits.info.mean = _check_stats(cfg.mean, splits.info, "mean")
        if cfg.std:
            splits.info.std = _check_stats(cfg.std, splits.info, "std")
    return splits


__all__ = ["DATASETS", "DEFAULT_ROOTS", "ArrayDataset", "DataConfig", "DataSplits", "DatasetInfo", "dataset_folder",
           "datasets", "load_dataset", "resolve_root",
           # data provenance and degenerate data (spikeforge.data.fingerprint / .validate)
           "DataError", "DataFingerprint", "DataMismatchError", "DataMismatchWarning", "EmptySplitError",
           "FingerprintDiff"]
