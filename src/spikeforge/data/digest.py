"""SHA-256 digests the data package shares: of arrays (cache contents) and of file listings.

:func:`array_sha256` hashes each array's dtype, shape and C-order bytes, so two arrays with
the same bytes but another shape or dtype get different digests. :func:`listing_sha256`
hashes a canonical JSON list of ``[relative path, size]`` pairs (sorted), the cheap identity
of a folder of files that :mod:`.fingerprint` records (no file contents are read).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

import numpy as np


def array_sha256(*arrays: np.ndarray) -> str:
    """Hex SHA-256 of the arrays' dtypes, shapes and bytes (in order)."""
    h = hashlib.sha256()
    for a in arrays:
        c = np.ascontiguousarray(a)
        h.update(f"{c.dtype.str}{list(c.shape)};".encode())
        h.update(c.reshape(-1).view(np.uint8).data if c.size else b"")
    return h.hexdigest()


def listing_sha256(entries: Iterable[tuple[str, int]]) -> str:
    """Hex SHA-256 of the sorted ``(relative path, size)`` pairs as compact JSON."""
    doc = sorted([str(p), int(s)] for p, s in entries)
    return hashlib.sha256(json.dumps(doc, separators=(",", ":")).encode()).hexdigest()
