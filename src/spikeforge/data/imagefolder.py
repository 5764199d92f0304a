"""ImageNet-style image folders, decoded once and cached as ``.npy``.

Layout
------
``root/train/<class>/<image>`` and ``root/val/<class>/<image>`` (or ``root/test/<class>/...``;
``val`` wins when both exist). Classes are the sorted sub-folder names (hidden folders are
ignored) and must be the same in both splits; label ``i`` is the ``i``-th class. Images are any
file Pillow reads with a usual image suffix (``.jpg .jpeg .png .bmp .gif .webp .tif .tiff .ppm``).

Order and limits
----------------
Inside a class, files are sorted by name; the split then takes one file of each class in turn
(round robin), so every prefix is class-balanced. ``data.train_limit`` / ``data.test_limit`` keep
such a prefix and only those files are decoded.

Decoding
--------
Pillow, converted to RGB, in a thread pool. With ``data.image_size = S`` every image is
centre-cropped to a square and resized to ``S x S`` (bilinear); with ``image_size = 0`` all images
must share one square native size, which is kept. Result: ``uint8 [N, 3, S, S]``.

Cache
-----
Each split is stored as ``<name>-<split>-<key>-x.npy`` (images), ``-y.npy`` (``int64``
labels) and ``.json`` (the full key and the SHA-256 of both arrays, written last) in
``data.cache_dir``, by default ``root/.spikeforge-cache/``; when the data folder is not writable
(no write permission bit, e.g. a shared read-only copy) ``$XDG_CACHE_HOME`` or ``~/.cache``
``/spikeforge/imagefolder`` is used. The key is the SHA-256 of a JSON document with
a format version, the resolved root, the split, every file's relative path, size and mtime, and
the resize option: touching, adding or removing a file invalidates the entry (the source files'
contents are not read: size and mtime stand for them). An entry is used only if its ``.json``
carries the same key and the arrays hash to the recorded SHA-256; otherwise (an edited, truncated
or foreign ``.npy``, a missing ``.json``) a warning names the file and the split is decoded and
written again. Files are written to a temporary file in the cache folder and moved into place
with :func:`os.replace`, so a concurrent reader sees either no file or a complete one. ``.npy``
files are read with ``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..atomic import atomic_write_bytes, atomic_write_with
from .base import ArrayDataset, DatasetInfo, DataSplits
from .config import DataConfig
from .digest import array_sha256
from .validate import DataError, require_class_files, require_samples

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"})
TRAIN_DIR = "train"
EVAL_DIRS = ("val", "test")  # the first that exists is the evaluation split
CACHE_FOLDER = ".spikeforge-cache"
CACHE_FORMAT = 1  # bump when decoding changes its output
KEY_CHARS = 20
MAX_DECODE_WORKERS = 16
DECODE_CHUNK = 256  # images per thread-pool task
PIXEL_LEVELS = 256  # uint8 values
RGB_CHANNELS = 3
PIXEL_MAX = 255.0
WRITE_BITS = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH


class ImageFolderError(DataError):
    """An image folder that does not match the expected layout or contents."""


@dataclass
class ImageFolderInfo(DatasetInfo):
    """:class:`DatasetInfo` plus where the decoded cache lives and which splits were read from it."""

    cache_dir: str = ""
    cache_hits: tuple[str, ...] = field(default_factory=tuple)


@dataclass
class SplitFiles:
    paths: list[str]  # plain strings: tens of thousands of pathlib objects are slow
    labels: np.ndarray  # int64 [N]


def find_split_dirs(root: str | Path) -> tuple[Path, Path] | None:
    """``(train_dir, eval_dir)`` when ``root`` has ``train/`` and ``val/`` or ``test/``, else ``None``."""
    root = Path(root)
    train = root / TRAIN_DIR
    if not train.is_dir():
        return None
    for name in EVAL_DIRS:
        if (root / name).is_dir():
            return train, root / name
    return None


def list_classes(split_dir: Path) -> tuple[str, ...]:
    return tuple(sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith(".")))


def scan_split(split_dir: Path, classes: tuple[str, ...]) -> SplitFiles:
    """All images of a split in class-round-robin order (see the module docstring)."""
    per_class = []
    for c in classes:
        files = sorted(e.path for e in os.scandir(split_dir / c)
                       if e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES)
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        require_class_files(split_dir / c, files, f"images ({suffixes})", ImageFolderError)
        per_class.append(files)
    paths: list[str] = []
    labels: list[int] = []
    for i in range(max(len(f) for f in per_class)):
        for label, files in enumerate(per_class):
            if i < len(files):
                paths.append(files[i])
                labels.append(label)
    return SplitFiles(paths, np.asarray(labels, dtype=np.int64))


def _decode_one(path: str, size: int) -> np.ndarray:
    try:
        with Image.open(path) as im:
            rgb = im.convert("RGB")
        if size:
            w, h = rgb.size
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            rgb = rgb.crop((left, top, left + side, top + side))
            if side != size:
                rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(rgb)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise ImageFolderError(f"{path}: cannot decode image ({e})") from e


def decode_images(paths: list[str], size: int, workers: int = 0, native: int = 0) -> np.ndarray:
    """Decode ``paths`` into ``uint8 [N, 3, S, S]`` with a thread pool (``workers=0``: CPU count).

    ``size > 0`` resizes (centre crop + resize); otherwise every image must be square and of
    the native size ``native`` (or, when 0, that of the first image).
    """
    if not paths:
        return np.zeros((0, RGB_CHANNELS, max(size, native), max(size, native)), dtype=np.uint8)
    side = size or native
    if not side:
        first = _decode_one(paths[0], 0)
        if first.shape[0] != first.shape[1]:
            raise ImageFolderError(f"{paths[0]}: image is {first.shape[1]}x{first.shape[0]} (not square); "
                                   "set data.image_size to centre-crop and resize")
        side = first.shape[0]
    out = np.empty((len(paths), RGB_CHANNELS, side, side), dtype=np.uint8)

    def work(lo: int) -> None:
        for i in range(lo, min(lo + DECODE_CHUNK, len(paths))):
            arr = _decode_one(paths[i], size)
            if arr.shape != (side, side, RGB_CHANNELS):
                raise ImageFolderError(f"{paths[i]}: image is {arr.shape[1]}x{arr.shape[0]}, expected "
                                       f"{side}x{side} like the others; set data.image_size to resize them")
            out[i] = arr.transpose(2, 0, 1)

    n_workers = workers or min(MAX_DECODE_WORKERS, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        for fut in [pool.submit(work, lo) for lo in range(0, len(paths), DECODE_CHUNK)]:
            fut.result()
    return out


# ----------------------------------------------------------------------------------- cache
def _can_write(path: Path) -> bool:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        mode = probe.stat().st_mode
    except OSError:
        return False
    if not mode & WRITE_BITS or not os.access(probe, os.W_OK):
        return False  # read-only by permission bits, even for root
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return True


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "spikeforge" / "imagefolder"


def resolve_cache_dir(root: Path, cache_dir: str) -> Path | None:
    """The folder the cache goes to (``None``: no writable folder, caching is skipped)."""
    if cache_dir:
        path = Path(cache_dir).expanduser()
        if not _can_write(path):
            raise PermissionError(f"data.cache_dir: {path} is not a writable folder")
        return path
    for cand in (root / CACHE_FOLDER, user_cache_dir()):
        if _can_write(cand):
            return cand
    warnings.warn(f"image folder {root}: neither {root / CACHE_FOLDER} nor {user_cache_dir()} is writable; "
                  "decoded images are not cached", stacklevel=2)
    return None


def cache_key(root: Path, split: str, files: SplitFiles, image_size: int) -> str:
    prefix = str(root) + os.sep
    listing = []
    for p in files.paths:
        st = os.stat(p)
        listing.append([p[len(prefix):] if p.startswith(prefix) else p, st.st_size, st.st_mtime_ns])
    doc = {"format": CACHE_FORMAT, "root": str(root.resolve()), "split": split, "image_size": image_size,
           "files": listing, "labels": files.labels.tolist()}
    return hashlib.sha256(json.dumps(doc, separators=(",", ":")).encode()).hexdigest()


def save_npy_atomic(path: Path, arr: np.ndarray) -> None:
    """``np.save`` to a temporary file next to ``path``, then :func:`os.replace` it into place."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would append ".npy" to a name
            np.save(f, np.ascontiguousarray(arr), allow_pickle=False)

    atomic_write_with(path, write)


