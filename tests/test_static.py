"""IDX (MNIST/Fashion-MNIST), CIFAR python batches and the bundled MNIST subset."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import FLOAT32, idx_bytes, write_cifar10, write_idx, write_mnist, write_pickle

from spikeforge.data.config import DataConfig
from spikeforge.data.static import (
    CIFAR10,
    CIFAR100,
    MNIST_FILES,
    DataFormatError,
    load_cifar10,
    load_cifar100,
    load_fashion_mnist,
    load_mnist,
    load_mnist_bundled,
    read_cifar_pickle,
    read_idx,
)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_roundtrip(tmp_path: Path, gz: bool) -> None:
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a-idx3-ubyte", arr, gz)
    name = "a-idx3-ubyte.gz" if gz else "a-idx3-ubyte"
    out = read_idx(tmp_path / name)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, arr)


def test_read_idx_errors_name_the_file(tmp_path: Path) -> None:
    arr = np.zeros((3, 4), dtype=np.uint8)
    good = idx_bytes(arr)
    cases = {
        "trunc": (good[:-1], "payload is 11 bytes"),
        "magic": (b"\x01\x02" + good[2:], "bad IDX magic"),
        "dtype": (idx_bytes(arr, FLOAT32), "element type 0x0d"),
        "short": (good[:3], "too short"),
        "header": (good[:6], "truncated IDX header"),
    }
    for name, (data, msg) in cases.items():
        p = tmp_path / f"{name}-idx"
        p.write_bytes(data)
        with pytest.raises(DataFormatError, match=msg) as e:
            read_idx(p)
        assert str(p) in str(e.value)
    bad_gz = tmp_path / "bad.gz"
    bad_gz.write_bytes(gzip.compress(good)[:-6])
    with pytest.raises(DataFormatError, match="bad.gz"):
        read_idx(bad_gz)
    with pytest.raises(FileNotFoundError, match="missing-idx"):
        read_idx(tmp_path / "missing-idx")


@pytest.mark.parametrize(("sub", "gz"), [(".", False), ("raw", True), ("MNIST/raw", True)])
def test_load_mnist_layouts(tmp_path: Path, sub: str, gz: bool) -> None:
    arrays = write_mnist(tmp_path / sub, gz)
    s = load_mnist(tmp_path, DataConfig())
    assert s.train.x.dtype == torch.uint8 and s.train.x.shape == (7, 1, 28, 28)
    assert s.train.y.dtype == torch.int64 and s.test.x.shape == (5, 1, 28, 28)
    np.testing.assert_array_equal(s.train.x[:, 0].numpy(), arrays["train_x"])
    np.testing.assert_array_equal(s.test.y.numpy(), arrays["test_y"])
    assert s.info.mean == (0.1307,) and s.info.std == (0.3081,)
    assert (s.info.num_classes, s.info.in_channels, s.info.input_size) == (10, 1, 28)


def test_load_mnist_limits_and_fashion(tmp_path: Path) -> None:
    arrays = write_mnist(tmp_path / "FashionMNIST" / "raw", gz=True)
    s = load_fashion_mnist(tmp_path, DataConfig(train_limit=3, test_limit=2))
    assert len(s.train) == 3 and len(s.test) == 2
    np.testing.assert_array_equal(s.train.x[:, 0].numpy(), arrays["train_x"][:3])
    assert s.info.name == "fashion-mnist" and s.info.mean == (0.2860,) and s.info.std == (0.3530,)
    assert s.info.classes[0] == "T-shirt/top"


def test_load_mnist_missing_and_mismatched(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_mnist(tmp_path, DataConfig())
    write_mnist(tmp_path, gz=False)
    write_idx(tmp_path / MNIST_FILES["train_y"], np.zeros(6, dtype=np.uint8), gz=False)
    with pytest.raises(DataFormatError, match="train-labels-idx1-ubyte.*expected \\[7\\]"):
        load_mnist(tmp_path, DataConfig())
    write_idx(tmp_path / MNIST_FILES["train_y"], np.full(7, 10, dtype=np.uint8), gz=False)
    with pytest.raises(DataFormatError, match="labels span \\[10, 10\\]"):
        load_mnist(tmp_path, DataConfig())


# ---------------------------------------------------------------------------------- CIFAR
@pytest.mark.parametrize("point_at_folder", [False, True])
def test_load_cifar10_official_layout(tmp_path: Path, point_at_folder: bool) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    x_train, y_train, x_test = write_cifar10(folder)
    s = load_cifar10(folder if point_at_folder else tmp_path, DataConfig())
    assert s.train.x.shape == (20, 3, 32, 32) and s.train.x.dtype == torch.uint8
    assert s.test.x.shape == (4, 3, 32, 32)
    np.testing.assert_array_equal(s.train.x.numpy().reshape(20, -1), x_train)
    # channel-planar rows: the first 1024 bytes are the red plane, row-major
    assert int(s.train.x[1, 0, 0, 5]) == int(x_train[1, 5])
    assert int(s.train.x[1, 2, 31, 31]) == int(x_train[1, 3071])
    np.testing.assert_array_equal(s.train.y.numpy(), y_train)
    np.testing.assert_array_equal(s.test.x.numpy().reshape(4, -1), x_test)
    assert s.info.classes == CIFAR10.classes and s.info.mean == CIFAR10.mean and s.info.num_classes == 10
    limited = load_cifar10(tmp_path, DataConfig(train_limit=6, test_limit=1))
    assert len(limited.train) == 6 and len(limited.test) == 1


def test_cifar_pickle_from_numpy1_is_read(tmp_path: Path) -> None:
    """Files pickled by numpy < 2 name numpy.core.multiarray._reconstruct."""
    arr = np.arange(3072 * 2, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    blob = pickle.dumps({"data": arr, "labels": [3, 4]}, protocol=2)
    old = blob.replace(b"numpy._core.multiarray\n_reconstruct", b"numpy.core.multiarray\n_reconstruct")
    assert old != blob
    p = tmp_path / "old_batch"
    p.write_bytes(old)
    d = read_cifar_pickle(p)
    np.testing.assert_array_equal(d["data"], arr)
    assert d["labels"] == [3, 4]


def test_load_cifar100_fine_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-python"
    split = {}
    for name, n in (("train", 6), ("test", 3)):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = [int(v) for v in rng.integers(0, 100, n)]
        coarse = [int(v) for v in rng.integers(0, 20, n)]
        write_pickle(folder / name, {"filenames": [b"f"] * n, "batch_label": name.encode(),
                                     "fine_labels": fine, "coarse_labels": coarse, "data": data})
        split[name] = (data, fine)
    names = [f"name{i}" for i in range(100)]
    write_pickle(folder / "meta", {"fine_label_names": [n.encode() for n in names],
                                   "coarse_label_names": [b"c"] * 20})
    s = load_cifar100(tmp_path, DataConfig())
    np.testing.assert_array_equal(s.train.x.numpy().reshape(6, -1), split["train"][0])
    np.testing.assert_array_equal(s.test.y.numpy(), split["test"][1])
    assert s.info.num_classes == 100 and s.info.classes == tuple(names) and s.info.std == CIFAR100.std


class _Evil:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.target}",))


class _Allocate:
    def __reduce__(self) -> tuple:
        return (bytes, (10**12,))


def test_malicious_pickle_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(folder)
    marker = tmp_path / "pwned"
    write_pickle(folder / "data_batch_3", {"data": _Evil(marker), "labels": []})
    refused = "data_batch_3: refusing to unpickle (posix|os|nt)\\.system"
    with pytest.raises(pickle.UnpicklingError, match=refused):
        load_cifar10(tmp_path, DataConfig())
    assert not marker.exists()
    write_pickle(folder / "data_batch_3", {"data": print, "labels": []})
    with pytest.raises(pickle.UnpicklingError, match="(builtins|__builtin__)\\.print"):
        load_cifar10(tmp_path, DataConfig())
    write_pickle(folder / "data_batch_3", {"data": _Allocate(), "labels": []})  # bytes(10**12): refused
    with pytest.raises(DataFormatError, match="data_batch_3: not a readable CIFAR pickle \\(UnpicklingError: "
                                              "bytes\\(int\\) is not allowed"):
        load_cifar10(tmp_path, DataConfig())
    write_pickle(folder / "data_batch_3", {"data": np.zeros((0, 3072), np.uint8), "labels": []})  # b"" inside
    assert len(load_cifar10(tmp_path, DataConfig()).train) == 16


def test_cifar_bad_fields_name_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(folder)
    write_pickle(folder / "data_batch_2", {"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]})
    with pytest.raises(DataFormatError, match="data_batch_2: field 'data' is uint8 \\(2, 100\\)"):
        load_cifar10(tmp_path, DataConfig())
    write_pickle(folder / "data_batch_2", {"labels": [0]})
    with pytest.raises(DataFormatError, match="data_batch_2: missing field 'data'"):
        load_cifar10(tmp_path, DataConfig())
    (folder / "data_batch_2").write_bytes(pickle.dumps({"data": 1}, protocol=2)[:-5])
    with pytest.raises(DataFormatError, match="data_batch_2: not a readable CIFAR pickle"):
        load_cifar10(tmp_path, DataConfig())
    with pytest.raises(FileNotFoundError, match="cifar-100-python"):
        load_cifar100(tmp_path / "nothing", DataConfig())


def test_bundled_mnist_subset() -> None:
    s = load_mnist_bundled(None, DataConfig())
    assert s.train.x.shape == (10_000, 1, 28, 28) and s.test.x.shape == (2_000, 1, 28, 28)
    assert s.train.x.dtype == torch.uint8 and s.train.y.dtype == torch.int64
    assert set(s.train.y.tolist()) == set(range(10)) and s.info.name == "mnist-bundled"
    assert len(load_mnist_bundled(None, DataConfig(train_limit=100)).train) == 100
