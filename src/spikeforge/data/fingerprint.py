"""What data a run was trained on: a cheap fingerprint of a dataset folder, and a comparison.

Intended use
------------
``train`` records the fingerprint of the data it loaded in the run directory (JSON)::

    splits = load_dataset(recipe.data, data_root)
    doc = fingerprint(recipe.data, data_root, splits).to_dict()      # -> the run's JSON file

``evaluate``, ``convert --data``, ``verify`` and ``compact`` read it back, take its ``root`` as
the default data folder (instead of the recipe's default) and compare after loading::

    saved = DataFingerprint.from_dict(doc, source=str(json_path))
    root = data_root or saved.root
    splits = load_dataset(recipe.data, root)
    compare(saved, fingerprint(recipe.data, root, splits)).check()

:meth:`FingerprintDiff.check` emits each warning as a :class:`~.validate.DataMismatchWarning`
(files added, removed or resized; other sample counts; another ``data.name``) and raises
:class:`~.validate.DataMismatchError` when the data cannot be what the model was trained on (other
sample shape, other kind of data, other class names). Every message is one line that starts with
``data folder <current root>:`` and names the field (``test.samples``, ``train.files``, ...);
a comparison of equal data yields no message at all, even when the folder moved.

What is recorded
----------------
The absolute data folder, ``data.name``, the kind (``image``/``frames``) and class names, and per
split (``train``, ``test``): the number of samples loaded (after ``data.train_limit`` /
``data.test_limit``), the shape of one sample, the SHA-256 of the first :data:`HEAD_SAMPLES`
samples and labels as loaded (MNIST and Fashion-MNIST IDX files have equal names and sizes: this
tells them apart), and the split's source files as listed by the
loader (``DatasetInfo.files``, before limits): their number, total size and the SHA-256 of the
sorted ``(relative path, size)`` list, plus either every file with its size (up to
:data:`LISTED_FILES_MAX` files) or, for bigger folders (image folders, N-MNIST), the number and
size of files per sub-folder. Files both splits use (CIFAR's ``batches.meta``) are under ``meta``.

Cost: one ``os.stat`` per source file and a hash of at most 256 samples per split; no file is
read again (the data was loaded anyway). A changed file of the same size is seen only if it
changes one of the first samples; the loaders' own checks and caches cover the rest.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .base import ArrayDataset, DataSplits
from .config import DataConfig
from .digest import array_sha256, listing_sha256
from .validate import DataMismatchError, DataMismatchWarning

FINGERPRINT_VERSION = 1
LISTED_FILES_MAX = 256  # groups with more files keep per-folder totals instead of every file
SHOWN_ITEMS = 3  # names quoted per difference before "and N more"
HEAD_SAMPLES = 256  # samples (and labels) hashed per split: content identity at a cost of microseconds
SPLITS = ("train", "test")
META = "meta"


def _shown(items: Sequence[str]) -> str:
    head = ", ".join(items[:SHOWN_ITEMS])
    return head + (f" and {len(items) - SHOWN_ITEMS} more" if len(items) > SHOWN_ITEMS else "")


class _Reader:
    """Typed field access for :meth:`DataFingerprint.from_dict` with one-line errors."""

    def __init__(self, source: str) -> None:
        self.source = source or "data fingerprint"

    def get(self, doc: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
        if not isinstance(doc, dict) or key not in doc:
            raise ValueError(f"{self.source}: data fingerprint lacks the field {where + key!r}")
        value = doc[key]
        if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
            raise ValueError(f"{self.source}: data fingerprint field {where + key!r} has the wrong type "
                             f"({type(value).__name__})")
        return value


@dataclass(frozen=True)
class FileGroup:
    """The files of one split: count, bytes, listing digest and the files or per-folder totals."""

    count: int = 0
    bytes: int = 0
    sha256: str = ""
    files: dict[str, int] = field(default_factory=dict)  # relative path -> size (small groups)
    folders: dict[str, tuple[int, int]] = field(default_factory=dict)  # relative folder -> (files, bytes)

    @classmethod
    def of(cls, paths: Sequence[str], root: str) -> FileGroup:
        """Stat ``paths`` and describe them relative to ``root``."""
        prefix = os.path.join(root, "")
        sizes = {(p[len(prefix):] if p.startswith(prefix) else os.path.relpath(p, root)): os.stat(p).st_size
                 for p in paths}
        folders: dict[str, tuple[int, int]] = {}
        if len(sizes) > LISTED_FILES_MAX:
            for rel, size in sizes.items():
                n, b = folders.get(os.path.dirname(rel), (0, 0))
                folders[os.path.dirname(rel)] = (n + 1, b + size)
        listed = dict(sorted(sizes.items())) if len(sizes) <= LISTED_FILES_MAX else {}
        return cls(len(sizes), sum(sizes.values()), listing_sha256(sizes.items()), listed,
                   dict(sorted(folders.items())))

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "bytes": self.bytes, "sha256": self.sha256, "files": dict(self.files),
                "folders": {k: list(v) for k, v in self.folders.items()}}

    @classmethod
    def from_dict(cls, doc: Any, r: _Reader, where: str) -> FileGroup:
        files = r.get(doc, "files", dict, where)
        folders = r.get(doc, "folders", dict, where)
        count, size = r.get(doc, "count", int, where), r.get(doc, "bytes", int, where)
        try:
            listed = {str(k): int(v) for k, v in files.items()}
            totals = {str(k): (int(v[0]), int(v[1])) for k, v in folders.items()}
        except (TypeError, ValueError, IndexError, KeyError) as e:
            raise ValueError(f"{r.source}: data fingerprint field {where[:-1]!r} holds malformed file sizes "
                             f"({e})") from None
        return cls(count, size, r.get(doc, "sha256", str, where), listed, totals)

    @property
    def listed(self) -> bool:
        """Whether every file is listed (small groups) rather than summed per folder."""
        return len(self.files) == self.count

    def differences(self, other: FileGroup) -> list[str]:
        """How ``other`` (the current files) differs from ``self`` (the recorded ones), as phrases."""
        if self.sha256 == other.sha256:
            return []
        if self.listed and other.listed:
            added = sorted(set(other.files) - set(self.files))
            missing = sorted(set(self.files) - set(other.files))
            resized = sorted(f"{k} ({self.files[k]} -> {other.files[k]} bytes)"
                             for k in set(self.files) & set(other.files) if self.files[k] != other.files[k])
            out = [f"{len(added)} file(s) not in the run's data: {_shown(added)}"] if added else []
            out += [f"{len(missing)} file(s) of the run's data missing: {_shown(missing)}"] if missing else []
            return out + ([f"{len(resized)} file(s) changed size: {_shown(resized)}"] if resized else [])
        changed = []
        for d in sorted(set(self.folders) | set(other.folders)):
            (n0, b0), (n1, b1) = self.folders.get(d, (0, 0)), other.folders.get(d, (0, 0))
            if (n0, b0) != (n1, b1):
                changed.append(f"{d or '.'} {n0} -> {n1} files ({b0} -> {b1} bytes)")
        if changed and self.folders and other.folders:
            return [f"files per folder differ: {_shown(changed)}"]
        return [f"{self.count} -> {other.count} files, {self.bytes} -> {other.bytes} bytes, file names or sizes "
                f"differ (listing SHA-256 {self.sha256[:12]} -> {other.sha256[:12]})"]


@dataclass(frozen=True)
class SplitFingerprint:
    """One split: samples loaded, the shape of one sample, a digest of the first samples, its files."""

    samples: int
    sample_shape: tuple[int, ...]
    head_samples: int  # min(samples, HEAD_SAMPLES)
    head_sha256: str  # array_sha256 of those samples and their labels, as loaded
    files: FileGroup

    @classmethod
    def of(cls, ds: ArrayDataset, files: FileGroup) -> SplitFingerprint:
        n = min(len(ds), HEAD_SAMPLES)
        head = array_sha256(ds.x[:n].cpu().numpy(), ds.y[:n].cpu().numpy())
        return cls(len(ds), tuple(int(v) for v in ds.x.shape[1:]), n, head, files)

    def to_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "sample_shape": list(self.sample_shape), "head_samples": self.head_samples,
                "head_sha256": self.head_sha256, "files": self.files.to_dict()}

    @classmethod
    def from_dict(cls, doc: Any, r: _Reader, where: str) -> SplitFingerprint:
        shape = r.get(doc, "sample_shape", list, where)
        if not all(isinstance(v, int) for v in shape):
            raise ValueError(f"{r.source}: data fingerprint field {where + 'sample_shape'!r} should list "
                             "integers")
        return cls(r.get(doc, "samples", int, where), tuple(shape), r.get(doc, "head_samples", int, where),
                   r.get(doc, "head_sha256", str, where),
                   FileGroup.from_dict(r.get(doc, "files", dict, where), r, where + "files."))


@dataclass(frozen=True)
class DataFingerprint:
    """The data a run was trained on (see the module docstring); JSON via :meth:`to_dict`."""

    root: str  # absolute data folder
    name: str  # data.name
    kind: str  # DatasetInfo.kind: "image" | "frames"
    classes: tuple[str, ...]
    splits: dict[str, SplitFingerprint]  # "train", "test"
    meta: FileGroup = field(default_factory=FileGroup)  # files both splits use
    version: int = FINGERPRINT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "root": self.root, "name": self.name, "kind": self.kind,
                "classes": list(self.classes), "splits": {k: v.to_dict() for k, v in self.splits.items()},
                META: self.meta.to_dict()}

    @classmethod
    def from_dict(cls, doc: Any, source: str = "") -> DataFingerprint:
        """Rebuild from :meth:`to_dict`'s output; ``source`` (the JSON file) is named in errors."""
        r = _Reader(source)
        version = r.get(doc, "version", int, "")
        if version > FINGERPRINT_VERSION:
            raise ValueError(f"{r.source}: data fingerprint version {version} is newer than this spikeforge "
                             f"reads ({FINGERPRINT_VERSION}); upgrade spikeforge")
        root, name, kind = r.get(doc, "root", str, ""), r.get(doc, "name", str, ""), r.get(doc, "kind", str, "")
        classes = tuple(str(c) for c in r.get(doc, "classes", list, ""))
        splits = {str(k): SplitFingerprint.from_dict(v, r, f"splits.{k}.")
                  for k, v in r.get(doc, "splits", dict, "").items()}
        return cls(root, name, kind, classes, splits, FileGroup.from_dict(r.get(doc, META, dict, ""), r, f"{META}."),
                   version)