@dataclass(frozen=True)
class CacheEntry:
    """The three files of one cached split."""

    x: Path
    y: Path
    manifest: Path  # JSON {"format", "key", "sha256"}, written last

    @classmethod
    def at(cls, cache_dir: Path, name: str, split: str, key: str) -> CacheEntry:
        stem = f"{name}-{split}-{key[:KEY_CHARS]}"
        return cls(cache_dir / f"{stem}-x.npy", cache_dir / f"{stem}-y.npy", cache_dir / f"{stem}.json")

    def write(self, x: np.ndarray, y: np.ndarray, key: str) -> None:
        save_npy_atomic(self.y, y)
        save_npy_atomic(self.x, x)
        doc = {"format": CACHE_FORMAT, "key": key, "sha256": array_sha256(x, y)}
        atomic_write_bytes(self.manifest, json.dumps(doc).encode())

    def problem(self, key: str, n: int) -> tuple[str, tuple[np.ndarray, np.ndarray] | None]:
        """``("", (x, y))`` for a valid entry, else ``(what is wrong, None)``."""
        try:
            doc = json.loads(self.manifest.read_text())
        except FileNotFoundError:
            return f"no checksum file {self.manifest.name} (written by an older spikeforge?)", None
        except (OSError, ValueError) as e:
            return f"unreadable checksum file {self.manifest.name} ({e})", None
        if not isinstance(doc, dict) or doc.get("key") != key or doc.get("format") != CACHE_FORMAT:
            return f"{self.manifest.name} was written for other source files or settings", None
        try:
            x, y = np.load(self.x, allow_pickle=False), np.load(self.y, allow_pickle=False)
        except (OSError, ValueError) as e:
            return f"unreadable ({e})", None
        if not (x.dtype == np.uint8 and x.ndim == 4 and x.shape[0] == n and y.shape == (n,)
                and y.dtype == np.int64):
            return f"holds {x.dtype} {list(x.shape)} / {y.dtype} {list(y.shape)}, expected {n} images", None
        if array_sha256(x, y) != doc.get("sha256"):
            return "content does not match its SHA-256 (changed after it was written)", None
        return "", (x, y)


