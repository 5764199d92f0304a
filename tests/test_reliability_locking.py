"""Training holds an exclusive lock on its run directory: a second ``train``, ``--resume`` of a running run or a
command replacing it is refused naming the holder; a stale lock from a dead process is reported and taken over; a
lock from another host is reported with the command that clears it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from develop_helpers import synthetic_splits, tiny_recipe
from reliability_helpers import cli, snapshot, tiny_run

from spikeforge.train.engine import train
from spikeforge.train.run_files import RunDir
from spikeforge.train.run_lock import RunLock, RunLockedError, StaleLockWarning


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(done.stdout)


def test_a_running_run_is_refused_to_everyone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tiny_run(tmp_path / "run")
    before = snapshot(run)
    with RunDir(run).lock():  # this process trains there (the flock is held through another open file)
        holder = RunDir(run).lock_holder()
        assert holder is not None and holder.host == socket.gethostname()
        for resume in (False, True):
            with pytest.raises(RunLockedError, match=rf"^{run} is being trained by process \d+ on .* \(since .*\)"):
                train(tiny_recipe(3), run, quiet=True, splits=synthetic_splits(), resume=resume)
        res = cli(capsys, "compact", tmp_path / "other", "--out", run, "--force")
        assert res.code == 1  # the missing input is reported first
        other = tiny_run(tmp_path / "other", hybrid=False)
        res = cli(capsys, "compact", other, "--out", run, "--force")
        assert res.error_line.startswith(f"spikeforge compact: error: {run} is being trained by process ")
    assert snapshot(run) == before


def test_a_stale_lock_is_reported_and_taken_over(tmp_path: Path) -> None:
    run = tiny_run(tmp_path / "run")
    lock = run / RunDir.LOCK
    pid = _dead_pid()
    lock.write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": "2026-11-28T10:00:00",
                                "command": "spikeforge train"}))
    with pytest.warns(StaleLockWarning, match=rf"stale lock of process {pid} on .* \(since 2026-11-28T10:00:00\) "
                                              r"\(no longer running\) taken over"):
        train(tiny_recipe(3, hybrid=True), run, quiet=True, splits=synthetic_splits(), resume=True)
    assert not lock.exists() and RunDir(run).committed_epoch() == 3


def test_a_lock_from_another_host_names_the_command_that_clears_it(tmp_path: Path) -> None:
    run = tiny_run(tmp_path / "run")
    lock = run / RunDir.LOCK
    lock.write_text(json.dumps({"pid": 4242, "host": "node-17", "started": "2026-11-28T10:00:00", "command": ""}))
    with pytest.raises(RunLockedError, match=rf"^{run} is locked by process 4242 on node-17 \(since "
                                             rf"2026-11-28T10:00:00\), another host: if no training runs there any "
                                             rf"more, clear the lock with: rm {lock}$"):
        train(tiny_recipe(3, hybrid=True), run, quiet=True, splits=synthetic_splits(), resume=True)
    lock.unlink()
    train(tiny_recipe(3, hybrid=True), run, quiet=True, splits=synthetic_splits(), resume=True)


def test_the_lock_is_released_on_errors_and_an_empty_folder_it_created_is_removed(tmp_path: Path) -> None:
    empty = tmp_path / "empty-data"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="MNIST"):  # the data fails to load after the lock was taken
        train(tiny_recipe(2), tmp_path / "run", data_root=empty, quiet=True)
    assert not (tmp_path / "run").exists()
    with RunLock.acquire(tmp_path / "x.lock"):
        assert (tmp_path / "x.lock").exists()
    assert not (tmp_path / "x.lock").exists()