def _data_folder(cfg: DataConfig, root: str | Path | None, files: dict[str, tuple[str, ...]]) -> str:
    from . import NO_ROOT, resolve_root  # the package imports this module

    if root:
        return os.path.abspath(Path(root).expanduser())
    if cfg.name not in NO_ROOT:
        return os.path.abspath(resolve_root(cfg, None))
    folders = {os.path.dirname(os.path.abspath(p)) for group in files.values() for p in group}
    return os.path.commonpath(sorted(folders)) if folders else ""


def _walk(root: str) -> list[str]:
    """Every file under ``root`` outside hidden folders (for loaders that do not list their files)."""
    out = []
    for here, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        out += [os.path.join(here, n) for n in names if not n.startswith(".")]
    return out


def fingerprint(cfg: DataConfig, root: str | Path | None, splits: DataSplits | None = None) -> DataFingerprint:
    """The :class:`DataFingerprint` of dataset ``cfg.name`` in ``root`` (``None``: the default folder).

    Pass the ``splits`` already loaded from that folder (the cheap way: only the source files are
    stat'ed); without them the dataset is loaded first. ``root`` must be the folder the splits
    were loaded from.
    """
    if splits is None:
        from . import load_dataset

        splits = load_dataset(cfg, root)
    info = splits.info
    folder = _data_folder(cfg, root, info.files)
    listed = dict(info.files) if info.files else {META: tuple(_walk(folder))}
    parts = {split: SplitFingerprint.of(ds, FileGroup.of(listed.get(split, ()), folder))
             for split, ds in (("train", splits.train), ("test", splits.test))}
    return DataFingerprint(folder, cfg.name, info.kind, tuple(info.classes), parts,
                           FileGroup.of(listed.get(META, ()), folder))


