"""An N-MNIST CNN trained and exported by snnTorch, imported with `spikeforge import` and evaluated on
the real subset (../shared/data/nmnist-1k, 100 test samples) through `spikeforge evaluate`: the same
output spike counts as snnTorch's own simulation, sample by sample (skipped when the data is absent).

tests/data/nir/nmnist/ holds the graph, snnTorch's test predictions and spike counts, and its report,
written by `python bench/nmnist_snntorch_nir.py` (BENCHMARKS.md, section 7).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("nir")

from spikeforge.cli import main  # noqa: E402
from spikeforge.commands.evaluate import evaluate_run  # noqa: E402
from spikeforge.data import load_dataset  # noqa: E402
from spikeforge.data.encode import prepare_batch  # noqa: E402
from spikeforge.train.rundir import load_run  # noqa: E402

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
FILES = Path(__file__).resolve().parents[1] / "data" / "nir" / "nmnist"
IMPORT_SETTINGS = ["--recipe", "nmnist-sdsnn", "--profile", "snntorch", "--set", "data.time_steps=100",
                   "--set", "data.events.split_by=window", "--set", "data.events.window_us=1000",
                   "--set", "data.events.crop=0", "--set", "train.loss=ce", "--set", "data.train_limit=1"]


def test_snntorch_nmnist_cnn_on_real_events(tmp_path: Path) -> None:
    root = SHARED / "nmnist-1k"
    if not root.is_dir():
        pytest.skip(f"{root} not found: integration data absent")
    run = tmp_path / "run"
    assert main(["import", str(FILES / "snntorch_cnn.nir"), "--out", str(run), *IMPORT_SETTINGS,
                 "--set", f"data.events.cache_dir={tmp_path / 'cache'}"]) == 0
    res = evaluate_run(str(run), str(root))
    report = json.loads((FILES / "snntorch.json").read_text())
    assert res["samples"] == report["test_samples"] == 100
    assert res["accuracy"] == pytest.approx(report["test_accuracy"], abs=1e-6)
    loaded = load_run(run)
    splits = load_dataset(loaded.recipe.data, root)
    x = prepare_batch(splits.test.x, splits.info, loaded.recipe.data, None, torch.Generator(), train=False)
    with torch.no_grad():
        counts = loaded.model(x).sum(0).numpy()
    ref = np.load(FILES / "snntorch_predictions.npz")
    np.testing.assert_array_equal(counts, ref["spike_counts"])
    np.testing.assert_array_equal(splits.test.y.numpy(), ref["labels"])
