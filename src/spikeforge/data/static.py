"""Static image datasets read from their official on-disk formats.

Formats
-------
IDX (MNIST, Fashion-MNIST)
    A big-endian header ``00 00 TT NN`` (``TT`` the element type, ``0x08`` = unsigned byte;
    ``NN`` the number of dimensions), then ``NN`` big-endian ``uint32`` sizes, then the
    elements in C order. The four files ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` may be gzip-compressed (``.gz``;
    detected by the gzip magic bytes, not the name) and are looked for in ``root``,
    ``root/raw`` and ``root/MNIST/raw`` (``root/FashionMNIST/raw`` for Fashion-MNIST), the
    layouts of the official site and of torchvision.
CIFAR-10 / CIFAR-100 "python version"
    ``cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` and
    ``cifar-100-python/{train, test, meta}``: pickled dicts holding ``data`` (``uint8
    [N, 3072]``, each row the red, green and blue 32x32 planes) and ``labels`` (CIFAR-10) or
    ``fine_labels`` (CIFAR-100, the 100-class task used here). They are read with
    :class:`RestrictedUnpickler`, which only rebuilds numpy arrays, lists, dicts, strings and
    numbers. A folder of ``train/<class>/*.jpg`` + ``test/<class>/*.jpg`` given as a CIFAR root is
    read as an image folder (:mod:`.imagefolder`) with the standard constants.
Bundled MNIST subset
    ``spikeforge/assets/mnist-subset.npz`` (see ``scripts/make_bundled_mnist.py``): ``x_train``
    ``uint8 [10000, 28, 28]``, ``y_train`` ``uint8 [10000]``, ``x_test`` ``[2000, 28, 28]``,
    ``y_test``: the first samples of the official files, so tests and demos run without data.

Every loader returns :class:`DataSplits` with ``x`` ``uint8 [N, C, H, W]`` and ``y`` ``int64``;
``cfg.train_limit`` / ``cfg.test_limit`` keep the first N samples.
"""

from __future__ import annotations

import gzip
import importlib.resources
import os
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .base import ArrayDataset, DatasetInfo, DataSplits
from .config import DataConfig
from .imagefolder import PIXEL_MAX, ImageFolderError, find_split_dirs, list_classes, load_image_folder
from .validate import DataFormatError, DataMismatchWarning, check_labels, require_samples

GZIP_MAGIC = b"\x1f\x8b"
IDX_UBYTE = 0x08
IDX_HEADER_BYTES = 4
IDX_DIM_BYTES = 4
IDX_MAX_DIMS = 4
MNIST_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
CIFAR_PIXELS = 3 * 32 * 32
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
BUNDLED_MNIST = ("assets", "mnist-subset.npz")
LOOKALIKE_MIN_SAMPLES = 100  # fewer training images give too noisy a mean for warn_if_lookalike
LOOKALIKE_TOLERANCE = 0.05  # |mean pixel - dataset mean| (in [0, 1]) tolerated before looking elsewhere


@dataclass(frozen=True)
class StaticSpec:
    """Constants of one dataset: geometry, classes and per-channel mean/std in [0, 1] units."""

    name: str
    channels: int
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]

    def info(self, classes: tuple[str, ...] | None = None) -> DatasetInfo:
        cls = classes or self.classes
        return DatasetInfo(self.name, len(cls), self.channels, self.size, "image", self.mean, self.std, cls)


DIGITS = tuple(str(d) for d in range(10))
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MNIST = StaticSpec("mnist", 1, 28, (0.1307,), (0.3081,), DIGITS)
FASHION_MNIST = StaticSpec("fashion-mnist", 1, 28, (0.2860,), (0.3530,), FASHION_CLASSES)
IDX_SPECS = (MNIST, FASHION_MNIST)
CIFAR10 = StaticSpec("cifar10", 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), CIFAR10_CLASSES)
CIFAR100 = StaticSpec("cifar100", 3, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
                      tuple(f"class_{i}" for i in range(100)))  # real names come from the meta file


