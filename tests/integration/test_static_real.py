"""Static datasets on the real data in ../shared/data (skipped when it is absent)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from spikeforge.data import load_dataset
from spikeforge.data.config import DataConfig
from spikeforge.data.static import CIFAR10, read_idx

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
MNIST_TRAIN_IMAGES_MD5 = "6bbc9ace898e44ae57da46a324031adb"  # the official decompressed file
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def need(folder: str) -> Path:
    path = SHARED / folder
    if not path.is_dir():
        pytest.skip(f"{path} not found: integration data absent")
    return path


def test_mnist_full() -> None:
    root = need("mnist")
    s = load_dataset(DataConfig(name="mnist"), root)
    assert s.train.x.shape == (60_000, 1, 28, 28) and s.test.x.shape == (10_000, 1, 28, 28)
    assert torch.bincount(s.train.y).tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(s.test.y).tolist() == MNIST_TEST_COUNTS
    raw = read_idx(root / "train-images-idx3-ubyte.gz")
    header = bytes([0, 0, 8, 3]) + np.array(raw.shape, dtype=">u4").tobytes()
    assert hashlib.md5(header + raw.tobytes()).hexdigest() == MNIST_TRAIN_IMAGES_MD5
    assert torch.equal(s.train.x[:, 0], torch.from_numpy(raw))


def test_cifar10_jpeg_small(tmp_path: Path) -> None:
    root = need("cifar10-jpeg")
    cfg = DataConfig(name="cifar10", train_limit=200, test_limit=100, cache_dir=str(tmp_path))
    s = load_dataset(cfg, root)
    assert s.train.x.shape == (200, 3, 32, 32) and s.test.x.shape == (100, 3, 32, 32)
    assert torch.bincount(s.train.y).tolist() == [20] * 10 and torch.bincount(s.test.y).tolist() == [10] * 10
    assert s.info.classes == CIFAR10.classes and s.info.mean == CIFAR10.mean
    assert 60 < s.train.x.float().mean() < 180  # real photographs, not blank
    cfg = DataConfig(name="imagefolder", train_limit=200, test_limit=100, cache_dir=str(tmp_path))
    again = load_dataset(cfg, root)
    assert torch.equal(again.train.x, s.train.x) and again.info.cache_hits == ()  # name is part of the key
    assert 0.3 < again.info.mean[0] < 0.7 and 0.15 < again.info.std[0] < 0.35


def test_bundled_subset_matches_mnist() -> None:
    s = load_dataset(DataConfig(name="mnist-bundled"))
    assert (len(s.train), len(s.test)) == (10_000, 2_000)
    root = SHARED / "mnist"
    if root.is_dir():
        train_x = read_idx(root / "train-images-idx3-ubyte.gz")[:10_000]
        test_y = read_idx(root / "t10k-labels-idx1-ubyte.gz")[:2_000]
        assert torch.equal(s.train.x[:, 0], torch.from_numpy(train_x))
        assert torch.equal(s.test.y, torch.from_numpy(test_y).long())
