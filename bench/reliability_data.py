"""The scratch workspace of ``bench/reliability_cases.py``: tiny datasets in the official formats and small runs.

Datasets (IDX files as in the MNIST distribution, a CIFAR-10 python folder) are written here; the runs
are trained, converted, compacted, exported and imported with the ``spikeforge`` command line, so the
battery starts from what a user would have on disk.
"""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

N_TRAIN, N_TEST = 64, 16
TINY = ["--set", "model.width=0.25", "--set", "data.time_steps=2", "--set", "train.batch_size=16",
        "--set", "train.eval_batch_size=16", "--device", "cpu", "--quiet"]


def write_idx(path: Path, arr: np.ndarray, truncate: int = 0) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    with gzip.open(path, "wb") as f:
        f.write(data[:len(data) - truncate])


def mnist(root: Path, n_train: int = N_TRAIN, n_test: int = N_TEST, size: int = 28, seed: int = 0,
          label_shift: int = 0, truncate: int = 0) -> Path:
    """Two classes that differ in brightness (learnable in an epoch), in MNIST's IDX files."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        y = np.arange(n) % 2
        x = rng.integers(0, 60, (n, size, size)) + 180 * y[:, None, None]
        write_idx(root / f"{split}-images-idx3-ubyte.gz", x, truncate if split == "train" else 0)
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", y + label_shift * (np.arange(n) == 0))
    return root


def cifar(root: Path) -> Path:
    rng = np.random.default_rng(1)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        doc = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": list(range(4)),
               b"batch_label": name.encode()}
        (folder / name).write_bytes(pickle.dumps(doc, protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]},
                                                       protocol=2))
    return root


def nan_nir(path: Path) -> Path:
    import nir

    weight = np.ones((2, 4))
    weight[0, 0] = np.nan
    nir.write(path, nir.NIRGraph(
        nodes={"input": nir.Input(np.array([4])), "fc": nir.Affine(weight=weight, bias=np.zeros(2)),
               "lif": nir.LIF(tau=np.ones(2) * 2, r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2)),
               "output": nir.Output(np.array([2]))},
        edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")]))
    return path


def spikeforge(*args: object) -> None:
    cmd = [sys.executable, "-m", "spikeforge.cli", *(str(a) for a in args)]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        raise SystemExit(f"workspace: {' '.join(cmd[3:])} failed:\n{done.stderr[-2000:]}")


def build_workspace(root: Path) -> dict[str, Path]:
    """Every dataset and run the cases refer to by name (``{name}`` in their arguments)."""
    root.mkdir(parents=True)
    p = {name: root / name for name in ("mnist", "mnist-copy", "mnist-fewer", "mnist-other", "mnist-16px",
                                        "mnist-truncated", "mnist-badlabel", "mnist-empty", "mnist-tomove", "cifar")}
    mnist(p["mnist"])
    shutil.copytree(p["mnist"], p["mnist-copy"])
    mnist(p["mnist-fewer"], n_test=N_TEST // 2)
    mnist(p["mnist-other"], seed=5)
    mnist(p["mnist-16px"], size=16)
    mnist(p["mnist-truncated"], truncate=100)
    mnist(p["mnist-badlabel"], label_shift=12)
    mnist(p["mnist-empty"], n_train=0)
    mnist(p["mnist-tomove"])
    cifar(p["cifar"])
    runs = {n: root / n for n in ("pure", "hybrid", "developed", "converted", "compacted", "pure-nir", "imported",
                                  "pure-moved", "nan-nir")}
    train = ["train", "--recipe", "mnist-sdsnn", "--data", p["mnist"], *TINY]
    spikeforge(*train, "--out", runs["pure"], "--epochs", "2")
    spikeforge(*train, "--out", runs["hybrid"], "--epochs", "2", "--set", "hybrid.sites=first:1")
    spikeforge("train", "--recipe", "mnist-sdsnn-develop", "--data", p["mnist"], *TINY, "--out", runs["developed"],
               "--epochs", "3", "--set", "develop.min_consecutive_epochs=1")
    spikeforge("train", "--recipe", "mnist-sdsnn", "--data", p["mnist-tomove"], *TINY, "--out", runs["pure-moved"],
               "--epochs", "1")
    shutil.rmtree(p["mnist-tomove"])  # the data a run was trained on, moved away since
    spikeforge("convert", runs["hybrid"], "--out", runs["converted"])
    spikeforge("compact", runs["developed"], "--out", runs["compacted"], "--samples", "16")
    spikeforge("export", runs["pure"], "--out", runs["pure-nir"])
    spikeforge("import", runs["pure-nir"], "--out", runs["imported"], "--recipe", "mnist-sdsnn", "--set",
               "data.time_steps=2", "--set", "train.batch_size=16", "--set", "train.eval_batch_size=16")
    nan_nir(runs["nan-nir"])
    return {**p, **runs}