def load_split(root: Path, name: str, split: str, files: SplitFiles, image_size: int, cache_dir: Path | None,
               native: int = 0) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(x, y, from_cache)`` for one split, decoding and caching on a miss.

    A cache entry that exists but fails its checks (see the module docstring) is reported with
    a warning naming the file, then rebuilt.
    """
    entry = None
    if cache_dir is not None:
        key = cache_key(root, split, files, image_size)
        entry = CacheEntry.at(cache_dir, name, split, key)
        if entry.x.is_file() or entry.manifest.is_file():
            problem, hit = entry.problem(key, len(files.paths))
            if hit is not None and (not native or hit[0].shape[-1] == native):
                return hit[0], hit[1], True
            if problem:
                warnings.warn(f"image cache {entry.x}: {problem}; decoding {split} images of {root} again",
                              stacklevel=3)
    x = decode_images(files.paths, image_size, native=native)
    if entry is not None:
        entry.write(x, files.labels, key)
    return x, files.labels, False


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population std of ``uint8 [N, C, H, W]`` in [0, 1] units.

    Exact and cheap: a 256-bin histogram per channel, then the moments of the histogram.
    """
    if x.dtype != torch.uint8:
        raise TypeError(f"channel_stats: expected uint8 images, got {x.dtype}")
    hist = torch.stack([torch.bincount(x[:, ch].flatten(), minlength=PIXEL_LEVELS)
                        for ch in range(x.shape[1])]).double()  # [C, 256] counts
    levels = torch.arange(PIXEL_LEVELS, dtype=torch.float64) / PIXEL_MAX
    count = hist.sum(dim=1).clamp_min(1)
    mean = (hist * levels).sum(dim=1) / count
    var = (hist * (levels - mean[:, None]).square()).sum(dim=1) / count
    return tuple(float(v) for v in mean), tuple(float(v) for v in var.sqrt())