# ------------------------------------------------------------------------------------- IDX
def _read_bytes(path: Path) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    raw = path.read_bytes()
    if raw[:len(GZIP_MAGIC)] == GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DataFormatError(f"{path}: corrupt gzip data ({e})") from e
    return raw


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzip-compressed or raw) of unsigned bytes into a ``uint8`` array."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < IDX_HEADER_BYTES:
        raise DataFormatError(f"{path}: {len(data)} bytes, too short for an IDX header")
    if data[0] != 0 or data[1] != 0:
        raise DataFormatError(f"{path}: bad IDX magic {data[:IDX_HEADER_BYTES].hex()} (expected 0000TTNN)")
    dtype_code, ndim = data[2], data[3]
    if dtype_code != IDX_UBYTE:
        raise DataFormatError(f"{path}: IDX element type 0x{dtype_code:02x}, expected 0x08 (unsigned byte)")
    if not 1 <= ndim <= IDX_MAX_DIMS:
        raise DataFormatError(f"{path}: IDX header says {ndim} dimensions, expected 1..{IDX_MAX_DIMS}")
    start = IDX_HEADER_BYTES + IDX_DIM_BYTES * ndim
    if len(data) < start:
        raise DataFormatError(f"{path}: truncated IDX header ({len(data)} bytes, need {start})")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=IDX_HEADER_BYTES))
    expected = int(np.prod(dims))
    if len(data) - start != expected:
        raise DataFormatError(f"{path}: payload is {len(data) - start} bytes but the dimensions {dims} "
                              f"need {expected} (truncated or corrupt file)")
    return np.frombuffer(data, dtype=np.uint8, offset=start).reshape(dims).copy()


def _find_idx(root: Path, stem: str, subdirs: tuple[str, ...], what: str) -> Path:
    tried = []
    for d in subdirs:
        for suffix in ("", ".gz"):
            p = root / d / f"{stem}{suffix}"
            if p.is_file():
                return p
        tried.append(str(root / d / f"{stem}[.gz]"))
    raise FileNotFoundError(f"{what}: {stem}[.gz] not found; looked for " + ", ".join(tried))


def _idx_split(root: Path, spec: StaticSpec, subdirs: tuple[str, ...], split: str
               ) -> tuple[ArrayDataset, tuple[str, ...]]:
    """One split's images and labels, and the two files they came from."""
    xp = _find_idx(root, MNIST_FILES[f"{split}_x"], subdirs, spec.name)
    yp = _find_idx(root, MNIST_FILES[f"{split}_y"], subdirs, spec.name)
    x, y = read_idx(xp), read_idx(yp)
    if x.ndim != 3 or x.shape[1:] != (spec.size, spec.size):
        raise DataFormatError(f"{xp}: images have shape {x.shape}, expected [N, {spec.size}, {spec.size}]")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise DataFormatError(f"{yp}: labels have shape {y.shape}, expected [{x.shape[0]}] "
                              f"to match {xp.name}")
    check_labels(y, len(spec.classes), yp)
    ds = ArrayDataset(torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y.astype(np.int64)))
    return ds, (os.path.abspath(xp), os.path.abspath(yp))


def warn_if_lookalike(x: torch.Tensor, spec: StaticSpec, where: Path | str) -> None:
    """Warn when training images look like another IDX dataset than ``data.name`` says.

    MNIST and Fashion-MNIST share file names and shapes, so a wrong ``data.name`` (or
    ``--data`` folder) is otherwise silent. The mean pixel value tells them apart (0.131 vs
    0.286): the warning comes when the mean is within :data:`LOOKALIKE_TOLERANCE` of the other
    dataset's and not of this one's, so other IDX data read under these names (e.g. uniform random
    test images, mean 0.5) is left alone. A warning, not an error: the check is statistical.
    """
    if len(x) < LOOKALIKE_MIN_SAMPLES:
        return
    mean = float(x.double().mean()) / PIXEL_MAX
    best = min(IDX_SPECS, key=lambda s: abs(mean - s.mean[0]))
    if best is not spec and abs(mean - best.mean[0]) <= LOOKALIKE_TOLERANCE < abs(mean - spec.mean[0]):
        warnings.warn(f"{where}: data.name={spec.name!r} but the training images' mean pixel value {mean:.3f} is "
                      f"that of {best.name} ({best.mean[0]:.3f}), not of {spec.name} ({spec.mean[0]:.3f}); "
                      "check data.name and --data", DataMismatchWarning, stacklevel=3)


def _limited(splits: DataSplits, cfg: DataConfig, where: Path | str) -> DataSplits:
    """Apply ``train_limit`` / ``test_limit`` (first N; copies so the full arrays can be freed).

    Both splits must keep at least one sample (:func:`~.validate.require_samples`).
    """
    def cut(ds: ArrayDataset, n: int) -> ArrayDataset:
        if n < 0:
            raise ValueError(f"data.train_limit / data.test_limit must be >= 0, got {n}")
        return ds if n == 0 or n >= len(ds) else ArrayDataset(ds.x[:n].clone(), ds.y[:n].clone())
    limited = DataSplits(cut(splits.train, cfg.train_limit), cut(splits.test, cfg.test_limit), splits.info)
    return require_samples(limited, where)


