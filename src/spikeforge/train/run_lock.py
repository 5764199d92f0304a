"""The lock a training process holds on its run directory.

The lock file is created exclusively (``O_CREAT | O_EXCL``) and holds, as JSON, the PID, the host,
the start time and the command of the process; that process also keeps an ``flock`` on it until it
ends (the kernel drops the ``flock`` when a process dies, even by SIGKILL). A second ``train`` on
the same directory, ``--resume`` of a running run, or a command that would replace it, is refused
with the holder's PID, host and start time.

A lock whose holder is gone is *stale*: on the same host, when no process holds its ``flock`` and
its PID is not running, it is reported (a warning naming the dead process) and taken over. A lock
written on another host cannot be checked from here; it is reported with the command that clears
it. Only rank 0 of a ``torchrun`` job locks.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shlex
import socket
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import fsync_dir, write_event


class RunLockedError(RuntimeError):
    """Another process trains in the run directory (or may: a lock from another host)."""


class StaleLockWarning(UserWarning):
    """A lock left by a process that no longer runs was taken over."""


@dataclass(frozen=True)
class LockInfo:
    pid: int
    host: str
    started: str  # local time, ISO 8601
    command: str

    @classmethod
    def of_this_process(cls) -> LockInfo:
        return cls(os.getpid(), socket.gethostname(), time.strftime("%Y-%m-%dT%H:%M:%S"),
                   shlex.join(["spikeforge", *sys.argv[1:]]) if sys.argv else "")

    @classmethod
    def read(cls, path: Path) -> LockInfo | None:
        """The lock's content; ``None`` when it is unreadable (a crash while it was written)."""
        try:
            doc: Any = json.loads(path.read_text())
            return cls(int(doc["pid"]), str(doc["host"]), str(doc["started"]), str(doc.get("command", "")))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def describe(self) -> str:
        return f"process {self.pid} on {self.host} (since {self.started})"


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _flock_held(path: Path) -> bool:
    """Whether some process holds the ``flock`` of ``path`` (a live lock on this host)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return True
        raise
    finally:
        os.close(fd)
    return False


def holder(path: Path) -> LockInfo | None:
    """The live (or unverifiable) holder of the lock at ``path``; ``None`` when free or stale."""
    if not path.exists():
        return None
    if _flock_held(path):
        return LockInfo.read(path) or LockInfo(0, "?", "?", "")
    info = LockInfo.read(path)
    if info is None or info.host == socket.gethostname():
        return None  # no flock on this host: the holder is gone
    return info  # another host: its flock may not be visible here


def locked_error(path: Path, found: LockInfo) -> RunLockedError:
    """The refusal for a run directory whose lock ``found`` holds."""
    if found.host != socket.gethostname():
        return RunLockedError(f"{path.parent} is locked by {found.describe()}, another host: if no training runs "
                              f"there any more, clear the lock with: rm {shlex.quote(str(path))}")
    return RunLockedError(f"{path.parent} is being trained by {found.describe()}"
                          f"{': ' + found.command if found.command else ''}; wait for it to end or stop it")


class RunLock:
    """An acquired lock; release it with :meth:`release` (or use it as a context manager)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self._fd = path, fd

    @classmethod
    def acquire(cls, path: Path) -> RunLock:
        """Lock ``path`` (its folder must exist), taking over a stale lock; raises :class:`RunLockedError`."""
        for _ in range(2):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                cls._clear_stale(path)
                continue
            fcntl.flock(fd, fcntl.LOCK_EX)
            info = LockInfo.of_this_process()
            os.write(fd, (json.dumps(info.__dict__) + "\n").encode())
            os.fsync(fd)
            fsync_dir(path.parent)
            write_event("locked the run directory")
            return cls(path, fd)
        raise RunLockedError(f"{path.parent}: could not take the lock {path} (another process took it first)")

    @staticmethod
    def _clear_stale(path: Path) -> None:
        found = holder(path)
        if found is not None:
            raise locked_error(path, found)
        info = LockInfo.read(path)
        aside = path.with_name(f".{path.name}.stale-{os.getpid()}")
        try:
            os.replace(path, aside)  # one process wins the take-over
        except FileNotFoundError:
            return
        aside.unlink(missing_ok=True)
        what = info.describe() if info else "an unreadable lock file"
        warnings.warn(f"{path.parent}: stale lock of {what} (no longer running) taken over", StaleLockWarning,
                      stacklevel=4)

    def release(self) -> None:
        if self._fd < 0:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
