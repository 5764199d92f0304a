"""Image folders: layout, exact decoding, balanced limits, resizing and the .npy cache."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import CLASSES, SIDE, write_folder
from PIL import Image

from spikeforge.data.config import DataConfig
from spikeforge.data.imagefolder import (
    CACHE_FOLDER,
    ImageFolderError,
    channel_stats,
    load_image_folder,
    save_npy_atomic,
)
from spikeforge.data.static import CIFAR10, load_cifar10


def expected(images: dict[str, list[np.ndarray]], split: str, n: int) -> tuple[np.ndarray, list[int]]:
    """Round-robin over classes: (cat 0, dog 0, emu 0, cat 1, ...)."""
    xs, ys = [], []
    for i in range(n):
        for label, c in enumerate(CLASSES):
            xs.append(images[f"{split}/{c}"][i].transpose(2, 0, 1))
            ys.append(label)
    return np.stack(xs), ys


def test_reads_images_exactly_and_caches(tmp_path: Path) -> None:
    images = write_folder(tmp_path, {"train": 4, "val": 2})
    s = load_image_folder(tmp_path, DataConfig(name="imagefolder"))
    x, y = expected(images, "train", 4)
    assert s.train.x.dtype == torch.uint8 and s.train.x.shape == (12, 3, SIDE, SIDE)
    np.testing.assert_array_equal(s.train.x.numpy(), x)
    assert s.train.y.tolist() == y and s.train.y.dtype == torch.int64
    np.testing.assert_array_equal(s.test.x.numpy(), expected(images, "val", 2)[0])
    assert s.info.classes == CLASSES and s.info.num_classes == 3 and s.info.input_size == SIDE
    mean = x.reshape(12, 3, -1).transpose(1, 0, 2).reshape(3, -1) / 255.0
    np.testing.assert_allclose(s.info.mean, mean.mean(axis=1), rtol=1e-9)
    np.testing.assert_allclose(s.info.std, mean.std(axis=1), rtol=1e-9)
    assert s.info.cache_hits == () and Path(s.info.cache_dir) == tmp_path / CACHE_FOLDER
    assert len(list((tmp_path / CACHE_FOLDER).glob("*.npy"))) == 4
    assert not list((tmp_path / CACHE_FOLDER).glob("*.tmp"))

    again = load_image_folder(tmp_path, DataConfig(name="imagefolder"))
    assert again.info.cache_hits == ("train", "test")
    assert torch.equal(again.train.x, s.train.x) and torch.equal(again.test.y, s.test.y)
    assert again.info.mean == pytest.approx(s.info.mean)

    # a changed file (new content, new mtime) invalidates the train entry only
    new = np.full((SIDE, SIDE, 3), 7, dtype=np.uint8)
    target = tmp_path / "train" / "dog" / "001.png"
    Image.fromarray(new).save(target)
    st = os.stat(target)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    changed = load_image_folder(tmp_path, DataConfig(name="imagefolder"))
    assert changed.info.cache_hits == ("test",)
    np.testing.assert_array_equal(changed.train.x[4].numpy(), new.transpose(2, 0, 1))  # dog #1 is index 3 + 1


def test_balanced_limit_and_test_split(tmp_path: Path) -> None:
    images = write_folder(tmp_path, {"train": 3, "test": 2})
    cfg = DataConfig(train_limit=4, test_limit=3, cache_dir=str(tmp_path / "c"))
    s = load_image_folder(tmp_path, cfg)
    assert s.train.y.tolist() == [0, 1, 2, 0] and s.test.y.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(s.train.x.numpy(), expected(images, "train", 2)[0][:4])
    assert (tmp_path / "c").is_dir() and not (tmp_path / CACHE_FOLDER).exists()


def test_resize_and_native_size_rules(tmp_path: Path) -> None:
    write_folder(tmp_path, {"train": 1, "val": 1}, side=12)
    s = load_image_folder(tmp_path, DataConfig(image_size=6, cache_dir=str(tmp_path / "c")))
    assert s.train.x.shape == (3, 3, 6, 6) and s.info.input_size == 6
    # a non-square image is centre-cropped then resized
    rect = np.zeros((10, 20, 3), dtype=np.uint8)
    rect[:, 5:15] = 200  # the centre 10x10 square is uniformly 200
    Image.fromarray(rect).save(tmp_path / "train" / "cat" / "000.png")
    s = load_image_folder(tmp_path, DataConfig(image_size=5, cache_dir=str(tmp_path / "c")))
    assert (s.train.x[0] == 200).all()
    with pytest.raises(ImageFolderError, match="000.png: image is 20x10 \\(not square\\); set data.image_"):
        load_image_folder(tmp_path, DataConfig(cache_dir=str(tmp_path / "c")))
    Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(tmp_path / "train" / "cat" / "000.png")
    with pytest.raises(ImageFolderError, match="image is 12x12, expected 9x9"):
        load_image_folder(tmp_path, DataConfig(cache_dir=str(tmp_path / "c")))


def test_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="expected .*train/<class>/"):
        load_image_folder(tmp_path, DataConfig())
    write_folder(tmp_path, {"train": 1})
    write_folder(tmp_path, {"val": 1}, classes=("cat", "dog", "fox"))
    with pytest.raises(ImageFolderError, match="only in train: \\['emu'\\]; only in val: \\['fox'\\]"):
        load_image_folder(tmp_path, DataConfig())
    (tmp_path / "val" / "emu").mkdir()
    (tmp_path / "val" / "fox").rename(tmp_path / "val" / ".hidden")  # hidden folders are not classes
    with pytest.raises(ImageFolderError, match="val/emu: class folder holds no images"):
        load_image_folder(tmp_path, DataConfig(cache_dir=str(tmp_path / "c")))
    (tmp_path / "val" / "emu" / "0.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ImageFolderError, match="emu/0.jpg: cannot decode image"):
        load_image_folder(tmp_path, DataConfig(cache_dir=str(tmp_path / "c")))


def test_read_only_root_uses_user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    write_folder(data, {"train": 1, "test": 1})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    os.chmod(data, stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    try:
        s = load_image_folder(data, DataConfig())
    finally:
        os.chmod(data, stat.S_IRWXU)
    assert Path(s.info.cache_dir) == tmp_path / "xdg" / "spikeforge" / "imagefolder"
    assert not (data / CACHE_FOLDER).exists() and len(list(Path(s.info.cache_dir).glob("*.npy"))) == 4


def test_cifar10_root_that_is_an_image_folder(tmp_path: Path) -> None:
    write_folder(tmp_path, {"train": 1, "test": 1}, classes=CIFAR10.classes)
    s = load_cifar10(tmp_path, DataConfig(cache_dir=str(tmp_path / "c")))
    assert s.info.name == "cifar10" and s.info.mean == CIFAR10.mean and s.info.classes == CIFAR10.classes
    assert s.train.x.shape == (10, 3, SIDE, SIDE)


def test_channel_stats_and_atomic_save(tmp_path: Path) -> None:
    x = torch.randint(0, 256, (5, 2, 3, 4), dtype=torch.uint8)
    mean, std = channel_stats(x)
    ref = x.double().div(255).transpose(0, 1).reshape(2, -1)
    assert mean == pytest.approx(ref.mean(1).tolist(), rel=1e-12)
    assert std == pytest.approx(ref.std(1, unbiased=False).tolist(), rel=1e-12)
    arr = np.arange(10, dtype=np.int64)
    save_npy_atomic(tmp_path / "a.npy", arr)
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), arr)
    assert [p.name for p in tmp_path.iterdir()] == ["a.npy"]
