"""Shared machinery of the event datasets, and the N-MNIST and CIFAR10-DVS loaders.

A loader turns a dataset folder into a list of :class:`SampleRef` per split (file, label and,
for DVS128 Gesture, a time window), then :func:`build_splits` decodes every file once, turns
each sample into frames with a :class:`FrameSpec`, stores the frames in the smallest exact
integer dtype (``uint8`` unless counts exceed 255) and caches them (:mod:`.cache`).

Degenerate data is refused: a class folder without files, a split left with 0 samples (e.g.
every file skipped by ``data.events.skip_bad``). Events whose timestamps go backwards are sorted
by time (stable) with one warning per split naming the first such file and event: the AEDAT
formats do not forbid out-of-order events (a file may interleave several sources), and both the
``count`` split and DVS128 Gesture's label windows need time order. (N-MNIST files are rejected
earlier, by their decoder.)
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..base import ArrayDataset, DatasetInfo, DataSplits
from ..validate import require_class_files, require_samples, require_split
from .aedat2 import DVS128_SIZE, read_aedat2
from .aedat4 import read_aedat4
from .cache import CachedSplit, cached_split, default_cache_dir
from .common import EventFormatError, describe_decrease, first_time_decrease
from .frames import FrameSpec, compact_dtype
from .nmnist import NMNIST_SIZE, read_nmnist

if TYPE_CHECKING:  # data.config imports events.config: avoid the import cycle
    from ..config import DataConfig

Reader = Callable[[Path], np.ndarray]
SPLITS = ("train", "test")
NMNIST_CLASSES = tuple(str(d) for d in range(10))
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10DVS_SPLIT_SEED = 20_240_101  # seed of the per-class train/test permutation (docs/events.md)
CIFAR10DVS_TEST_DIVISOR = 10  # 1 sample in 10 of each class goes to the test split (9:1)
CIFAR10DVS_SUFFIXES = {".aedat": read_aedat2, ".aedat4": read_aedat4}


@dataclass(frozen=True)
class SampleRef:
    path: Path
    label: int
    window: tuple[int, int] | None = None  # [start, end) in µs inside the file (None = whole file)
    index: int = 0  # the sample's number inside the file (label row), for messages


@dataclass
class EventDatasetInfo(DatasetInfo):
    """:class:`DatasetInfo` plus what happened while loading (skipped files, cache hits)."""

    skipped: int = 0
    skipped_files: tuple[str, ...] = field(default_factory=tuple)
    cache_hits: tuple[str, ...] = field(default_factory=tuple)  # splits read from the cache


def natural_key(path: Path) -> tuple[int | str, ...]:
    """Sort key that orders ``x_2`` before ``x_10``."""
    return tuple(int(s) if s.isdigit() else s for s in re.split(r"(\d+)", path.name))


def _describe(ref: SampleRef) -> str:
    return f"{ref.path} (sample {ref.index})" if ref.window is not None else str(ref.path)


def build_frames(refs: list[SampleRef], reader: Reader, spec: FrameSpec, skip_bad: bool,
                 prior_skips: list[str] | None = None) -> CachedSplit:
    """Decode the files of ``refs`` (each once, in order) and make frames; see module doc.

    With ``skip_bad`` a malformed file (all its samples) or sample is skipped with a warning and
    listed in ``CachedSplit.skipped``; otherwise the :class:`EventFormatError` propagates.
    """
    x = np.zeros((len(refs), *spec.shape), dtype=np.uint8)
    labels = np.zeros(len(refs), dtype=np.int64)
    skipped = list(prior_skips or [])
    sorted_files: list[str] = []
    bad_files: set[Path] = set()
    n = 0
    cur_path: Path | None = None
    events = np.zeros(0)

    def skip(what: str, err: EventFormatError) -> None:
        if not skip_bad:
            raise err
        skipped.append(what)
        warnings.warn(f"skipping malformed sample: {err}", stacklevel=3)

    for ref in refs:
        if ref.path in bad_files:
            continue
        if ref.path != cur_path:
            try:
                events, cur_path = read_events(ref.path, reader, sorted_files), ref.path
            except EventFormatError as e:
                bad_files.add(ref.path)
                skip(str(ref.path), e)
                continue
        try:
            ev, window = select_window(events, ref)
            frames = spec.frames(ev, _describe(ref), window)
        except EventFormatError as e:
            skip(_describe(ref), e)
            continue
        peak = int(frames.max(initial=0))
        if peak > np.iinfo(x.dtype).max:
            x = x.astype(compact_dtype(peak))
        x[n] = frames
        labels[n] = ref.label
        n += 1
    if sorted_files:
        warnings.warn(f"{len(sorted_files)} event file(s) had out-of-order timestamps and were sorted by time "
                      f"(the AEDAT formats do not forbid this); first: {sorted_files[0]}", stacklevel=2)
    return CachedSplit(x[:n], labels[:n], skipped)


def read_events(path: Path, reader: Reader, sorted_files: list[str] | None = None) -> np.ndarray:
    """The events of ``path`` in time order; a file without events is an :class:`EventFormatError`.

    Out-of-order events are sorted (stable) and ``"<path>: <first decrease>"`` is appended to
    ``sorted_files``.
    """
    ev = reader(path)
    if len(ev) == 0:
        raise EventFormatError(path, "file contains no events")
    back = first_time_decrease(ev["t"])
    if back is not None:
        if sorted_files is not None:
            sorted_files.append(f"{path}: {describe_decrease(ev['t'], back)}")
        ev = ev[np.argsort(ev["t"], kind="stable")]
    return ev


def select_window(events: np.ndarray, ref: SampleRef) -> tuple[np.ndarray, tuple[int, int] | None]:
    """The events of ``ref`` (its ``[start, end)`` window if any) and the inclusive time window."""
    if ref.window is None:
        return events, None
    start, end = ref.window
    t = events["t"]
    lo, hi = np.searchsorted(t, start, side="left"), np.searchsorted(t, end, side="left")
    if hi <= lo:
        raise EventFormatError(ref.path, f"label row {ref.index} ({start}..{end} µs) selects no events")
    return events[lo:hi], (start, end - 1)


def resolve_cache_dir(cfg: DataConfig) -> Path | None:
    if not cfg.events.cache:
        return None
    return Path(cfg.events.cache_dir) if cfg.events.cache_dir else default_cache_dir()


def frame_spec(cfg: DataConfig, width: int, height: int) -> FrameSpec:
    e = cfg.events
    return FrameSpec(width, height, cfg.time_steps, e.split_by, e.size, e.crop, e.denoise_us, e.window_us)


def build_splits(name: str, cfg: DataConfig, refs: dict[str, list[SampleRef]], reader: Reader,
                 spec: FrameSpec, classes: tuple[str, ...], key_files: dict[str, list[Path]] | None = None,
                 prior_skips: dict[str, list[str]] | None = None, root: Path | None = None) -> DataSplits:
    """Frames for both splits (cached), as :class:`DataSplits` with an :class:`EventDatasetInfo`.

    ``info.files`` lists every file of each split (before limits); ``root`` (the dataset folder)
    is named when a split ends up with 0 samples.
    """
    cache_dir = resolve_cache_dir(cfg)
    limits = {"train": cfg.train_limit, "test": cfg.test_limit}
    out: dict[str, ArrayDataset] = {}
    skipped: list[str] = []
    hits: list[str] = []
    for split in SPLITS:
        split_refs = refs[split][: limits[split]] if limits[split] > 0 else refs[split]
        files = sorted({r.path for r in split_refs} | set((key_files or {}).get(split, [])))
        params = {**spec.params(), "skip_bad": cfg.events.skip_bad, "samples": len(split_refs),
                  "windows": [r.window for r in split_refs if r.window is not None],
                  "prior_skips": (prior_skips or {}).get(split, [])}
        split_skips = (prior_skips or {}).get(split, [])

        def build(r: list[SampleRef] = split_refs, s: list[str] = split_skips, sp: str = split) -> CachedSplit:
            built = build_frames(r, reader, spec, cfg.events.skip_bad, s)
            require_split(len(built.y), sp, name, root or name, _skip_hint(built.skipped))  # before caching
            return built

        result = cached_split(cache_dir, name, split, files, params, build)
        out[split] = ArrayDataset(torch.from_numpy(result.x), torch.from_numpy(result.y))
        skipped += result.skipped
        if result.from_cache:
            hits.append(split)
    if skipped:
        warnings.warn(f"{name}: skipped {len(skipped)} malformed sample(s)/file(s): {skipped[:5]}",
                      stacklevel=2)
    _, _, h, _ = spec.shape
    sources = {split: tuple(sorted({os.path.abspath(r.path) for r in refs[split]}
                                   | {os.path.abspath(f) for f in (key_files or {}).get(split, [])}))
               for split in SPLITS}
    info = EventDatasetInfo(name=name, num_classes=len(classes), in_channels=spec.shape[1], input_size=h,
                            kind="frames", classes=classes, files=sources, skipped=len(skipped),
                            skipped_files=tuple(skipped), cache_hits=tuple(hits))
    return require_samples(DataSplits(out["train"], out["test"], info), root or name, _skip_hint(skipped))


def _skip_hint(skipped: list[str]) -> str:
    return f"{len(skipped)} malformed file(s) or sample(s) skipped by data.events.skip_bad" if skipped else ""


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{what}: folder {path} does not exist")
    return path


# ----------------------------------------------------------------------------------- N-MNIST
def _nmnist_order(path: Path) -> tuple[float, str, str]:
    """Official sample id (the file stem) first, so a limit takes the original interleaved order."""
    if path.stem.isdigit():
        return (int(path.stem), path.parent.name, "")
    return (float("inf"), path.parent.name, path.name)


def nmnist_refs(root: Path, folder: str) -> list[SampleRef]:
    """Every ``<folder>/<digit>/*.bin``; each of the ten digit folders must exist and hold files."""
    base = require_dir(root / folder, "N-MNIST")
    refs = []
    for d in NMNIST_CLASSES:
        class_dir = require_dir(base / d, "N-MNIST (one folder per digit 0-9)")
        refs += [SampleRef(p, int(d)) for p in require_class_files(class_dir, list(class_dir.glob("*.bin")),
                                                                   "N-MNIST .bin files")]
    return sorted(refs, key=lambda r: _nmnist_order(r.path))


def load_nmnist(root: Path, cfg: DataConfig) -> DataSplits:
    """N-MNIST: ``root/Train/<digit>/NNNNN.bin`` and ``root/Test/<digit>/NNNNN.bin`` (34x34)."""
    root = Path(root)
    refs = {"train": nmnist_refs(root, "Train"), "test": nmnist_refs(root, "Test")}
    spec = frame_spec(cfg, NMNIST_SIZE, NMNIST_SIZE)
    return build_splits("nmnist", cfg, refs, read_nmnist, spec, NMNIST_CLASSES, root=root)


# ------------------------------------------------------------------------------- CIFAR10-DVS
def cifar10dvs_split(files: list[Path], class_index: int) -> tuple[list[Path], list[Path]]:
    """Deterministic 9:1 split of one class's files (natural order, then a seeded permutation)."""
    files = sorted(files, key=natural_key)
    n_test = -(-len(files) // CIFAR10DVS_TEST_DIVISOR) if len(files) > 1 else 0
    perm = np.random.default_rng([CIFAR10DVS_SPLIT_SEED, class_index]).permutation(len(files))
    test = sorted((files[i] for i in perm[:n_test]), key=natural_key)
    train = sorted((files[i] for i in perm[n_test:]), key=natural_key)
    return train, test


def _interleave(per_class: list[list[SampleRef]]) -> list[SampleRef]:
    """Round-robin over classes so that any prefix (data.train_limit) is class-balanced."""
    out = []
    for i in range(max((len(c) for c in per_class), default=0)):
        out += [c[i] for c in per_class if i < len(c)]
    return out


def cifar10dvs_root(root: Path) -> Path:
    for cand in (root, root / "CIFAR10DVS", root / "CIFAR10-DVS", root / "cifar10dvs"):
        if (cand / CIFAR10_CLASSES[0]).is_dir():
            return cand
    raise FileNotFoundError(f"CIFAR10-DVS: no class folders ({', '.join(CIFAR10_CLASSES)}) under {root}")


def load_cifar10dvs(root: Path, cfg: DataConfig) -> DataSplits:
    """CIFAR10-DVS: ``root/<class>/cifar10_<class>_<i>.aedat`` (AEDAT 2.0) or ``.aedat4``; 128x128."""
    base = cifar10dvs_root(Path(root))
    train: list[list[SampleRef]] = []
    test: list[list[SampleRef]] = []
    suffixes = set()
    for ci, cls in enumerate(CIFAR10_CLASSES):
        folder = require_dir(base / cls, "CIFAR10-DVS")
        files = [p for p in folder.iterdir() if p.suffix in CIFAR10DVS_SUFFIXES]
        require_class_files(folder, files, "CIFAR10-DVS .aedat/.aedat4 files")
        suffixes |= {p.suffix for p in files}
        tr, te = cifar10dvs_split(files, ci)
        train.append([SampleRef(p, ci) for p in tr])
        test.append([SampleRef(p, ci) for p in te])

    def reader(path: Path) -> np.ndarray:
        return CIFAR10DVS_SUFFIXES[path.suffix](path)

    refs = {"train": _interleave(train), "test": _interleave(test)}
    spec = frame_spec(cfg, DVS128_SIZE, DVS128_SIZE)
    return build_splits("cifar10dvs", cfg, refs, reader, spec, CIFAR10_CLASSES, root=base)
