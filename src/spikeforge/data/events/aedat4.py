"""AEDAT 4.0 (DV / dv-processing; the figshare repackaging of CIFAR10-DVS): polarity events.

A minimal, dependency-free reader of the parts of the format that event datasets need:

* ``#!AER-DAT4.0\\r\\n`` version line;
* ``int32`` (little-endian) length, then the ``IOHeader`` flatbuffer
  (``table IOHeader { compression: CompressionType (int32: NONE=0, LZ4=1, LZ4_HIGH=2, ZSTD=3,
  ZSTD_HIGH=4); dataTablePosition: int64 = -1; infoNode: string; }``);
* packets until ``dataTablePosition`` (or the end of the file): ``int32 streamId``,
  ``int32 size``, then ``size`` bytes of a flatbuffer, compressed as the header says;
* a packet whose flatbuffer has the file identifier ``EVTS`` is an ``EventPacket``
  (``table EventPacket { elements: [Event]; }`` with
  ``struct Event { timestamp: int64; x: int16; y: int16; on: bool; }`` - 16 bytes with padding).
  Other packets (frames, IMU, triggers) are skipped.

Flatbuffers are read directly (root ``uoffset``, ``soffset`` to the vtable, field offsets);
both plain and size-prefixed packet buffers are accepted. LZ4 / Zstandard packets need the
optional packages ``lz4`` / ``zstandard``; without them the reader raises a clear error
suggesting to install them or to convert the file with dv-processing (e.g. to AEDAT 4 without
compression, or to a CSV/NumPy export).
"""

from __future__ import annotations

import importlib
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .common import EventFormatError, make_events, read_file_bytes

AEDAT4_MAGIC = b"#!AER-DAT4.0"
AEDAT_MAGIC_PREFIX = b"#!AER-DAT"
EVENT_IDENTIFIER = b"EVTS"
INT32 = struct.Struct("<i")
UINT32 = struct.Struct("<I")
INT64 = struct.Struct("<q")
UINT16 = struct.Struct("<H")
PACKET_HEADER = struct.Struct("<ii")  # streamId, size
IDENT_SLICE = slice(4, 8)  # file identifier position in a flatbuffer
VTABLE_FIELDS_START = 4  # vtable: uint16 vtable size, uint16 table size, then field offsets
FIELD_BYTES = 2
FB_EVENT_DTYPE = np.dtype({"names": ["t", "x", "y", "on"], "formats": ["<i8", "<i2", "<i2", "u1"],
                           "offsets": [0, 8, 10, 12], "itemsize": 16})
COMPRESSION = {0: None, 1: "lz4", 2: "lz4", 3: "zstd", 4: "zstd"}
IOHEADER_COMPRESSION, IOHEADER_TABLE_POS = 0, 1  # field indices
EVENTS_ELEMENTS = 0


class _Table:
    """A flatbuffer table: look fields up through its vtable (bounds-checked)."""

    def __init__(self, buf: bytes, pos: int, path: str | Path) -> None:
        self.buf, self.pos, self.path = buf, pos, path
        vt = pos - self._read(INT32, pos)
        self.vt, self.vt_size = vt, self._read(UINT16, vt)

    def _read(self, fmt: struct.Struct, pos: int) -> int:
        if pos < 0 or pos + fmt.size > len(self.buf):
            raise EventFormatError(self.path, f"corrupt flatbuffer: offset {pos} outside a "
                                              f"{len(self.buf)}-byte buffer")
        return fmt.unpack_from(self.buf, pos)[0]

    def field_pos(self, index: int) -> int | None:
        slot = VTABLE_FIELDS_START + FIELD_BYTES * index
        if slot >= self.vt_size:
            return None
        off = self._read(UINT16, self.vt + slot)
        return self.pos + off if off else None

    def scalar(self, index: int, fmt: struct.Struct, default: int) -> int:
        pos = self.field_pos(index)
        return default if pos is None else self._read(fmt, pos)

    def vector(self, index: int) -> tuple[int, int]:
        """(start of the elements, element count) of a vector field; (0, 0) if absent."""
        pos = self.field_pos(index)
        if pos is None:
            return 0, 0
        vec = pos + self._read(UINT32, pos)
        return vec + UINT32.size, self._read(UINT32, vec)


