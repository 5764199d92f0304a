"""Run directories written before issue 13 keep loading, resuming, compacting and plotting.

``tests/assets/old_runs`` was written by spikeforge at commit fb23414 (before the methods became
plug-ins): ``developed`` = ``tiny_recipe(4, hybrid=True)`` trained on ``synthetic_splits()`` (SD-SNN
with a SpikingReLU site), ``compacted`` = ``compact_run`` of it. There the kept widths were a recipe
field (``develop.widths``) and masks were baked by a load-time flag.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from develop_helpers import synthetic_splits, tiny_recipe

from spikeforge.develop.masking import is_masked
from spikeforge.hybrid.spiking_relu import SpikingReLU
from spikeforge.train.engine import train
from spikeforge.train.report import plot_run
from spikeforge.train.run_files import RunDir
from spikeforge.train.rundir import load_run, stored_recipe

OLD = Path(__file__).parent / "assets" / "old_runs"
TOL = 1e-9


@pytest.fixture
def old(tmp_path: Path) -> Path:
    """A writable copy (loading never writes, resuming does)."""
    shutil.copytree(OLD, tmp_path / "old")
    return tmp_path / "old"


def _inputs() -> torch.Tensor:
    return (torch.rand(4, 8, 1, 8, 8, generator=torch.Generator().manual_seed(0)) < 0.5).double()


def test_old_compacted_run_loads_and_equals_its_source(old: Path) -> None:
    src, dst = load_run(old / "developed"), load_run(old / "compacted")
    assert "widths" in (old / "compacted" / "recipe.toml").read_text()  # the old layout
    assert dst.method_meta("develop")["widths"] == {"conv2": 4, "fc1": 19}
    assert dst.model.fc1.out_features == 19 and not any(is_masked(m) for m in dst.model.modules())
    assert isinstance(dst.model.sn1, SpikingReLU)
    with torch.no_grad():
        a, b = src.model.double()(_inputs()), dst.model.double()(_inputs())
    assert float(a.abs().sum()) > 0 and float((a - b).abs().max()) <= TOL
    assert stored_recipe(RunDir(old / "compacted")) == dst.recipe  # recipe.toml-only readers too


def test_old_developed_run_bakes_masks_on_load_and_plots(old: Path) -> None:
    run = load_run(old / "developed")
    fc1 = run.model.fc1
    assert is_masked(fc1)
    pruned = fc1.weight.detach()[fc1.weight_mask == 0]
    assert pruned.numel() > 0 and torch.equal(pruned, torch.zeros_like(pruned))
    assert [p.name for p in plot_run(old / "developed")] == ["training.png", "development.png"]


def test_old_developed_run_resumes(old: Path) -> None:
    train(tiny_recipe(5, hybrid=True), old / "developed", quiet=True, splits=synthetic_splits(), resume=True)
    records = RunDir(old / "developed").read_metrics()
    assert [r["epoch"] for r in records] == [1, 2, 3, 4, 5] and records[-1]["develop.fc1.neurons_alive"] > 0
