"""The ``checkpoints/`` folder of a run directory: one folder per epoch, committed as one.

Layout (owned, with the file names inside a checkpoint, by :class:`~.run_files.RunDir`)::

    checkpoints/epoch-0007/   model.safetensors, model.json, optim.safetensors, optim.json,
                              manifest.json  (epoch, test accuracy, every file's size and SHA-256)
    checkpoints/latest        {"checkpoint": "epoch-0007", "epoch": 7}: the commit point
    checkpoints/best          {"checkpoint": ..., "test_accuracy": ...}: informational, recomputed

Committing epoch ``e``: the files go into a staging folder ``.epoch-000e.tmp-PID``, the manifest is
written last, the folder is flushed and renamed to ``epoch-000e``, then ``latest`` is replaced
atomically: that rename is the commit. A folder newer than ``latest`` was never committed. Old
checkpoints are renamed to ``.trash-...`` before they are deleted, so a half-deleted folder never
looks like a checkpoint. Every rename is flushed (``fsync`` of the folder).

The best checkpoint is the committed one with the highest test accuracy (the earliest on ties);
pruning always keeps it, so it is also the best over the whole run. ``best`` only names it for
people; readers recompute it from the manifests.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import durable_rename, fsync_dir, read_json, write_event, write_json

MANIFEST_FORMAT = 1
HASH_CHUNK = 1 << 20  # bytes read at a time when hashing a file
EPOCH_DIGITS = 4


class CheckpointError(ValueError):
    """A run directory's checkpoints cannot be used as asked."""