def _root(buf: bytes, path: str | Path, identifier: bytes | None = None) -> tuple[bytes, _Table | None]:
    """The buffer (without a size prefix) and its root table (``None`` if ``identifier`` is absent).

    A buffer counts as size-prefixed when its first ``uint32`` equals the rest's length *and*
    ``identifier`` sits where a prefixed buffer keeps it (bytes 8..12).
    """
    prefixed_ident = slice(IDENT_SLICE.start + UINT32.size, IDENT_SLICE.stop + UINT32.size)
    if (identifier is not None and buf[prefixed_ident] == identifier
            and UINT32.unpack_from(buf)[0] == len(buf) - UINT32.size):
        buf = buf[UINT32.size:]
    if len(buf) < UINT32.size:
        raise EventFormatError(path, "corrupt flatbuffer: shorter than its root offset")
    if identifier is not None and buf[IDENT_SLICE] != identifier:
        return buf, None
    return buf, _Table(buf, UINT32.unpack_from(buf)[0], path)


def _decompressor(kind: str | None, path: str | Path) -> Callable[[bytes], bytes]:
    if kind is None:
        return lambda b: b
    module = {"lz4": "lz4.frame", "zstd": "zstandard"}[kind]
    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise ModuleNotFoundError(
            f"{path}: AEDAT 4 packets are {kind.upper()}-compressed; install the optional package "
            f"{module.split('.')[0]!r} (pip install {module.split('.')[0]}) or convert the file with "
            f"dv-processing to an uncompressed AEDAT 4 file") from None
    if kind == "lz4":
        return mod.decompress
    return lambda b: mod.ZstdDecompressor().decompressobj().decompress(b)


def decode_aedat4(data: bytes, path: str | Path = "<bytes>") -> np.ndarray:
    """Decode the polarity events of an AEDAT 4.0 file (see module doc)."""
    if not data.startswith(AEDAT4_MAGIC):
        got = data[: len(AEDAT4_MAGIC)].decode("latin-1", "replace")
        raise EventFormatError(path, f"bad header: expected {AEDAT4_MAGIC.decode()!r}, got {got!r}")
    pos = data.find(b"\n") + 1
    if pos == 0 or pos + INT32.size > len(data):
        raise EventFormatError(path, "truncated before the IOHeader")
    hsize = INT32.unpack_from(data, pos)[0]
    pos += INT32.size
    if hsize < UINT32.size or pos + hsize > len(data):
        raise EventFormatError(path, f"truncated or corrupt IOHeader (announced {hsize} bytes)")
    header = _Table(data[pos: pos + hsize], UINT32.unpack_from(data, pos)[0], path)
    comp = header.scalar(IOHEADER_COMPRESSION, INT32, 0)
    if comp not in COMPRESSION:
        raise EventFormatError(path, f"unknown compression type {comp} in the IOHeader")
    decompress = _decompressor(COMPRESSION[comp], path)
    table_pos = header.scalar(IOHEADER_TABLE_POS, INT64, -1)
    end = table_pos if 0 <= table_pos <= len(data) else len(data)
    pos += hsize
    chunks = []
    while pos < end:
        if pos + PACKET_HEADER.size > end:
            raise EventFormatError(path, f"truncated packet header at byte {pos}")
        _stream, size = PACKET_HEADER.unpack_from(data, pos)
        pos += PACKET_HEADER.size
        if size < 0 or pos + size > end:
            raise EventFormatError(path, f"truncated mid-packet at byte {pos}: {size} bytes announced, "
                                         f"{end - pos} left")
        try:
            buf = decompress(data[pos: pos + size])
        except Exception as e:  # noqa: BLE001 - any codec failure means a corrupt packet
            raise EventFormatError(path, f"cannot decompress the packet at byte {pos}: {e}") from None
        pos += size
        if len(buf) < IDENT_SLICE.stop:
            raise EventFormatError(path, f"packet ending at byte {pos} is too short for a flatbuffer")
        buf, table = _root(buf, path, EVENT_IDENTIFIER)
        if table is None:
            continue  # not an event packet
        start, count = table.vector(EVENTS_ELEMENTS)
        if start + count * FB_EVENT_DTYPE.itemsize > len(buf):
            raise EventFormatError(path, f"event packet ending at byte {pos} announces {count} events "
                                         "beyond its buffer")
        chunks.append(np.frombuffer(buf, dtype=FB_EVENT_DTYPE, count=count, offset=start))
    ev = np.concatenate(chunks) if chunks else np.zeros(0, dtype=FB_EVENT_DTYPE)
    return make_events(ev["x"], ev["y"], ev["t"], ev["on"] != 0)


def read_aedat4(path: str | Path) -> np.ndarray:
    """Read the polarity events of an AEDAT 4.0 file."""
    return decode_aedat4(read_file_bytes(path), path)
