"""Writers of tiny static-image datasets in their exact official layouts, for the data tests.

IDX files (MNIST / Fashion-MNIST), CIFAR python batches (pickled exactly as the official
files: protocol 2, bytes keys where the originals have them) and image folders of PNGs.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from spikeforge.data.static import CIFAR10, MNIST_FILES

CLASSES = ("cat", "dog", "emu")
SIDE = 8
UBYTE = 0x08
FLOAT32 = 0x0D


def idx_bytes(arr: np.ndarray, type_code: int = UBYTE) -> bytes:
    """The official IDX layout: 00 00 type ndim, big-endian uint32 dims, C-order payload."""
    head = struct.pack(">BBBB", 0, 0, type_code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return head + arr.astype(np.uint8).tobytes()


def write_idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = idx_bytes(arr)
    if gz:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def write_mnist(folder: Path, gz: bool, n_train: int = 7, n_test: int = 5,
                seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {
        "train_x": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_y": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_x": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_y": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for key, arr in arrays.items():
        write_idx(folder / MNIST_FILES[key], arr, gz)
    return arrays


def write_pickle(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(folder: Path, per_batch: int = 4,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        write_pickle(folder / name, {"batch_label": name.encode(), "labels": labels, "data": data,
                                     "filenames": [f"{name}_{i}.png".encode() for i in range(per_batch)]})
        xs.append(data)
        ys.append(labels)
    write_pickle(folder / "batches.meta", {"label_names": [c.encode() for c in CIFAR10.classes],
                                           "num_cases_per_batch": per_batch, "num_vis": 3072})
    return np.concatenate(xs[:5]), np.concatenate(ys[:5]), xs[5]


def write_folder(root: Path, per_class: dict[str, int], side: int = SIDE, seed: int = 0,
                 classes: tuple[str, ...] = CLASSES) -> dict[str, list[np.ndarray]]:
    """PNG images (lossless) under ``root/<split>/<class>/NNN.png``; returns them per split, in file order."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {}
    for split, n in per_class.items():
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
                Image.fromarray(img).save(root / split / c / f"{i:03d}.png")
                out.setdefault(f"{split}/{c}", []).append(img)
    return out
