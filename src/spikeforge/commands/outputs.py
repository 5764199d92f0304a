"""Outputs that cannot destroy work: where a command may write, checked before it runs.

A command that writes declares ``OUTPUT = Output(...)``: the argument holding its output path, the
arguments holding its inputs, and whether the output is a folder or a file. The CLI then adds
``--force`` and runs the command inside :func:`guarded`:

- a command never writes into, over or around one of its inputs (not even with ``--force``), nor
  over one of a run directory's own files, nor into a run that is being trained;
- an existing non-empty output folder, an existing output file, or a path inside a run directory
  is refused unless ``--force``;
- with ``--force`` an existing output folder is replaced only if spikeforge wrote it (a run or a
  converted directory): it is moved aside, the command writes a fresh one, and the old one is
  deleted only when the command succeeded (restored when it failed). A file is replaced atomically;
- when a command fails, an output folder it created is removed again, so nothing half-written stays.

``train`` has its own rules (resume, lock): :mod:`spikeforge.train.start`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..reparam.graph import GRAPH_FILE
from ..train.run_files import RunDir
from ..train.run_lock import locked_error


class OutputError(FileExistsError):
    """An output that would overwrite or mix with existing work."""


@dataclass(frozen=True)
class Output:
    """A command's output: ``arg`` (an argparse destination) names a folder (``kind = "dir"``) or a file."""

    arg: str = "out"
    inputs: tuple[str, ...] = ("run_dir",)
    kind: str = "dir"


def spikeforge_output(path: Path) -> bool:
    """A folder spikeforge wrote: a run directory or a converted model."""
    return RunDir.is_run_directory(path) or (path / GRAPH_FILE).is_file()


def containing_run(path: Path) -> Path | None:
    """The run directory ``path`` lies in (not ``path`` itself), if any."""
    return next((p for p in path.parents if RunDir.is_run_directory(p)), None)


def _check_inputs(out: Path, inputs: list[Path]) -> None:
    for given in inputs:
        if not given.exists():
            raise FileNotFoundError(f"{given}: not found")
        src = given.resolve()
        if out == src:
            raise OutputError(f"--out {out} is the input {given}; a command never writes over its input")
        if src in out.parents:
            raise OutputError(f"--out {out} is inside the input {given}; a command never writes into its input")
        if out in src.parents:
            raise OutputError(f"--out {out} contains the input {given}; choose an output beside it")


def check_output(out: Path, inputs: list[Path], force: bool, kind: str) -> bool:
    """Refuse an output that would lose work (see the module docstring); returns whether an existing
    output folder is to be replaced."""
    out = out.expanduser().resolve()
    _check_inputs(out, inputs)
    run = containing_run(out)
    if run is not None:
        if RunDir(run).owns(out):
            raise OutputError(f"--out {out} is one of the files of the run directory {run}; choose another path")
        if not force:
            raise OutputError(f"--out {out} is inside the run directory {run}; choose a path outside it or pass "
                              "--force")
    if not out.exists():
        return False
    if kind == "file":
        if out.is_dir():
            raise OutputError(f"--out {out} is a folder; expected a file name")
        if not force:
            raise OutputError(f"--out {out} already exists; choose another path or pass --force to replace it")
        return False
    if not out.is_dir():
        raise OutputError(f"--out {out} is a file; expected a folder (a new or empty one)")
    if not any(out.iterdir()):
        return False
    holder = RunDir(out).lock_holder()
    if holder is not None:
        raise locked_error(out / RunDir.LOCK, holder)
    what = "a run directory" if RunDir.is_run_directory(out) else "a converted model" if spikeforge_output(out) else ""
    if not force:
        raise OutputError(f"--out {out} already exists and is not empty{f' ({what})' if what else ''}; choose another "
                          "path or pass --force to replace it")
    if not what:
        raise OutputError(f"--out {out} is a non-empty folder that spikeforge did not write; --force replaces only "
                          "run and converted directories")
    return True


@contextmanager
def guarded(out: Path, inputs: list[Path], force: bool, kind: str = "dir") -> Iterator[None]:
    """Run a command writing ``out`` (see the module docstring)."""
    replace = check_output(out, inputs, force, kind)
    existed = out.exists()
    backup = out.with_name(f".{out.name}.replaced-{os.getpid()}")
    if replace:
        os.replace(out, backup)
    try:
        yield
    except BaseException:
        if kind == "dir" and out.is_dir() and (replace or not existed):
            shutil.rmtree(out)
        if replace:
            os.replace(backup, out)
        raise
    if replace:
        shutil.rmtree(backup)
