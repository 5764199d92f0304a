"""Writers of tiny event files in the exact official layouts, for the event-dataset tests.

They encode bit fields independently of the decoders under test (straight from the format
descriptions in docs/events.md), so a decode → compare round trip checks real behaviour.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from spikeforge.data.events import EVENT_DTYPE

AEDAT3_HEADER = (b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n"
                 b"#Start-Time: 2017-01-01 10:00:00 (TZ+0000)\r\n#!END-HEADER\r\n")
AEDAT2_HEADER = (b"#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n"
                 b"# Data format is int32 address, int32 timestamp (8 bytes total)\r\n"
                 b"# Timestamps tick is 1 us\r\n")
DVS128 = 128


def events(rows: list[tuple[int, int, int, int]]) -> np.ndarray:
    """``[(x, y, t, p), ...]`` → an EVENT_DTYPE array."""
    return np.array(rows, dtype=EVENT_DTYPE)


def random_events(rng: np.random.Generator, n: int, size: int, t_max: int) -> np.ndarray:
    ev = np.zeros(n, dtype=EVENT_DTYPE)
    ev["x"], ev["y"] = rng.integers(0, size, n), rng.integers(0, size, n)
    ev["t"] = np.sort(rng.integers(0, t_max, n))
    ev["p"] = rng.integers(0, 2, n)
    return ev


def nmnist_bytes(ev: np.ndarray) -> bytes:
    out = bytearray()
    for x, y, t, p in ev.tolist():
        out += bytes([x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF])
    return bytes(out)


def aedat3_packet(etype: int, payload: bytes, number: int, size: int = 8, overflow: int = 0) -> bytes:
    # eventType, eventSource, eventSize, eventTSOffset, eventTSOverflow, eventCapacity, eventNumber,
    # eventValid
    return struct.pack("<hhiiiiii", etype, 1, size, 4, overflow, number, number, number) + payload


def aedat3_polarity(ev: np.ndarray, overflow: int = 0, valid: list[bool] | None = None) -> bytes:
    payload = b""
    for i, (x, y, t, p) in enumerate(ev.tolist()):
        ok = 1 if valid is None or valid[i] else 0
        payload += struct.pack("<Ii", (x << 17) | (y << 2) | (p << 1) | ok, t - (overflow << 31))
    return aedat3_packet(1, payload, len(ev), overflow=overflow)


def aedat3_file(path: Path, packets: list[bytes]) -> Path:
    path.write_bytes(AEDAT3_HEADER + b"".join(packets))
    return path


def aedat2_bytes(ev: np.ndarray, special: int = 0) -> bytes:
    """jAER DVS128: addr = y << 8 | (127 - x) << 1 | (1 - p); ``special`` extra events with bit 15 set."""
    out = AEDAT2_HEADER
    for x, y, t, p in ev.tolist():
        out += struct.pack(">II", (y << 8) | ((DVS128 - 1 - x) << 1) | (1 - p), t)
    for i in range(special):
        out += struct.pack(">II", 0x8000 | i, 0)
    return out


def gesture_folder(root: Path, recordings: dict[str, tuple[np.ndarray, list[tuple[int, int, int]]]],
                   train: list[str], test: list[str]) -> Path:
    """A DvsGesture folder: ``{name: (events, [(class 1..11, start, end), ...])}``."""
    base = root / "DvsGesture"
    base.mkdir(parents=True)
    for name, (ev, rows) in recordings.items():
        aedat3_file(base / f"{name}.aedat", [aedat3_polarity(ev)])
        text = "class,startTime_usec,endTime_usec\n" + "".join(f"{c},{s},{e}\n" for c, s, e in rows)
        (base / f"{name}_labels.csv").write_text(text)
    (base / "trials_to_train.txt").write_text("".join(f"{n}.aedat\n" for n in train))
    (base / "trials_to_test.txt").write_text("".join(f"{n}.aedat\n" for n in test))
    return base


# --- AEDAT 4: hand-laid flatbuffers (root uoffset, identifier, vtable, table, vector of structs)
def flatbuffer_events(ev: np.ndarray) -> bytes:
    vtable = struct.pack("<HHH", 6, 8, 4) + b"\0\0"  # 3 uint16 + pad: at offset 8
    table_pos, vec_pos = 16, 28  # table: soffset (16 - 8) + uoffset (at 20) to the vector; 4 pad bytes
    head = struct.pack("<I", table_pos) + b"EVTS" + vtable + struct.pack("<iI", table_pos - 8, vec_pos - 20)
    head += b"\0" * 4  # so the 16-byte structs start 8-aligned at 32
    body = struct.pack("<I", len(ev))
    for x, y, t, p in ev.tolist():
        body += struct.pack("<qhh?3x", t, x, y, bool(p))
    return head + body


def flatbuffer_other(identifier: bytes = b"FRME") -> bytes:
    vtable = struct.pack("<HH", 4, 4)
    return struct.pack("<I", 12) + identifier + vtable + struct.pack("<i", 4)


def aedat4_file(path: Path, packets: list[bytes], compression: int = 0, size_prefixed: bool = True) -> Path:
    # IOHeader { compression: int32 (field 0); dataTablePosition: int64 (field 1) = -1 }
    vt = struct.pack("<HHHH", 8, 16, 4, 8)  # at offset 8; the table follows at 16
    header = struct.pack("<I", 16) + b"IOHE" + vt + struct.pack("<iiq", 16 - 8, compression, -1)
    out = b"#!AER-DAT4.0\r\n" + struct.pack("<i", len(header)) + header
    for i, fb in enumerate(packets):
        if size_prefixed:
            fb = struct.pack("<I", len(fb)) + fb
        out += struct.pack("<ii", i % 2, len(fb)) + fb
    path.write_bytes(out)
    return path


def nmnist_folder(root: Path, rng: np.random.Generator, per_digit: int = 1, events_per_file: int = 30) -> Path:
    """The official N-MNIST layout ``Train|Test/<digit>/NNNNN.bin`` with every digit folder filled."""
    idx = 0
    for split in ("Train", "Test"):
        for _ in range(per_digit):
            for d in range(10):
                idx += 1
                folder = root / split / str(d)
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"{idx:05d}.bin").write_bytes(nmnist_bytes(random_events(rng, events_per_file, 34,
                                                                                   300_000)))
    return root