@dataclass
class FingerprintDiff:
    """What differs between a recorded and a current fingerprint: one line per difference."""

    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def same(self) -> bool:
        return not self.warnings and not self.errors

    def check(self, warn: Callable[[str], None] | None = None) -> FingerprintDiff:
        """Report every warning (``warn``, default :func:`warnings.warn` with
        :class:`DataMismatchWarning`), then raise :class:`DataMismatchError` (the errors joined by
        ``"; "``) if there are errors. Returns ``self``."""
        for line in self.warnings:
            if warn is None:
                warnings.warn(line, DataMismatchWarning, stacklevel=2)
            else:
                warn(line)
        if self.errors:
            raise DataMismatchError("; ".join(self.errors))
        return self


def compare(saved: DataFingerprint, current: DataFingerprint) -> FingerprintDiff:
    """How ``current`` differs from ``saved`` (the run's); see the module docstring."""
    diff = FingerprintDiff()
    run_data = f"the data the run was trained on ({saved.root})"

    def line(fieldname: str, now: object, was: object) -> str:
        return f"data folder {current.root}: {fieldname} = {now} here, but {was} in {run_data}"

    def files(fieldname: str, what: str) -> str:
        return f"data folder {current.root}: {fieldname} differ from {run_data}: {what}"

    if saved.kind != current.kind:
        diff.errors.append(line("kind", repr(current.kind), repr(saved.kind)))
    if saved.classes != current.classes:
        diff.errors.append(line("classes", f"{len(current.classes)} [{_shown(current.classes)}]",
                                f"{len(saved.classes)} [{_shown(saved.classes)}]"))
    if saved.name != current.name:
        diff.warnings.append(line("data.name", repr(current.name), repr(saved.name)))
    for split in [*SPLITS, *sorted((set(saved.splits) | set(current.splits)) - set(SPLITS))]:
        was, now = saved.splits.get(split), current.splits.get(split)
        if was is None or now is None:
            diff.warnings.append(line(f"{split} split", "absent" if now is None else "present",
                                      "absent" if was is None else "present"))
            continue
        if was.sample_shape != now.sample_shape:
            diff.errors.append(line(f"{split}.sample_shape", list(now.sample_shape), list(was.sample_shape)))
        if was.samples != now.samples:
            diff.warnings.append(line(f"{split}.samples", now.samples, was.samples))
        elif was.head_sha256 != now.head_sha256 and was.sample_shape == now.sample_shape:
            diff.warnings.append(f"data folder {current.root}: {split}.head_sha256: the first {now.head_samples} "
                                 f"samples or labels differ from {run_data} (SHA-256 {now.head_sha256[:12]} here, "
                                 f"{was.head_sha256[:12]} there)")
        diff.warnings += [files(f"{split}.files", d) for d in was.files.differences(now.files)]
    diff.warnings += [files(f"{META}.files", d) for d in saved.meta.differences(current.meta)]
    return diff
