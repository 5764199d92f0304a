"""AEDAT 2.0 (jAER; CIFAR10-DVS and the original DVS128 recordings): DVS128 address-events.

Layout (jAER "AEDAT 2.0" file format):

* ASCII header lines, each starting with ``#`` and ending with ``\\r\\n``; the first line is
  ``#!AER-DAT2.0``. The binary data starts at the first byte after the last ``#`` line.
* Then 8 bytes per event, big-endian: ``uint32 address``, ``uint32 timestamp`` (µs).

DVS128 address bits, following jAER's ``DVS128`` event extractor (recalled from the jAER source,
class ``ch.unizh.ini.jaer.chip.retina.DVS128``: ``XMASK = 0xfe, XSHIFT = 1``,
``YMASK = 0x7f00, YSHIFT = 8``, polarity in bit 0, ``x = sizeX - 1 - rawX``,
``type = 1 - (addr & 1)``)::

    bit 0        polarity bit: 0 = ON, 1 = OFF  ->  p = 1 - bit  (p = 1 means ON)
    bits 1..7    raw x; x = 127 - raw x  (jAER mirrors x so the scene is not mirrored)
    bits 8..14   y; jAER's origin is the bottom-left corner (row 0 = bottom of the scene)
    bit 15       external / special event flag: such events are dropped

Coordinates are therefore jAER display coordinates with y pointing up; a frame drawn with
``imshow(origin="lower")`` shows the scene upright. If our recollection of the polarity bit is
wrong, the two polarity channels are swapped consistently for every sample, which does not
change what a network can learn.

Timestamps are 32-bit and wrap after about 71.6 minutes; wraps (a drop of more than half the
range) are unwrapped so that ``t`` stays monotone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .common import EventFormatError, make_events, read_file_bytes, split_header

AEDAT2_MAGIC = b"#!AER-DAT2.0"
AEDAT_MAGIC_PREFIX = b"#!AER-DAT"
AEDAT2_EVENT_BYTES = 8
DVS128_SIZE = 128
POLARITY_MASK = 0x1
X_SHIFT, X_MASK = 1, 0x7F
Y_SHIFT, Y_MASK = 8, 0x7F
SPECIAL_EVENT_BIT = 0x8000
TIMESTAMP_WRAP = 1 << 32


def decode_aedat2(data: bytes, path: str | Path = "<bytes>") -> np.ndarray:
    """Decode the bytes of an AEDAT 2.0 DVS128 file into an ``EVENT_DTYPE`` array."""
    if data.startswith(AEDAT_MAGIC_PREFIX) and not data.startswith(AEDAT2_MAGIC):
        version = data[len(AEDAT_MAGIC_PREFIX): data.find(b"\n")].strip().decode("latin-1", "replace")
        raise EventFormatError(path, f"unsupported AEDAT version {version!r} (this reader expects 2.0)")
    _, pos = split_header(path, data, AEDAT2_MAGIC)
    body = len(data) - pos
    if body % AEDAT2_EVENT_BYTES:
        raise EventFormatError(path, f"truncated mid-event: {body} data bytes is not a multiple of "
                                     f"{AEDAT2_EVENT_BYTES}")
    words = np.frombuffer(data, dtype=">u4", offset=pos).reshape(-1, 2)
    addr = words[:, 0]
    keep = (addr & SPECIAL_EVENT_BIT) == 0
    addr = addr[keep]
    t = words[keep, 1].astype(np.int64)
    if len(t) > 1:
        wraps = np.diff(t) < -(TIMESTAMP_WRAP // 2)
        if wraps.any():
            t[1:] += TIMESTAMP_WRAP * np.cumsum(wraps)
    x = (DVS128_SIZE - 1) - ((addr >> X_SHIFT) & X_MASK).astype(np.int64)
    y = (addr >> Y_SHIFT) & Y_MASK
    p = 1 - (addr & POLARITY_MASK)
    return make_events(x, y, t, p)


def read_aedat2(path: str | Path) -> np.ndarray:
    """Read a DVS128 AEDAT 2.0 file (header checked, truncation detected)."""
    return decode_aedat2(read_file_bytes(path), path)
