"""AEDAT 3.1 (libcaer / cAER / DV, used by DVS128 Gesture): polarity events.

Layout (iniVation's "AEDAT 3.1" file-format specification, as written by libcaer/cAER):

* ASCII header lines, each starting with ``#`` and ending with ``\\r\\n``. The first line is
  ``#!AER-DAT3.1``; the last is ``#!END-HEADER``.
* Then a sequence of packets. Each packet has a 28-byte little-endian header::

      int16 eventType        1 = polarity event (others: special, frame, IMU6, ... - skipped)
      int16 eventSource      id of the source device
      int32 eventSize        bytes per event (8 for polarity events)
      int32 eventTSOffset    byte offset of the timestamp inside an event (4)
      int32 eventTSOverflow  high part of the timestamps of this packet
      int32 eventCapacity
      int32 eventNumber      events in the packet (eventNumber * eventSize bytes follow)
      int32 eventValid

* Polarity event (8 bytes, little-endian): ``uint32 data``, ``int32 timestamp``; ``data`` bit 0
  = valid mark, bit 1 = polarity (1 = ON), bits 2..16 = y, bits 17..31 = x. The full timestamp
  in microseconds is ``(eventTSOverflow << 31) | timestamp``.

Only valid polarity events are returned. Headers are parsed with a loop over packets (a
recording has thousands of packets but millions of events); events are decoded vectorised.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from .common import EventFormatError, make_events, read_file_bytes, split_header

AEDAT3_MAGIC = b"#!AER-DAT3.1"
AEDAT3_END = b"#!END-HEADER"
PACKET_HEADER = struct.Struct("<hhiiiiii")  # 28 bytes
POLARITY_EVENT = 1
POLARITY_EVENT_SIZE = 8
POLARITY_TS_OFFSET = 4
OVERFLOW_SHIFT = 31
VALID_MASK = 0x1
POLARITY_SHIFT, POLARITY_MASK = 1, 0x1
Y_SHIFT, Y_MASK = 2, 0x7FFF
X_SHIFT, X_MASK = 17, 0x7FFF
DVS128_SIZE = 128


def _packets(path: str | Path, data: bytes, pos: int) -> list[tuple[int, int, int]]:
    """(payload offset, event count, timestamp overflow) of every polarity packet."""
    out = []
    end = len(data)
    while pos < end:
        if pos + PACKET_HEADER.size > end:
            raise EventFormatError(path, f"truncated packet header at byte {pos} "
                                         f"({end - pos} of {PACKET_HEADER.size} bytes)")
        etype, _src, size, ts_off, overflow, _cap, number, _valid = PACKET_HEADER.unpack_from(data, pos)
        if size <= 0 or number < 0:
            raise EventFormatError(path, f"corrupt packet header at byte {pos}: eventSize={size}, "
                                         f"eventNumber={number}")
        start = pos + PACKET_HEADER.size
        stop = start + size * number
        if stop > end:
            raise EventFormatError(path, f"truncated mid-packet at byte {pos}: header announces {number} "
                                         f"events of {size} bytes but only {end - start} bytes follow")
        if etype == POLARITY_EVENT:
            if size != POLARITY_EVENT_SIZE or ts_off != POLARITY_TS_OFFSET:
                raise EventFormatError(path, f"polarity packet at byte {pos} has eventSize={size}, "
                                             f"eventTSOffset={ts_off} (expected 8 and 4)")
            if number:
                out.append((start, number, overflow))
        pos = stop
    return out


def decode_aedat3(data: bytes, path: str | Path = "<bytes>") -> np.ndarray:
    """Decode the bytes of an AEDAT 3.1 file into an ``EVENT_DTYPE`` array (valid polarity events)."""
    _, pos = split_header(path, data, AEDAT3_MAGIC, AEDAT3_END)
    packets = _packets(path, data, pos)
    if not packets:
        return make_events(*(np.zeros(0, np.int64) for _ in range(4)))
    payload = b"".join(data[s: s + n * POLARITY_EVENT_SIZE] for s, n, _ in packets)
    words = np.frombuffer(payload, dtype="<u4").reshape(-1, 2)
    counts = np.array([n for _, n, _ in packets], dtype=np.int64)
    overflow = np.repeat(np.array([o for _, _, o in packets], dtype=np.int64), counts)
    addr = words[:, 0]
    valid = (addr & VALID_MASK).astype(bool)
    addr = addr[valid]
    t = (overflow[valid] << OVERFLOW_SHIFT) | words[valid, 1].astype(np.int64)
    x = (addr >> X_SHIFT) & X_MASK
    y = (addr >> Y_SHIFT) & Y_MASK
    p = (addr >> POLARITY_SHIFT) & POLARITY_MASK
    return make_events(x, y, t, p)


def read_aedat3(path: str | Path) -> np.ndarray:
    """Read the polarity events of an AEDAT 3.1 file (header checked, truncation detected)."""
    return decode_aedat3(read_file_bytes(path), path)
