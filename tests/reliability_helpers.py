"""Shared by the tests/test_reliability_*.py files: tiny runs on disk, snapshots of a folder, the CLI's outcome."""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from develop_helpers import synthetic_splits, tiny_recipe
from test_engine import write_idx

from spikeforge.cli import main
from spikeforge.train.engine import train
from spikeforge.train.run_files import RunDir

TINY_SETS = ["model.width=0.25", "data.time_steps=2", "train.batch_size=8", "train.eval_batch_size=8",
             "train.epochs=1"]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with the SHA-256 of its content (to assert that nothing changed)."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def tiny_run(path: Path, epochs: int = 2, hybrid: bool = True) -> Path:
    """A trained run directory of the tiny developed (and hybrid) recipe on in-memory data."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "a 2-epoch run never prunes": these runs only need to exist
        train(tiny_recipe(epochs, hybrid=hybrid), path, quiet=True, splits=synthetic_splits())
    return path


def mnist_folder(root: Path, n_train: int = 16, n_test: int = 8) -> Path:
    """IDX files in the official MNIST format whose two classes differ in brightness."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        y = np.arange(n) % 2
        write_idx(root / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 60, (n, 28, 28)) + 180 * y[:, None, None])
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", y)
    return root


def weights(run: Path) -> dict[str, torch.Tensor]:
    from spikeforge.train.checkpoint import load_tensors

    return load_tensors(RunDir(run).weights_path())


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    @property
    def error_line(self) -> str:
        """The one error line (asserts there is exactly one line on stderr)."""
        lines = [line for line in self.err.splitlines() if line.strip()]
        assert len(lines) == 1, f"expected one line on stderr, got {lines}"
        return lines[0]


def cli(capsys: pytest.CaptureFixture[str], *args: object) -> Outcome:
    """Run ``spikeforge ARGS`` in this process; argparse's usage errors exit 2 like the real command."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:
        code = int(e.code or 0)
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)
