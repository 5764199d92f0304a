"""Files that are never seen half-written: atomic replacement, durable renames, and crash test points.

Every write goes to a temporary file in the destination folder, is flushed to disk (``fsync``) and
moved into place with ``os.replace``; then the folder itself is flushed, so the rename survives a
power cut as well as a killed process. Readers see the old file or the complete new one.

Crash testing: each point where a crash would leave the disk in a new state (a temporary file
written but not renamed, a rename done, half a line appended) is a *write event*. With
``SPIKEFORGE_KILL_AT_WRITE=N`` in the environment the process SIGKILLs itself at its ``N``-th write
event (a torn temporary file or line is left behind exactly as a crash would leave it);
``SPIKEFORGE_COUNT_WRITES=FILE`` appends one line per event to ``FILE``. ``bench/crash_harness.py``
and the resume tests use them; without these variables a write event costs one dictionary lookup.

This module imports nothing of spikeforge: data caches, run directories and exports share it.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

KILL_AT_ENV = "SPIKEFORGE_KILL_AT_WRITE"
COUNT_ENV = "SPIKEFORGE_COUNT_WRITES"
TORN_FRACTION = 2  # a killed write leaves 1/TORN_FRACTION of its bytes

_events = 0  # write events of this process so far


def reset_write_events() -> None:
    """Start counting write events from zero (a forked test child)."""
    global _events
    _events = 0


def write_event(label: str, torn: Path | None = None) -> None:
    """A crash test point (see the module docstring). ``torn``: a file to cut to a fraction of its
    size before the kill, as an interrupted write leaves it."""
    global _events
    kill_at, count_to = os.environ.get(KILL_AT_ENV), os.environ.get(COUNT_ENV)
    if kill_at is None and count_to is None:
        return
    _events += 1
    if count_to:
        with open(count_to, "a") as f:
            f.write(f"{_events}\t{label}\n")
    if kill_at is not None and _events == int(kill_at):
        if torn is not None and torn.is_file():
            os.truncate(torn, torn.stat().st_size // TORN_FRACTION)
        os.kill(os.getpid(), signal.SIGKILL)


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (renames, new files) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def durable_rename(src: Path, dst: Path) -> None:
    """``os.replace(src, dst)`` followed by flushing the destination folder."""
    os.replace(src, dst)
    fsync_dir(dst.parent)


def atomic_write_with(path: Path, write: Callable[[str], object]) -> None:
    """``write(tmp)`` fills a temporary file beside ``path``; it is flushed to disk, then renamed onto
    ``path``, so readers see the old file or the complete new one, never a partial one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        write_event(f"written {path.name}", torn=Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    write_event(f"renamed {path.name}")
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write_with(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def json_text(obj: Any, path: Path, indent: int | None = None) -> str:
    """``obj`` as JSON for ``path``; NaN and infinities are refused with the file named (they are not JSON)."""
    try:
        return json.dumps(obj, indent=indent, sort_keys=True, allow_nan=False)
    except ValueError:
        raise ValueError(f"{path}: refusing to write NaN or an infinity (not valid JSON)") from None


def write_json(path: Path, obj: Any) -> None:
    """``obj`` as indented JSON, atomically (:func:`json_text`)."""
    atomic_write_text(path, json_text(obj, path, indent=2) + "\n")


def append_line(path: Path, line: str) -> None:
    """Append one line and flush it to disk (a crash may leave a torn last line; readers skip it)."""
    data = (line.rstrip("\n") + "\n").encode()
    with open(path, "ab") as f:
        if os.environ.get(KILL_AT_ENV) is not None or os.environ.get(COUNT_ENV):
            f.write(data[:len(data) // TORN_FRACTION])
            f.flush()
            write_event(f"appending to {path.name}")
            f.write(data[len(data) // TORN_FRACTION:])
        else:
            f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _read_text(path: Path, parse: Callable[[str], Any], errors: type[Exception], what: str) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found" if not path.exists() else f"{path}: not a file")
    try:
        return parse(path.read_text())
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file (expected UTF-8 {what})") from None
    except errors as e:
        raise ValueError(f"{path}: not valid {what} ({e})") from None


def read_json(path: Path) -> Any:
    return _read_text(path, json.loads, json.JSONDecodeError, "JSON")


def read_toml(path: Path) -> dict[str, Any]:
    return dict(_read_text(path, tomllib.loads, tomllib.TOMLDecodeError, "TOML"))
