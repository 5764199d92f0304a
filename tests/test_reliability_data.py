"""Reliability, data side (issue 11 section 5): degenerate or wrong data gives one clear line.

Every case writes tiny files in the exact official format, asserts the exact error (or warning)
line and, where it matters, that nothing was written. The table in RELIABILITY.md ("Data")
lists these cases and their outcomes.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import write_cifar10, write_folder, write_idx, write_mnist, write_pickle
from events_helpers import DVS128, aedat2_bytes, events, nmnist_bytes, nmnist_folder, random_events
from safetensors.numpy import save_file

from spikeforge.data import load_dataset
from spikeforge.data.config import DataConfig
from spikeforge.data.events import EventFormatError, read_nmnist
from spikeforge.data.events.datasets import CIFAR10_CLASSES
from spikeforge.data.imagefolder import CACHE_FOLDER, ImageFolderError, load_image_folder
from spikeforge.data.static import MNIST_FILES, DataFormatError, load_mnist
from spikeforge.data.validate import DataMismatchWarning, EmptyClassError, EmptySplitError

FASHION_GREY = 73  # 73 / 255 = 0.286: Fashion-MNIST's mean pixel value
MNIST_GREY = 33  # 0.129: close to MNIST's 0.1307
LOOKALIKE_N = 100


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def _event_cfg(name: str, tmp_path: Path, **kw: object) -> DataConfig:
    cfg = DataConfig(name=name, time_steps=2, **kw)  # type: ignore[arg-type]
    cfg.events.cache_dir = str(tmp_path / "cache")
    return cfg


# ------------------------------------------------------------------------------ empty splits
def test_idx_with_zero_training_images_is_an_error(tmp_path: Path) -> None:
    write_mnist(tmp_path, gz=True, n_train=0)
    with pytest.raises(EmptySplitError) as e:
        load_dataset(DataConfig(name="mnist"), tmp_path)
    assert str(e.value) == f"{tmp_path}: the training split of dataset 'mnist' has 0 samples; expected at least 1"


def test_cifar_with_an_empty_test_batch_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(folder)
    write_pickle(folder / "test_batch", {"batch_label": b"test", "labels": [],
                                         "data": np.zeros((0, 3072), np.uint8), "filenames": []})
    with pytest.raises(EmptySplitError) as e:
        load_dataset(DataConfig(name="cifar10"), tmp_path)
    assert str(e.value) == f"{folder}: the test split of dataset 'cifar10' has 0 samples; expected at least 1"


def test_all_event_files_skipped_is_an_error_and_caches_nothing(tmp_path: Path) -> None:
    root = nmnist_folder(tmp_path / "nm", np.random.default_rng(0))
    for f in (root / "Train").rglob("*.bin"):
        f.write_bytes(f.read_bytes()[:-1])  # truncated mid-event
    cfg = _event_cfg("nmnist", tmp_path)
    cfg.events.skip_bad = True
    with pytest.raises(EmptySplitError) as e, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_dataset(cfg, root)
    assert str(e.value) == (f"{root}: the training split of dataset 'nmnist' has 0 samples (10 malformed file(s) or "
                            "sample(s) skipped by data.events.skip_bad); expected at least 1")
    assert _files(tmp_path / "cache") == []


def test_cifar10dvs_with_one_file_per_class_has_no_test_split(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for cls in CIFAR10_CLASSES:
        (tmp_path / cls).mkdir()
        (tmp_path / cls / f"cifar10_{cls}_0.aedat").write_bytes(aedat2_bytes(random_events(rng, 20, DVS128, 10**5)))
    with pytest.raises(EmptySplitError) as e:
        load_dataset(_event_cfg("cifar10dvs", tmp_path), tmp_path)
    assert str(e.value) == f"{tmp_path}: the test split of dataset 'cifar10dvs' has 0 samples; expected at least 1"


# ------------------------------------------------------------------------------ class folders
def test_empty_nmnist_class_folder_is_an_error_naming_it(tmp_path: Path) -> None:
    root = nmnist_folder(tmp_path / "nm", np.random.default_rng(2))
    for f in (root / "Train" / "3").iterdir():
        f.unlink()
    with pytest.raises(EmptyClassError) as e:
        load_dataset(_event_cfg("nmnist", tmp_path), root)
    assert str(e.value) == (f"{root / 'Train' / '3'}: class folder holds no N-MNIST .bin files; expected at least "
                            "one (an empty folder would silently drop its class)")
    assert not (tmp_path / "cache").exists()
    (root / "Train" / "3").rmdir()
    with pytest.raises(FileNotFoundError) as e2:
        load_dataset(_event_cfg("nmnist", tmp_path), root)
    assert str(e2.value) == f"N-MNIST (one folder per digit 0-9): folder {root / 'Train' / '3'} does not exist"


def test_empty_cifar10dvs_and_image_class_folders_share_the_check(tmp_path: Path) -> None:
    for cls in CIFAR10_CLASSES:
        (tmp_path / "dvs" / cls).mkdir(parents=True)
    with pytest.raises(EmptyClassError, match="airplane: class folder holds no CIFAR10-DVS .aedat/.aedat4 files"):
        load_dataset(_event_cfg("cifar10dvs", tmp_path), tmp_path / "dvs")
    write_folder(tmp_path / "img", {"train": 1, "val": 1})
    for f in (tmp_path / "img" / "train" / "dog").iterdir():
        f.unlink()
    with pytest.raises(ImageFolderError, match=r"train/dog: class folder holds no images \(.bmp, .*expected at least"):
        load_image_folder(tmp_path / "img", DataConfig(name="imagefolder"))


# ------------------------------------------------------------------------------ time order
def test_nmnist_decreasing_timestamps_name_file_and_event(tmp_path: Path) -> None:
    path = tmp_path / "00001.bin"
    path.write_bytes(nmnist_bytes(events([(1, 1, 10, 1), (2, 2, 20, 0), (3, 3, 20, 1), (4, 4, 15, 1),
                                          (5, 5, 30, 0), (6, 6, 25, 1)])))
    with pytest.raises(EventFormatError) as e:
        read_nmnist(path)
    assert str(e.value) == (f"{path}: timestamps decrease at event 3 (t=15 µs after t=20 µs at event 2; 2 "
                            "decrease(s) in the file); N-MNIST files store events in time order")

    root = nmnist_folder(tmp_path / "nm", np.random.default_rng(3))
    bad = next((root / "Test" / "4").iterdir())
    bad.write_bytes(path.read_bytes())
    with pytest.raises(EventFormatError, match=f"{bad}: timestamps decrease at event 3"):
        load_dataset(_event_cfg("nmnist", tmp_path), root)
    assert [p.split("-")[1] for p in _files(tmp_path / "cache")] == ["train"]  # the good split only


def test_aedat_out_of_order_events_are_sorted_with_one_warning(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    for cls in CIFAR10_CLASSES:
        (tmp_path / cls).mkdir()
        for i in range(2):  # 2 files per class: 1 train, 1 test
            (tmp_path / cls / f"cifar10_{cls}_{i}.aedat").write_bytes(
                aedat2_bytes(random_events(rng, 8, DVS128, 10**5)))
    ordered = events([(10, 10, 5, 1), (20, 20, 30, 1), (30, 30, 40, 1), (40, 40, 50, 1)])
    shuffled = ordered[[2, 0, 1, 3]]  # t = 40, 5, 30, 50: count split T=2 puts 40 and 5 in frame 0
    for i in range(2):
        (tmp_path / "cat" / f"cifar10_cat_{i}.aedat").write_bytes(aedat2_bytes(shuffled))
    with pytest.warns(UserWarning) as caught:
        s = load_dataset(_event_cfg("cifar10dvs", tmp_path), tmp_path)
    lines = sorted(str(w.message) for w in caught)
    assert lines == [f"1 event file(s) had out-of-order timestamps and were sorted by time (the AEDAT formats "
                     f"do not forbid this); first: {tmp_path / 'cat' / f'cifar10_cat_{i}.aedat'}: timestamps "
                     "decrease at event 1 (t=5 µs after t=40 µs at event 0; 1 decrease(s) in the file)" for i in (0, 1)]
    cat = s.train.x[s.train.y == CIFAR10_CLASSES.index("cat")][0]
    on = cat[:, 1].nonzero().tolist()  # (frame, y, x) of each ON event: time order, not file order
    assert on == [[0, 10, 10], [0, 20, 20], [1, 30, 30], [1, 40, 40]]


# ------------------------------------------------------------------------------ tampered caches
def test_tampered_image_cache_is_reported_and_rebuilt(tmp_path: Path) -> None:
    write_folder(tmp_path, {"train": 2, "val": 1})
    cfg = DataConfig(name="imagefolder")
    first = load_image_folder(tmp_path, cfg)
    cache = tmp_path / CACHE_FOLDER
    x_file = next(cache.glob("imagefolder-train-*-x.npy"))
    forged = np.load(x_file)
    forged[0, 0, 0, 0] ^= 0xFF
    np.save(x_file, forged)  # same shape and dtype, other content
    with pytest.warns(UserWarning) as caught:
        again = load_image_folder(tmp_path, cfg)
    assert [str(w.message) for w in caught] == [
        f"image cache {x_file}: content does not match its SHA-256 (changed after it was written); decoding train "
        f"images of {tmp_path} again"]
    assert torch.equal(again.train.x, first.train.x) and again.info.cache_hits == ("test",)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image_folder(tmp_path, cfg).info.cache_hits == ("train", "test")  # rewritten, valid again

    manifest = x_file.with_name(x_file.name.replace("-x.npy", ".json"))
    manifest.unlink()  # as written by an older spikeforge
    with pytest.warns(UserWarning, match=f"image cache {x_file}: no checksum file {manifest.name} "):
        load_image_folder(tmp_path, cfg)
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "key": "forged"}))
    with pytest.warns(UserWarning, match=f"{manifest.name} was written for other source files or settings"):
        load_image_folder(tmp_path, cfg)


def test_tampered_event_cache_is_reported_and_rebuilt(tmp_path: Path) -> None:
    root = nmnist_folder(tmp_path / "nm", np.random.default_rng(5))
    cfg = _event_cfg("nmnist", tmp_path)
    first = load_dataset(cfg, root)
    entry = next((tmp_path / "cache").glob("nmnist-train-*.safetensors"))
    from safetensors import safe_open
    with safe_open(str(entry), framework="np") as f:
        meta, x, y = f.metadata(), f.get_tensor("x"), f.get_tensor("y")
    x[0] += 1
    save_file({"x": x, "y": y}, str(entry), metadata=meta)  # recorded SHA-256 kept, content changed
    with pytest.warns(UserWarning) as caught:
        again = load_dataset(cfg, root)
    assert [str(w.message) for w in caught] == [
        f"event cache {entry}: content does not match its SHA-256 (changed after it was written); rebuilding the "
        "nmnist train split"]
    assert torch.equal(again.train.x, first.train.x) and again.info.cache_hits == ("test",)
    entry.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match=f"event cache {entry}: unreadable "):
        load_dataset(cfg, root)


# ------------------------------------------------------------------------------ wrong data.name
def test_cifar100_name_on_a_ten_class_image_folder_is_an_error_and_writes_nothing(tmp_path: Path) -> None:
    write_folder(tmp_path, {"train": 1, "test": 1}, classes=CIFAR10_CLASSES)
    with pytest.raises(ImageFolderError) as e:
        load_dataset(DataConfig(name="cifar100"), tmp_path)
    assert str(e.value) == (f"{tmp_path / 'train'}: 10 class folders, but data.name='cifar100' expects 100; use "
                            "data.name='imagefolder' for other image folders")
    assert not (tmp_path / CACHE_FOLDER).exists()


@pytest.mark.parametrize("name, grey, warned", [("mnist", FASHION_GREY, "fashion-mnist"), ("mnist", MNIST_GREY, ""),
                                                ("fashion-mnist", MNIST_GREY, "mnist")])
def test_idx_images_that_look_like_the_other_dataset_warn(tmp_path: Path, name: str, grey: int,
                                                          warned: str) -> None:
    for split, n in (("train", LOOKALIKE_N), ("test", 2)):
        write_idx(tmp_path / MNIST_FILES[f"{split}_x"], np.full((n, 28, 28), grey, np.uint8), gz=False)
        write_idx(tmp_path / MNIST_FILES[f"{split}_y"], np.zeros(n, np.uint8), gz=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_dataset(DataConfig(name=name), tmp_path)
    lines = [str(w.message) for w in caught if issubclass(w.category, DataMismatchWarning)]
    if not warned:
        assert lines == []
        return
    mean, means = grey / 255, {"mnist": 0.131, "fashion-mnist": 0.286}
    assert lines == [f"{tmp_path / MNIST_FILES['train_x']}: data.name={name!r} but the training images' mean pixel "
                     f"value {mean:.3f} is that of {warned} ({means[warned]:.3f}), not of {name} ({means[name]:.3f}); "
                     "check data.name and --data"]


# ------------------------------------------------------------------------------ malformed files
def _idx(tmp_path: Path, name: str, raw: bytes) -> Path:
    path = tmp_path / MNIST_FILES[name]
    path.write_bytes(raw)
    return path


@pytest.mark.parametrize("case, problem", [
    ("magic", "bad IDX magic 01020803 (expected 0000TTNN)"),
    ("type", "IDX element type 0x0d, expected 0x08 (unsigned byte)"),
    ("truncated", "payload is 6271 bytes but the dimensions (8, 28, 28) need 6272 (truncated or corrupt file)"),
    ("labels", "labels span [0, 12], expected [0, 9]"),
    ("count", "labels have shape (6,), expected [8] to match train-images-idx3-ubyte"),
    ("swapped", "images have shape (8,), expected [N, 28, 28]"),
])
def test_malformed_idx_files_give_one_line_naming_the_file(tmp_path: Path, case: str, problem: str) -> None:
    write_mnist(tmp_path, gz=False, n_train=8)
    images = (tmp_path / MNIST_FILES["train_x"]).read_bytes()
    labels = (tmp_path / MNIST_FILES["train_y"]).read_bytes()
    where = tmp_path / MNIST_FILES["train_x"]
    if case == "magic":
        _idx(tmp_path, "train_x", b"\x01\x02" + images[2:])
    elif case == "type":
        _idx(tmp_path, "train_x", images[:2] + b"\x0d" + images[3:])
    elif case == "truncated":
        _idx(tmp_path, "train_x", images[:-1])
    elif case == "labels":
        where = tmp_path / MNIST_FILES["train_y"]
        write_idx(where, np.array([0, 1, 2, 3, 4, 5, 6, 12], np.uint8), gz=False)
    elif case == "count":
        where = tmp_path / MNIST_FILES["train_y"]
        write_idx(where, np.zeros(6, np.uint8), gz=False)
    elif case == "swapped":
        _idx(tmp_path, "train_x", labels)
    before = _files(tmp_path)
    with pytest.raises(DataFormatError) as e:
        load_mnist(tmp_path, DataConfig())
    assert str(e.value) == f"{where}: {problem}"
    assert _files(tmp_path) == before  # nothing written next to the data


def test_cifar_label_out_of_range_names_the_batch(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(folder)
    write_pickle(folder / "data_batch_3", {"labels": [0, 10], "data": np.zeros((2, 3072), np.uint8)})
    with pytest.raises(DataFormatError) as e:
        load_dataset(DataConfig(name="cifar10"), tmp_path)
    assert str(e.value) == f"{folder / 'data_batch_3'}: labels span [0, 10], expected [0, 9]"