class CheckpointWarning(UserWarning):
    """A damaged or uncommitted checkpoint was passed over."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Manifest:
    """What a checkpoint folder holds: written last, so a folder without one is incomplete."""

    epoch: int
    files: dict[str, tuple[int, str]]  # file name -> (bytes, sha256)
    info: dict[str, Any] = field(default_factory=dict)  # e.g. test_accuracy

    def to_dict(self) -> dict[str, Any]:
        return {"format": MANIFEST_FORMAT, "epoch": self.epoch, "info": self.info,
                "files": {k: {"bytes": b, "sha256": h} for k, (b, h) in sorted(self.files.items())}}

    @classmethod
    def read(cls, path: Path) -> Manifest:
        doc = read_json(path)
        try:
            files = {str(k): (int(v["bytes"]), str(v["sha256"])) for k, v in doc["files"].items()}
            return cls(int(doc["epoch"]), files, dict(doc.get("info") or {}))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"{path}: not a checkpoint manifest ({type(e).__name__}: {e})") from None

    def problem(self, folder: Path, names: Iterable[str] | None = None, deep: bool = True) -> str | None:
        """Why the files ``names`` (default: all) of ``folder`` do not match; ``None`` when they do."""
        for name in self.files if names is None else names:
            if name not in self.files:
                return f"{name} is not part of the checkpoint"
            path, (size, digest) = folder / name, self.files[name]
            if not path.is_file():
                return f"{name} is missing"
            if path.stat().st_size != size:
                return f"{name} has {path.stat().st_size} bytes, the manifest says {size}"
            if deep and sha256_file(path) != digest:
                return f"{name} does not match its SHA-256 in the manifest"
        return None


@dataclass(frozen=True)
class Stored:
    """A committed checkpoint folder and its manifest (``None`` when the manifest is unreadable)."""

    epoch: int
    folder: Path
    manifest: Manifest | None
    error: str = ""

    @property
    def test_accuracy(self) -> float | None:
        acc = self.manifest.info.get("test_accuracy") if self.manifest else None
        return float(acc) if isinstance(acc, int | float) else None


class CheckpointStore:
    """The ``checkpoints/`` folder (see the module docstring)."""

    LATEST = "latest"
    BEST = "best"
    MANIFEST = "manifest.json"
    PREFIX = "epoch-"
    TRASH = ".trash-"
    PATTERN = re.compile(r"epoch-(\d+)")

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def folder_name(cls, epoch: int) -> str:
        return f"{cls.PREFIX}{epoch:0{EPOCH_DIGITS}d}"

    # -- reading ---------------------------------------------------------------------------------
    def exists(self) -> bool:
        """A checkpoint was ever committed here (``latest`` exists)."""
        return (self.path / self.LATEST).is_file()

    def latest_epoch(self) -> int | None:
        pointer = self.path / self.LATEST
        if not pointer.is_file():
            return None
        doc = read_json(pointer)
        if not isinstance(doc, dict) or not isinstance(doc.get("epoch"), int):
            raise CheckpointError(f"{pointer}: expected {{\"checkpoint\": ..., \"epoch\": N}}")
        return int(doc["epoch"])

    def _folders(self) -> dict[int, Path]:
        out = {}
        if self.path.is_dir():
            for entry in self.path.iterdir():
                m = self.PATTERN.fullmatch(entry.name)
                if m and entry.is_dir():
                    out[int(m.group(1))] = entry
        return out

    def committed(self) -> list[Stored]:
        """Committed checkpoints (epoch up to ``latest``), newest first."""
        last = self.latest_epoch()
        if last is None:
            return []
        out = []
        for epoch, folder in sorted(self._folders().items(), reverse=True):
            if epoch > last:
                continue
            try:
                out.append(Stored(epoch, folder, Manifest.read(folder / self.MANIFEST)))
            except (OSError, ValueError) as e:
                out.append(Stored(epoch, folder, None, str(e)))
        return out

    def usable(self, names: Iterable[str], deep: bool, what: str) -> Stored:
        """The newest committed checkpoint whose files ``names`` are intact; a warning names every newer
        one passed over. ``what``: the run, for messages."""
        names = list(names)
        passed: list[str] = []
        for stored in self.committed():
            problem = stored.error or (stored.manifest.problem(stored.folder, names, deep) if stored.manifest else "")
            if not problem:
                if passed:
                    warnings.warn(f"{what}: passed over damaged checkpoint(s) {'; '.join(passed)}; using "
                                  f"{stored.folder.name}", CheckpointWarning, stacklevel=3)
                return stored
            passed.append(f"{stored.folder.name} ({problem})")
        if passed:
            raise CheckpointError(f"{what}: no intact checkpoint: {'; '.join(passed)}")
        raise CheckpointError(f"{what}: {self.path / self.LATEST} names no checkpoint folder")

    def best(self, what: str) -> Stored:
        """The committed checkpoint with the highest test accuracy (earliest on ties)."""
        scored = [s for s in self.committed() if s.test_accuracy is not None and not s.error]
        if not scored:
            raise CheckpointError(f"{what}: no checkpoint records a test accuracy (no best checkpoint)")
        top = max(s.test_accuracy or 0.0 for s in scored)
        return min((s for s in scored if s.test_accuracy == top), key=lambda s: s.epoch)

    # -- writing (the training process, holding the run's lock) -----------------------------------
    def stage(self, epoch: int) -> Path:
        """A fresh staging folder for ``epoch``'s files."""
        self.path.mkdir(parents=True, exist_ok=True)
        staging = self.path / f".{self.folder_name(epoch)}.tmp-{os.getpid()}"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
        return staging

    def commit(self, staging: Path, epoch: int, info: dict[str, Any], keep: int) -> Path:
        """Write the manifest of ``staging``, move it into place, switch ``latest``; then refresh ``best``
        and delete checkpoints beyond the last ``keep`` (never the best one)."""
        files = {p.name: (p.stat().st_size, sha256_file(p)) for p in sorted(staging.iterdir()) if p.is_file()}
        write_json(staging / self.MANIFEST, Manifest(epoch, files, info).to_dict())
        fsync_dir(staging)
        final = self.path / self.folder_name(epoch)
        if final.exists():  # an uncommitted folder of this epoch from an interrupted run
            self._discard(final)
        durable_rename(staging, final)
        write_event(f"moved {final.name}")
        write_json(self.path / self.LATEST, {"checkpoint": final.name, "epoch": epoch})
        self.prune(keep)
        return final

    def _discard(self, folder: Path) -> None:
        trash = self.path / f"{self.TRASH}{folder.name}-{os.getpid()}"
        if trash.exists():
            shutil.rmtree(trash)
        durable_rename(folder, trash)
        write_event(f"trashed {folder.name}")
        shutil.rmtree(trash)

    def prune(self, keep: int) -> None:
        """Keep the last ``keep`` committed checkpoints and the best; refresh the ``best`` pointer."""
        committed = self.committed()
        try:
            best: Stored | None = self.best(str(self.path))
        except CheckpointError:
            best = None
        if best is not None:
            doc = {"checkpoint": best.folder.name, "epoch": best.epoch, "test_accuracy": best.test_accuracy}
            pointer = self.path / self.BEST
            if not pointer.is_file() or read_json(pointer) != doc:
                write_json(pointer, doc)
        for stored in committed[keep:]:
            if best is None or stored.folder != best.folder:
                self._discard(stored.folder)

    def rollback(self, to: Stored) -> None:
        """Make ``to`` the latest checkpoint (newer, damaged ones are then removed by :meth:`clean`)."""
        if self.latest_epoch() != to.epoch:
            write_json(self.path / self.LATEST, {"checkpoint": to.folder.name, "epoch": to.epoch})

    def clean(self) -> list[str]:
        """Remove what a crash can leave behind: staging folders, half-deleted folders, temporary files,
        folders newer than ``latest`` (never committed). Returns the names removed."""
        if not self.path.is_dir():
            return []
        last = self.latest_epoch()
        removed = []
        for entry in sorted(self.path.iterdir()):
            m = self.PATTERN.fullmatch(entry.name)
            uncommitted = m is not None and entry.is_dir() and (last is None or int(m.group(1)) > last)
            if uncommitted or (entry.name.startswith(".") and entry.name != "."):
                if entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                removed.append(entry.name)
        if removed:
            fsync_dir(self.path)
        return removed