def _load_idx_dataset(root: str | Path, cfg: DataConfig, spec: StaticSpec, folder: str) -> DataSplits:
    root = Path(root)
    subdirs = (".", "raw", f"{folder}/raw")
    train, train_files = _idx_split(root, spec, subdirs, "train")
    test, test_files = _idx_split(root, spec, subdirs, "test")
    info = spec.info()
    info.files = {"train": train_files, "test": test_files}
    warn_if_lookalike(train.x, spec, train_files[0])
    return _limited(DataSplits(train, test, info), cfg, root)


def load_mnist(root: str | Path, cfg: DataConfig) -> DataSplits:
    """MNIST from the four IDX files (see the module docstring for where they are looked for)."""
    return _load_idx_dataset(root, cfg, MNIST, "MNIST")


def load_fashion_mnist(root: str | Path, cfg: DataConfig) -> DataSplits:
    """Fashion-MNIST: same IDX files and names as MNIST, under ``root`` or ``root/FashionMNIST/raw``."""
    return _load_idx_dataset(root, cfg, FASHION_MNIST, "FashionMNIST")


# ----------------------------------------------------------------------------------- CIFAR
class UnsafePickleError(pickle.UnpicklingError):
    """A pickle that asks for an object outside :attr:`RestrictedUnpickler.ALLOWED`."""


def _bytes_of(*args: Any) -> bytes:
    """``bytes()`` as pickled for ``b""``; ``bytes(n)`` (an allocation of n bytes) is refused."""
    if args and not isinstance(args[0], (bytes, bytearray, list)):
        raise pickle.UnpicklingError(f"bytes({type(args[0]).__name__}) is not allowed in a dataset file")
    return bytes(*args)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for the official CIFAR files: rebuilds numpy arrays and plain containers only.

    Any other global (``os.system``, ``builtins.eval``, arbitrary classes, ...) raises
    :class:`UnsafePickleError` (a :class:`pickle.UnpicklingError`) naming the file, so a
    malicious file cannot run code.
    """

    _reconstruct = np.empty(0).__reduce__()[0]  # numpy's array rebuild function, whatever its module
    ALLOWED: dict[tuple[str, str], Any] = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # files pickled by numpy < 2
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,  # numpy >= 2
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): __import__("codecs").encode,  # bytes pickled by Python 3, protocol < 3
        ("__builtin__", "bytes"): _bytes_of,  # b"" (e.g. an empty array's data), protocol < 3
        ("builtins", "bytes"): _bytes_of,
    }

    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file, encoding="bytes")  # Python 2 ``str`` -> bytes, as the official files need
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self.path}: refusing to unpickle {module}.{name}; only numpy arrays, lists, dicts, "
                "strings and numbers are allowed in a dataset file") from None


def _str_keys(obj: dict[Any, Any]) -> dict[str, Any]:
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def read_cifar_pickle(path: str | Path) -> dict[str, Any]:
    """Load one official CIFAR pickle with :class:`RestrictedUnpickler`; keys become ``str``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    with open(path, "rb") as f:
        try:
            obj = RestrictedUnpickler(f, path).load()
        except UnsafePickleError:
            raise
        except Exception as e:  # truncated/corrupt streams raise many types
            raise DataFormatError(f"{path}: not a readable CIFAR pickle ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict):
        raise DataFormatError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return _str_keys(obj)


def _cifar_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    d = read_cifar_pickle(path)
    for key in ("data", label_key):
        if key not in d:
            raise DataFormatError(f"{path}: missing field {key!r} (has {sorted(d)})")
    data = d["data"]
    is_array = isinstance(data, np.ndarray)
    if not is_array or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != CIFAR_PIXELS:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataFormatError(f"{path}: field 'data' is {desc}, expected uint8 [N, {CIFAR_PIXELS}]")
    labels = np.asarray(d[label_key], dtype=np.int64)
    if labels.shape != (data.shape[0],):
        raise DataFormatError(f"{path}: field {label_key!r} has shape {labels.shape}, "
                              f"expected [{data.shape[0]}]")
    check_labels(labels, num_classes, path)
    return data.reshape(-1, 3, 32, 32), labels


def _label_names(path: Path, key: str, expected: int) -> tuple[str, ...] | None:
    if not path.is_file():
        return None
    names = read_cifar_pickle(path).get(key)
    if not isinstance(names, list) or len(names) != expected:
        raise DataFormatError(f"{path}: field {key!r} should list {expected} class names")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


def _cifar_dir(root: Path, folder: str, marker: str) -> Path | None:
    for cand in (root, root / folder):
        if (cand / marker).is_file():
            return cand
    return None


def _stack(parts: list[tuple[np.ndarray, np.ndarray]]) -> ArrayDataset:
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return ArrayDataset(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y))


