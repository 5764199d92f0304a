"""The dataset registry and load_dataset's root resolution."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import spikeforge.data as data
from spikeforge.data import DEFAULT_ROOTS, dataset_folder, load_dataset, resolve_root
from spikeforge.data.base import ArrayDataset, DatasetInfo, DataSplits
from spikeforge.data.config import DataConfig
from spikeforge.data.events import EVENT_DATASETS

STATIC = {"mnist", "fashion-mnist", "cifar10", "cifar100", "imagefolder", "mnist-bundled"}


def test_registry_includes_later_event_registrations(monkeypatch: pytest.MonkeyPatch) -> None:
    assert STATIC <= set(data.DATASETS)

    def fake(root: Path, cfg: DataConfig) -> DataSplits:
        ds = ArrayDataset(torch.zeros(2, 1, 1, 1, 1), torch.zeros(2, dtype=torch.int64))
        return DataSplits(ds, ds, DatasetInfo("late", 1, 1, 1, "frames"))

    monkeypatch.setitem(EVENT_DATASETS, "late-events", fake)
    assert "late-events" in data.DATASETS
    assert load_dataset(DataConfig(name="late-events"), Path(".")).info.name == "late"


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown dataset 'imagenet22k'; valid names: .*cifar10.*mnist-bund"):
        load_dataset(DataConfig(name="imagenet22k"))


def test_root_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert DEFAULT_ROOTS["cifar10"] == "cifar10-jpeg" and DEFAULT_ROOTS["nmnist"] == "nmnist-1k"
    with pytest.raises(FileNotFoundError, match="shared/data/cifar10-jpeg \\(the fallback folder.*--data"):
        resolve_root(DataConfig(name="cifar10"))
    with pytest.raises(FileNotFoundError, match="nowhere \\(data.root"):
        resolve_root(DataConfig(name="mnist", root="nowhere"))
    (tmp_path / "given").mkdir()
    assert resolve_root(DataConfig(name="mnist", root="nowhere"), tmp_path / "given") == tmp_path / "given"
    default = tmp_path.parent / "shared" / "data" / "mnist"
    if not default.exists():  # the default is ../shared/data/<folder> relative to the working directory
        with pytest.raises(FileNotFoundError, match="--data"):
            load_dataset(DataConfig(name="mnist"))
    capsys.readouterr()
    (tmp_path.parent / "shared" / "data" / "fallback-only").mkdir(parents=True, exist_ok=True)
    assert resolve_root(DataConfig(name="fallback-only")) == Path("..") / "shared" / "data" / "fallback-only"
    assert "no --data and no data.root given; using ../shared/data/fallback-only" in capsys.readouterr().err
    assert dataset_folder(DataConfig(name="mnist-bundled")) is None  # shipped in the package: no folder


def test_bundled_needs_no_root_and_stats_override() -> None:
    s = load_dataset(DataConfig(name="mnist-bundled", train_limit=10, test_limit=5, mean=[0.5], std=[0.2]))
    assert (len(s.train), len(s.test)) == (10, 5) and s.info.mean == (0.5,) and s.info.std == (0.2,)
    with pytest.raises(ValueError, match="data.mean has 3 values, expected one per channel \\(1\\)"):
        load_dataset(DataConfig(name="mnist-bundled", mean=[0.1, 0.2, 0.3]))
