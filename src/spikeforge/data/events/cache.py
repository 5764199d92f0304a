"""On-disk cache of decoded frames: safetensors files written atomically, keyed by content.

The key is the SHA-256 of a canonical JSON document holding the dataset name, the split, a
cache format version, every source file (path, size in bytes, mtime in ns) and every transform
parameter (T, split_by, size, crop, denoise, skip_bad, ...). Changing any of them - or
touching a source file - gives a new key, so a stale cache is never read.

A cache entry ``<dir>/<name>-<split>-<key[:20]>.safetensors`` holds ``x`` (frames) and ``y``
(labels) plus string metadata (the full key, the skipped files). It is written to a temporary
file in the same directory and moved into place with :func:`os.replace`, which is atomic on
POSIX and Windows: a concurrent reader sees either no file or the complete one, and concurrent
writers of the same entry simply replace each other's identical result. No pickle is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

CACHE_VERSION = 1  # bump when the decoders or the frame pipeline change their output
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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        meta = {"key": key, "skipped": json.dumps(split.skipped)}
        tensors = {"x": np.ascontiguousarray(split.x), "y": np.ascontiguousarray(split.y)}
        save_file(tensors, tmp, metadata=meta)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, CACHE_FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_cached(path: Path, key: str) -> CachedSplit | None:
    """The cached split at ``path`` if it exists, is readable and carries ``key``; else ``None``."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
            if meta.get("key") != key:
                return None
            x, y = f.get_tensor("x"), f.get_tensor("y")
            skipped = json.loads(meta.get("skipped", "[]"))
    except (SafetensorError, OSError, ValueError, KeyError):
        return None  # unreadable (e.g. written by another version): rebuild and overwrite
    return CachedSplit(x, y, skipped, from_cache=True)


def cached_split(cache_dir: Path | None, name: str, split: str, paths: Sequence[Path], params: dict[str, Any],
                 build: Callable[[], CachedSplit]) -> CachedSplit:
    """Load the split from the cache, or ``build()`` it and store it; ``cache_dir=None`` disables.

    A cache that cannot be written (read-only folder, full disk) only costs a warning.
    """
    if cache_dir is None:
        return build()
    key = cache_key(name, split, paths, params)
    path = cache_path(cache_dir, name, split, key)
    hit = read_cached(path, key)
    if hit is not None:
        return hit
    result = build()
    try:
        write_atomic(path, result, key)
    except OSError as e:  # an unwritable cache must not stop training: warn and go on uncached
        warnings.warn(f"could not write the event cache {path}: {e}", stacklevel=2)
    return result
