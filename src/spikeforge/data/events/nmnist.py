"""N-MNIST / N-Caltech101 binary event files (Orchard et al. 2015, ATIS sensor).

Layout: no header; 5 bytes (40 bits) per event, most significant first::

    byte 0        x address (8 bits)
    byte 1        y address (8 bits)
    byte 2 bit 7  polarity (1 = ON / brightness increase, 0 = OFF)
    byte 2 bits 6..0, byte 3, byte 4
                  timestamp in microseconds, 23 bits, big-endian

N-MNIST recordings last about 300 ms, far below the 23-bit range (8.4 s), so no timestamp
overflow handling is needed. Events are stored in time order (all 1,100 real files in
``shared/data/nmnist-1k`` are non-decreasing; equal timestamps are common), so a timestamp below
its predecessor's marks a corrupt file: :class:`EventFormatError` naming the file and the first
such event. Sensor: 34 x 34 pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .common import EventFormatError, describe_decrease, first_time_decrease, make_events, read_file_bytes

NMNIST_SIZE = 34  # sensor width = height
NMNIST_EVENT_BYTES = 5
POLARITY_BIT = 0x80
TS_HIGH_MASK = 0x7F
BYTE_BITS = 8


def decode_nmnist(data: bytes, path: str | Path = "<bytes>") -> np.ndarray:
    """Decode the bytes of an N-MNIST ``.bin`` file into an ``EVENT_DTYPE`` array."""
    if len(data) % NMNIST_EVENT_BYTES:
        raise EventFormatError(path, f"truncated mid-event: {len(data)} bytes is not a multiple of "
                                     f"{NMNIST_EVENT_BYTES} (one event = 40 bits)")
    raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, NMNIST_EVENT_BYTES)
    b2 = raw[:, 2].astype(np.int64)
    t = ((b2 & TS_HIGH_MASK) << (2 * BYTE_BITS)) | (raw[:, 3].astype(np.int64) << BYTE_BITS) | raw[:, 4]
    p = (raw[:, 2] & POLARITY_BIT) >> (BYTE_BITS - 1)
    back = first_time_decrease(t)
    if back is not None:
        raise EventFormatError(path, describe_decrease(t, back) + "; N-MNIST files store events in time order")
    return make_events(raw[:, 0], raw[:, 1], t, p)


def read_nmnist(path: str | Path) -> np.ndarray:
    """Read one N-MNIST ``.bin`` file; an empty or truncated file is an ``EventFormatError``."""
    return decode_nmnist(read_file_bytes(path), path)
