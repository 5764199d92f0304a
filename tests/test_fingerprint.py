"""Data fingerprints: what is recorded for every dataset kind, the JSON round trip, comparisons."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import write_cifar10, write_folder, write_idx, write_mnist
from events_helpers import nmnist_folder

import spikeforge.data.fingerprint as F
from spikeforge.data import DataMismatchError, DataMismatchWarning, load_dataset
from spikeforge.data.base import ArrayDataset, DatasetInfo, DataSplits
from spikeforge.data.config import DataConfig
from spikeforge.data.digest import array_sha256, listing_sha256
from spikeforge.data.fingerprint import DataFingerprint, compare, fingerprint
from spikeforge.data.static import MNIST_FILES

RUN = "the data the run was trained on"


def _size(p: Path) -> int:
    return os.stat(p).st_size


def _json(fp: DataFingerprint) -> DataFingerprint:
    return DataFingerprint.from_dict(json.loads(json.dumps(fp.to_dict())), source="run/data.json")


def test_digests() -> None:
    a = np.arange(6, dtype=np.uint8)
    assert array_sha256(a) == array_sha256(a.copy()) != array_sha256(a.reshape(2, 3))
    assert array_sha256(a) != array_sha256(a.astype(np.int16)) and array_sha256(a[:0]) != array_sha256(a[:1])
    assert listing_sha256([("b", 1), ("a", 2)]) == listing_sha256([("a", 2), ("b", 1)]) != \
        listing_sha256([("a", 2), ("b", 2)])


def test_idx_records_files_counts_classes_shape_and_round_trips(tmp_path: Path) -> None:
    root = tmp_path / "mnist"
    write_mnist(root, gz=True)
    cfg = DataConfig(name="mnist")
    fp = fingerprint(cfg, root)  # loads the data itself
    assert fp.root == str(root) and fp.name == "mnist" and fp.kind == "image"
    assert fp.classes == tuple(str(d) for d in range(10))
    train = fp.splits["train"]
    assert (train.samples, train.sample_shape, train.head_samples) == (7, (1, 28, 28), 7)
    names = [MNIST_FILES["train_x"] + ".gz", MNIST_FILES["train_y"] + ".gz"]
    assert train.files.files == {n: _size(root / n) for n in sorted(names)}
    assert train.files.count == 2 and train.files.bytes == sum(_size(root / n) for n in names)
    assert fp.splits["test"].samples == 5 and fp.meta.count == 0
    assert _json(fp) == fp
    assert fingerprint(cfg, root, load_dataset(cfg, root)) == fp  # with the loaded splits: same result

    copy = tmp_path / "elsewhere"
    shutil.copytree(root, copy)
    assert compare(fp, fingerprint(cfg, copy)).same  # moving the folder is not a difference


def test_changed_test_files_are_warnings_naming_folder_field_and_files(tmp_path: Path) -> None:
    root, other = tmp_path / "a", tmp_path / "b"
    arrays = write_mnist(root, gz=False)
    cfg = DataConfig(name="mnist")
    saved = fingerprint(cfg, root)
    shutil.copytree(root, other)
    write_idx(other / MNIST_FILES["test_x"], arrays["test_x"][:3], gz=False)
    write_idx(other / MNIST_FILES["test_y"], arrays["test_y"][:3], gz=False)
    diff = compare(saved, fingerprint(cfg, other))
    here = f"data folder {other}"
    old_x, old_y = _size(root / MNIST_FILES["test_x"]), _size(root / MNIST_FILES["test_y"])
    new_x, new_y = _size(other / MNIST_FILES["test_x"]), _size(other / MNIST_FILES["test_y"])
    assert diff.errors == []
    assert diff.warnings == [
        f"{here}: test.samples = 3 here, but 5 in {RUN} ({root})",
        f"{here}: test.files differ from {RUN} ({root}): 2 file(s) changed size: "
        f"{MNIST_FILES['test_x']} ({old_x} -> {new_x} bytes), {MNIST_FILES['test_y']} ({old_y} -> {new_y} bytes)"]
    seen: list[str] = []
    assert diff.check(warn=seen.append) is diff and seen == diff.warnings
    with pytest.warns(DataMismatchWarning) as caught:
        diff.check()
    assert [str(w.message) for w in caught] == diff.warnings


def test_same_names_and_sizes_other_content_is_a_warning(tmp_path: Path) -> None:
    """MNIST vs Fashion-MNIST raw IDX files: same names, same sizes; the head digest differs."""
    root, other = tmp_path / "a", tmp_path / "b"
    write_mnist(root, gz=False, seed=0)
    write_mnist(other, gz=False, seed=1)
    cfg = DataConfig(name="mnist")
    saved, now = fingerprint(cfg, root), fingerprint(cfg, other)
    assert saved.splits["train"].files == now.splits["train"].files
    diff = compare(saved, now)
    assert diff.errors == [] and len(diff.warnings) == 2
    h_now, h_was = now.splits["train"].head_sha256[:12], saved.splits["train"].head_sha256[:12]
    assert diff.warnings[0] == (f"data folder {other}: train.head_sha256: the first 7 samples or labels "
                                f"differ from {RUN} ({root}) (SHA-256 {h_now} here, {h_was} there)")


def test_other_classes_or_shapes_are_errors(tmp_path: Path) -> None:
    digits, fashion = tmp_path / "digits", tmp_path / "fashion"
    write_mnist(digits, gz=False)
    write_mnist(fashion, gz=False)
    saved = fingerprint(DataConfig(name="mnist"), digits)
    diff = compare(saved, fingerprint(DataConfig(name="fashion-mnist"), fashion))
    here = f"data folder {fashion}"
    assert diff.errors == [f"{here}: classes = 10 [T-shirt/top, Trouser, Pullover and 7 more] here, but "
                           f"10 [0, 1, 2 and 7 more] in {RUN} ({digits})"]
    assert diff.warnings[0] == f"{here}: data.name = 'fashion-mnist' here, but 'mnist' in {RUN} ({digits})"
    with pytest.raises(DataMismatchError) as e, pytest.warns(DataMismatchWarning):
        diff.check()
    assert str(e.value) == diff.errors[0]

    images = tmp_path / "images"
    write_folder(images, {"train": 1, "val": 1})
    native = fingerprint(DataConfig(name="imagefolder"), images)
    small = fingerprint(DataConfig(name="imagefolder", image_size=4), images)
    diff = compare(native, small)
    assert diff.errors == [
        f"data folder {images}: train.sample_shape = [3, 4, 4] here, but [3, 8, 8] in {RUN} ({images})",
        f"data folder {images}: test.sample_shape = [3, 4, 4] here, but [3, 8, 8] in {RUN} ({images})"]
    with pytest.raises(DataMismatchError, match="; data folder .*test.sample_shape"):
        diff.check()


def test_big_folders_keep_per_folder_totals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(F, "LISTED_FILES_MAX", 2)
    root = tmp_path / "img"
    write_folder(root, {"train": 2, "val": 1})
    cfg = DataConfig(name="imagefolder")
    saved = fingerprint(cfg, root)
    group = saved.splits["train"].files
    assert group.count == 6 and group.files == {} and set(group.folders) == {"train/cat", "train/dog", "train/emu"}
    assert saved.splits["test"].files.files == {} and len(saved.splits["test"].files.folders) == 3  # 3 > 2
    removed = root / "train" / "dog" / "001.png"
    size = _size(removed)
    dog_bytes = group.folders["train/dog"][1]
    removed.unlink()
    diff = compare(saved, fingerprint(cfg, root))
    assert f"data folder {root}: train.files differ from {RUN} ({root}): files per folder differ: " \
           f"train/dog 2 -> 1 files ({dog_bytes} -> {dog_bytes - size} bytes)" in diff.warnings

    renamed = fingerprint(cfg, root)
    os.rename(root / "train" / "cat" / "001.png", root / "train" / "cat" / "009.png")
    diff = compare(renamed, fingerprint(cfg, root))
    sha_was, sha_now = renamed.splits["train"].files.sha256[:12], fingerprint(cfg, root).splits["train"].files.sha256
    b = renamed.splits["train"].files.bytes
    assert diff.warnings == [f"data folder {root}: train.files differ from {RUN} ({root}): 5 -> 5 files, {b} -> {b} "
                             f"bytes, file names or sizes differ (listing SHA-256 {sha_was} -> {sha_now[:12]})"]


def test_event_cifar_and_bundled_datasets(tmp_path: Path) -> None:
    nm = nmnist_folder(tmp_path / "nm", np.random.default_rng(0))
    cfg = DataConfig(name="nmnist", time_steps=3)
    cfg.events.cache_dir = str(tmp_path / "cache")
    fp = fingerprint(cfg, nm)
    assert fp.kind == "frames" and fp.classes == tuple(str(d) for d in range(10))
    assert fp.splits["train"].sample_shape == (3, 2, 34, 34) and fp.splits["test"].samples == 10
    assert sorted(fp.splits["train"].files.files)[:2] == ["Train/0/00001.bin", "Train/1/00002.bin"]
    assert _json(fp) == fp

    write_cifar10(tmp_path / "c" / "cifar-10-batches-py")
    fp = fingerprint(DataConfig(name="cifar10"), tmp_path / "c")
    assert fp.root == str(tmp_path / "c") and list(fp.meta.files) == ["cifar-10-batches-py/batches.meta"]
    assert len(fp.splits["train"].files.files) == 5 and fp.splits["train"].samples == 20
    assert list(fp.splits["test"].files.files) == ["cifar-10-batches-py/test_batch"]

    fp = fingerprint(DataConfig(name="mnist-bundled", train_limit=50), None)
    assert Path(fp.root).name == "assets" and list(fp.splits["train"].files.files) == ["mnist-subset.npz"]
    assert fp.splits["train"].samples == 50 and fp.splits["test"].samples == 2000


def test_loader_without_file_list_walks_the_folder(tmp_path: Path) -> None:
    (tmp_path / "d" / ".hidden").mkdir(parents=True)
    (tmp_path / "d" / "a.bin").write_bytes(b"123")
    (tmp_path / "d" / ".hidden" / "skip.bin").write_bytes(b"1")
    ds = ArrayDataset(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64))
    splits = DataSplits(ds, ds, DatasetInfo("custom", 1, 1, 4))
    fp = fingerprint(DataConfig(name="custom"), tmp_path / "d", splits)
    assert fp.meta.files == {"a.bin": 3} and fp.splits["train"].files.count == 0


@pytest.mark.parametrize("edit, problem", [
    (lambda d: d.pop("root"), "lacks the field 'root'"),
    (lambda d: d["splits"]["train"].update(samples="7"), "field 'splits.train.samples' has the wrong type (str)"),
    (lambda d: d["splits"]["test"].update(sample_shape=[1, "a"]),
     "field 'splits.test.sample_shape' should list integers"),
    (lambda d: d["splits"]["train"]["files"].update(files={"x": "big"}),
     "field 'splits.train.files' holds malformed file sizes (invalid literal for int() with base 10: 'big')"),
    (lambda d: d.update(version=2), "version 2 is newer than this spikeforge reads (1); upgrade spikeforge"),
])
def test_malformed_fingerprint_json_names_the_file_and_field(tmp_path: Path, edit: Callable[[dict], object],
                                                             problem: str) -> None:
    write_mnist(tmp_path, gz=False)
    doc = fingerprint(DataConfig(name="mnist"), tmp_path).to_dict()
    edit(doc)
    with pytest.raises(ValueError) as e:
        DataFingerprint.from_dict(doc, source="run/data.json")
    assert str(e.value) == f"run/data.json: data fingerprint {problem}"
