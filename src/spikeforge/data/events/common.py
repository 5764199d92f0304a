"""What every event decoder shares: the event record layout and the format error.

Every decoder returns a structured numpy array of :data:`EVENT_DTYPE` records, one per event,
in file order: ``x`` and ``y`` (pixel column and row, ``int16``), ``t`` (timestamp in
microseconds, ``int64``) and ``p`` (polarity, ``uint8``, 0 or 1).

Timestamps that go backwards are reported by :func:`first_time_decrease` /
:func:`describe_decrease`: the N-MNIST decoder rejects them (its format stores one sensor's
events in time order), the dataset pipeline sorts AEDAT events (those formats allow
out-of-order events, see ``docs/events.md``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..validate import DataError

EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", np.uint8)])
HEADER_MARK = b"#"  # AEDAT 2 / 3 header lines start with '#'
MAX_HEADER_LINES = 100_000  # a guard against reading a binary file as header lines


class EventFormatError(DataError):
    """A malformed event file (or label file); the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def make_events(x: np.ndarray, y: np.ndarray, t: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Pack four equally long columns into an :data:`EVENT_DTYPE` array."""
    ev = np.empty(len(t), dtype=EVENT_DTYPE)
    ev["x"], ev["y"], ev["t"], ev["p"] = x, y, t, p
    return ev


def read_file_bytes(path: str | Path) -> bytes:
    """The whole file; a missing or empty file is an :class:`EventFormatError`."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise EventFormatError(path, f"cannot read file: {e.strerror or e}") from None
    if not data:
        raise EventFormatError(path, "file is empty")
    return data


def split_header(path: str | Path, data: bytes, magic: bytes,
                 end_line: bytes | None = None) -> tuple[list[str], int]:
    """Parse the ``#``-prefixed ASCII header of an AEDAT 2 / 3 file.

    The first line must start with ``magic`` (e.g. ``b"#!AER-DAT3.1"``). Header lines are read
    while they start with ``#``; if ``end_line`` is given (AEDAT 3: ``b"#!END-HEADER"``) the
    header ends right after that line and it must be present. Returns the decoded header lines
    (without line terminators) and the offset of the first binary byte.
    """
    if not data.startswith(magic):
        got = data[: len(magic)].decode("latin-1", "replace")
        raise EventFormatError(path, f"bad header: expected the file to start with {magic.decode()!r}, "
                                     f"got {got!r}")
    lines: list[str] = []
    pos = 0
    for _ in range(MAX_HEADER_LINES):
        if not data.startswith(HEADER_MARK, pos):
            if end_line is not None:
                raise EventFormatError(path, f"header has no {end_line.decode()!r} line")
            return lines, pos
        nl = data.find(b"\n", pos)
        if nl < 0:
            raise EventFormatError(path, "header line is not terminated (file truncated inside the header)")
        line = data[pos:nl].rstrip(b"\r")
        lines.append(line.decode("latin-1"))
        pos = nl + 1
        if end_line is not None and line == end_line:
            return lines, pos
    raise EventFormatError(path, f"more than {MAX_HEADER_LINES} header lines")


def first_time_decrease(t: np.ndarray) -> int | None:
    """Index of the first event whose timestamp is below its predecessor's (``None``: ordered)."""
    if len(t) < 2:
        return None
    back = np.diff(t) < 0
    return int(np.argmax(back)) + 1 if bool(back.any()) else None


def describe_decrease(t: np.ndarray, i: int) -> str:
    """``"timestamps decrease at event i (...)"`` for the index ``i`` from :func:`first_time_decrease`."""
    count = int((np.diff(t) < 0).sum())
    return (f"timestamps decrease at event {i} (t={int(t[i])} µs after t={int(t[i - 1])} µs at event {i - 1}; "
            f"{count} decrease(s) in the file)")