def _cifar_files(base: Path, train: tuple[str, ...], test: str, meta: str) -> dict[str, tuple[str, ...]]:
    files = {"train": tuple(os.path.abspath(base / b) for b in train), "test": (os.path.abspath(base / test),)}
    if (base / meta).is_file():
        files["meta"] = (os.path.abspath(base / meta),)
    return files


def _image_folder_fallback(root: Path, cfg: DataConfig, spec: StaticSpec, looked: str) -> DataSplits:
    dirs = find_split_dirs(root)
    if dirs is None:
        raise FileNotFoundError(f"{spec.name}: no {looked} under {root} and no train/ + test/ (or val/) "
                                "image folders either; pass --data pointing at the dataset folder")
    found = len(list_classes(dirs[0]))
    if found != len(spec.classes):
        raise ImageFolderError(f"{dirs[0]}: {found} class folders, but data.name={spec.name!r} expects "
                               f"{len(spec.classes)}; use data.name='imagefolder' for other image folders")
    return load_image_folder(root, cfg, name=spec.name, mean=spec.mean, std=spec.std)


def load_cifar10(root: str | Path, cfg: DataConfig) -> DataSplits:
    """CIFAR-10: ``root`` is ``cifar-10-batches-py`` or its parent (or an image folder)."""
    root = Path(root)
    base = _cifar_dir(root, "cifar-10-batches-py", "test_batch")
    if base is None:
        return _image_folder_fallback(root, cfg, CIFAR10, "cifar-10-batches-py/test_batch")
    n = len(CIFAR10.classes)
    train = _stack([_cifar_batch(base / b, "labels", n) for b in CIFAR10_TRAIN_BATCHES])
    test = _stack([_cifar_batch(base / "test_batch", "labels", n)])
    classes = _label_names(base / "batches.meta", "label_names", n)
    info = CIFAR10.info(classes)
    info.files = _cifar_files(base, CIFAR10_TRAIN_BATCHES, "test_batch", "batches.meta")
    return _limited(DataSplits(train, test, info), cfg, base)


def load_cifar100(root: str | Path, cfg: DataConfig) -> DataSplits:
    """CIFAR-100 (fine labels): ``root`` is ``cifar-100-python`` or its parent (or an image folder)."""
    root = Path(root)
    base = _cifar_dir(root, "cifar-100-python", "test")
    if base is None or not (base / "train").is_file():
        return _image_folder_fallback(root, cfg, CIFAR100, "cifar-100-python/{train,test}")
    n = len(CIFAR100.classes)
    train = _stack([_cifar_batch(base / "train", "fine_labels", n)])
    test = _stack([_cifar_batch(base / "test", "fine_labels", n)])
    classes = _label_names(base / "meta", "fine_label_names", n)
    info = CIFAR100.info(classes)
    info.files = _cifar_files(base, ("train",), "test", "meta")
    return _limited(DataSplits(train, test, info), cfg, base)


# --------------------------------------------------------------------------- bundled MNIST
BUNDLED_KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_mnist_bundled(root: str | Path | None, cfg: DataConfig) -> DataSplits:
    """The MNIST subset shipped in the package (10,000 train / 2,000 test); ``root`` is ignored."""
    res = importlib.resources.files("spikeforge").joinpath(*BUNDLED_MNIST)
    with importlib.resources.as_file(res) as path:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: bundled MNIST subset missing "
                                    "(run scripts/make_bundled_mnist.py)")
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in BUNDLED_KEYS if k not in z.files]
            if missing:
                raise DataFormatError(f"{path}: missing arrays {missing} (expected {list(BUNDLED_KEYS)})")
            arrays = {k: z[k] for k in BUNDLED_KEYS}
    parts = []
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        side = (MNIST.size, MNIST.size)
        if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != side or y.shape != x.shape[:1]:
            raise DataFormatError(f"{path}: x_{split}/y_{split} have shapes {x.shape}/{y.shape}, "
                                  f"expected uint8 [N, {MNIST.size}, {MNIST.size}] and [N]")
        check_labels(y, len(MNIST.classes), path)
        parts.append(ArrayDataset(torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y.astype(np.int64))))
    info = MNIST.info()
    info.name = "mnist-bundled"
    info.files = {"train": (os.path.abspath(path),), "test": (os.path.abspath(path),)}
    return _limited(DataSplits(parts[0], parts[1], info), cfg, path)
