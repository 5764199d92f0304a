"""On-disk cache of decoded frames: safetensors files written atomically, keyed by content.

The key is the SHA-256 of a canonical JSON document holding the dataset name, the split, a
cache format version, every source file (path, size in bytes, mtime in ns) and every transform
parameter (T, split_by, size, crop, denoise, skip_bad, ...). Changing any of them - or
touching a source file - gives a new key, so a stale cache is never read.

A cache entry ``<dir>/<name>-<split>-<key[:20]>.safetensors`` holds ``x`` (frames) and ``y``
(labels) plus string metadata (the full key, the skipped files, the SHA-256 of ``x`` and ``y``).
An entry is used only if its key matches and its arrays hash to the recorded SHA-256; an entry
that fails (edited, truncated, foreign) is reported with a warning naming the file and rebuilt.
The key stands for the source files by path, size and mtime: their contents are not read.

An entry is written to a temporary file in the same directory and moved into place with
:func:`os.replace`, which is atomic on POSIX and Windows: a concurrent reader sees either no
file or the complete one, and concurrent writers of the same entry simply replace each other's
identical result. No pickle is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from ...atomic import atomic_write_with
from ..digest import array_sha256

CACHE_VERSION = 2  # bump when the decoders or the frame pipeline change their output (2: time-sorted events)
CACHE_ENV = "SPIKEFORGE_CACHE"
KEY_CHARS = 20  # hex digits of the key used in the file name
CACHE_FILE_MODE = 0o644  # mkstemp creates 0600 files; cache entries may be shared between users


@dataclass
class CachedSplit:
    """Frames, labels and the files that were skipped as malformed."""

    x: np.ndarray
    y: np.ndarray
    skipped: list[str] = field(default_factory=list)
    from_cache: bool = False


def default_cache_dir() -> Path:
    """``$SPIKEFORGE_CACHE``, else ``$XDG_CACHE_HOME/spikeforge/events``, else ``~/.cache/...``.

    The data folder itself is not used by default: shared datasets are often read-only.
    """
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "spikeforge" / "events"


def file_fingerprint(paths: Sequence[Path]) -> list[list[Any]]:
    """``[path, size, mtime_ns]`` of every file (resolved paths)."""
    out = []
    for p in paths:
        st = os.stat(p)
        out.append([str(Path(p).resolve()), st.st_size, st.st_mtime_ns])
    return out


def cache_key(name: str, split: str, paths: Sequence[Path], params: dict[str, Any]) -> str:
    """SHA-256 (hex) of dataset name, split, file fingerprints and transform parameters."""
    doc = {"version": CACHE_VERSION, "name": name, "split": split, "files": file_fingerprint(paths),
           "params": params}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def cache_path(cache_dir: Path, name: str, split: str, key: str) -> Path:
    return Path(cache_dir) / f"{name}-{split}-{key[:KEY_CHARS]}.safetensors"


def write_atomic(path: Path, split: CachedSplit, key: str) -> None:
    """Write ``split`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    meta = {"key": key, "skipped": json.dumps(split.skipped), "sha256": array_sha256(split.x, split.y)}
    tensors = {"x": np.ascontiguousarray(split.x), "y": np.ascontiguousarray(split.y)}

    def write(tmp: str) -> None:
        save_file(tensors, tmp, metadata=meta)
        os.chmod(tmp, CACHE_FILE_MODE)

    atomic_write_with(Path(path), write)


def inspect_cached(path: Path, key: str) -> tuple[str, CachedSplit | None]:
    """``("", split)`` for a valid entry at ``path``; ``(what is wrong, None)`` otherwise.

    ``("", None)`` when there is no file (a plain miss). Valid means: readable, carrying ``key``
    (the checksum of the source listing and settings) and holding arrays that hash to the
    recorded SHA-256.
    """
    if not path.is_file():
        return "", None
    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
            if meta.get("key") != key:
                return "written for other source files or settings (key mismatch)", None
            x, y = f.get_tensor("x"), f.get_tensor("y")
            skipped = json.loads(meta.get("skipped", "[]"))
    except (SafetensorError, OSError, ValueError, KeyError) as e:
        return f"unreadable ({type(e).__name__}: {e})", None
    if "sha256" not in meta:
        return "carries no content checksum", None
    if array_sha256(x, y) != meta["sha256"]:
        return "content does not match its SHA-256 (changed after it was written)", None
    return "", CachedSplit(x, y, skipped, from_cache=True)


def read_cached(path: Path, key: str) -> CachedSplit | None:
    """The cached split at ``path`` if it is valid (see :func:`inspect_cached`); else ``None``."""
    return inspect_cached(path, key)[1]


def cached_split(cache_dir: Path | None, name: str, split: str, paths: Sequence[Path], params: dict[str, Any],
                 build: Callable[[], CachedSplit]) -> CachedSplit:
    """Load the split from the cache, or ``build()`` it and store it; ``cache_dir=None`` disables.

    An entry that exists but is not valid is reported with a warning naming the file, then
    rebuilt and overwritten. A cache that cannot be written (read-only folder, full disk) only
    costs a warning.
    """
    if cache_dir is None:
        return build()
    key = cache_key(name, split, paths, params)
    path = cache_path(cache_dir, name, split, key)
    problem, hit = inspect_cached(path, key)
    if hit is not None:
        return hit
    if problem:
        warnings.warn(f"event cache {path}: {problem}; rebuilding the {name} {split} split", stacklevel=3)
    result = build()
    try:
        write_atomic(path, result, key)
    except OSError as e:  # an unwritable cache must not stop training: warn and go on uncached
        warnings.warn(f"could not write the event cache {path}: {e}", stacklevel=2)
    return result