def _prefix(files: SplitFiles, limit: int, field_name: str) -> SplitFiles:
    if limit < 0:
        raise ValueError(f"data.{field_name} must be >= 0, got {limit}")
    if limit == 0 or limit >= len(files.paths):
        return files
    return SplitFiles(files.paths[:limit], files.labels[:limit])


def load_image_folder(root: str | Path, cfg: DataConfig, *, name: str = "imagefolder",
                      mean: tuple[float, ...] | None = None,
                      std: tuple[float, ...] | None = None) -> DataSplits:
    """Read ``root/train`` + ``root/val|test`` (see the module docstring).

    ``mean``/``std`` (or ``cfg.mean``/``cfg.std``) are used when given; otherwise they are
    computed from the (limited) training split.
    """
    root = Path(root)
    dirs = find_split_dirs(root)
    if dirs is None:
        raise FileNotFoundError(f"image folder {root}: expected {root / TRAIN_DIR}/<class>/ and "
                                f"{root / EVAL_DIRS[0]}/<class>/ (or {EVAL_DIRS[1]}/)")
    train_dir, eval_dir = dirs
    classes = list_classes(train_dir)
    if not classes:
        raise ImageFolderError(f"{train_dir}: no class folders")
    eval_classes = list_classes(eval_dir)
    if eval_classes != classes:
        only_train = sorted(set(classes) - set(eval_classes))
        only_eval = sorted(set(eval_classes) - set(classes))
        raise ImageFolderError(f"image folder {root}: class folders differ between {train_dir.name}/ and "
                               f"{eval_dir.name}/ (only in {train_dir.name}: {only_train}; only in "
                               f"{eval_dir.name}: {only_eval})")
    if cfg.image_size < 0:
        raise ValueError(f"data.image_size must be >= 0, got {cfg.image_size}")
    cache_dir = resolve_cache_dir(root, cfg.cache_dir)
    all_train, all_test = scan_split(train_dir, classes), scan_split(eval_dir, classes)
    train_files = _prefix(all_train, cfg.train_limit, "train_limit")
    test_files = _prefix(all_test, cfg.test_limit, "test_limit")
    x_tr, y_tr, hit_tr = load_split(root, name, "train", train_files, cfg.image_size, cache_dir)
    x_te, y_te, hit_te = load_split(root, name, "test", test_files, cfg.image_size, cache_dir,
                                    native=0 if cfg.image_size else x_tr.shape[-1])
    train = ArrayDataset(torch.from_numpy(x_tr), torch.from_numpy(y_tr))
    test = ArrayDataset(torch.from_numpy(x_te), torch.from_numpy(y_te))
    given_mean = mean or tuple(cfg.mean)
    given_std = std or tuple(cfg.std)
    if given_mean and given_std:
        m, s = tuple(given_mean), tuple(given_std)
    else:
        m, s = channel_stats(train.x)
    info = ImageFolderInfo(name, len(classes), RGB_CHANNELS, int(x_tr.shape[-1]), "image", m, s, classes,
                           cache_dir=str(cache_dir or ""),
                           cache_hits=tuple(sp for sp, hit in (("train", hit_tr), ("test", hit_te)) if hit))
    info.files = {"train": _absolute(all_train.paths), "test": _absolute(all_test.paths)}
    return require_samples(DataSplits(train, test, info), root)


def _absolute(paths: list[str]) -> tuple[str, ...]:
    return tuple(os.path.abspath(p) for p in paths)
