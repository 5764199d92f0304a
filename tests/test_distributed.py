"""Data-parallel training under torchrun: sharding, rank-0 writing, equality with one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from develop_helpers import synthetic_splits, tiny_recipe

from spikeforge.train.checkpoint import load_tensors
from spikeforge.train.distributed import Distributed, check_batch, from_environment
from spikeforge.train.engine import train
from spikeforge.train.run_files import RunDir

TESTS = Path(__file__).parent
EPOCHS = 3  # C = 1 for the tiny recipe: constraint from epoch 2, pruning at epoch 3
BATCH = 33  # 96 samples: global batches 33, 33, 30 → rank chunks 17/16, 17/16, 15/15 (unequal chunks)
SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import torch
from develop_helpers import synthetic_splits, tiny_recipe
from spikeforge.train.distributed import teardown
from spikeforge.train.engine import train

torch.set_num_threads(1)
recipe = tiny_recipe({epochs}, hybrid={hybrid})
recipe.data.encoding = "direct"
recipe.train.batch_size = {batch}
try:
    train(recipe, sys.argv[1], quiet=True, splits=synthetic_splits())
finally:
    teardown()  # as `spikeforge train` does: gloo threads must not outlive the interpreter
"""


def _recipe(hybrid: bool):  # noqa: ANN202
    recipe = tiny_recipe(EPOCHS, hybrid=hybrid)
    recipe.data.encoding = "direct"  # no per-sample randomness: one process and two ranks see equal inputs
    recipe.train.batch_size = BATCH
    return recipe


def test_chunks_split_a_global_batch_contiguously() -> None:
    x, y = torch.arange(10).reshape(10, 1), torch.arange(10)
    parts = [Distributed(r, 3).chunk(x, y)[1].tolist() for r in range(3)]
    assert parts == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert Distributed().chunk(x, y)[1].tolist() == list(range(10))
    assert Distributed().sum([1.0, 2.0], torch.device("cpu")) == [1.0, 2.0]
    # DDP averages the ranks' gradients: weighting each rank's mean loss by n_r·W/n gives the global mean
    losses = torch.rand(7)
    d = [Distributed(r, 2) for r in range(2)]
    parts = [torch.tensor_split(losses, 2)[r] for r in range(2)]
    averaged = sum(p.mean() * d[r].loss_weight(len(p), 7) for r, p in enumerate(parts)) / 2
    assert float(averaged) == pytest.approx(float(losses.mean()))
    assert Distributed().loss_weight(3, 7) == 1.0


def test_environment_and_batch_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert from_environment() == Distributed(1, 2, 0)
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="inconsistent"):
        from_environment()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ValueError, match="RANK"):
        from_environment()
    with pytest.raises(ValueError, match="global batch"):
        check_batch(Distributed(0, 4), 2)


@pytest.mark.parametrize("hybrid", [False, True])
def test_torchrun_two_ranks_equal_one_process(tmp_path: Path, hybrid: bool) -> None:
    """Unequal chunks, structural development and (hybrid) SpikingReLU step initialisation included."""
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT.format(tests=str(TESTS), epochs=EPOCHS, hybrid=hybrid, batch=BATCH))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), str(tmp_path / "ddp")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    train(_recipe(hybrid), tmp_path / "single", quiet=True, splits=synthetic_splits())

    def records(run: str) -> list[dict]:
        return [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]

    ddp, single = records("ddp"), records("single")
    assert len(ddp) == EPOCHS  # rank 0 alone wrote the metrics
    for a, b in zip(ddp, single, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4, abs=1e-6)
        assert a["test_accuracy"] == b["test_accuracy"]
        assert a["develop.fc1.neurons_alive"] == b["develop.fc1.neurons_alive"]
    assert ddp[-1]["develop.fc1.neurons_pruned"] > 0  # the structure changed, identically
    wa, wb = (load_tensors(RunDir(tmp_path / run).weights_path()) for run in ("ddp", "single"))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.allclose(wa[k].double(), wb[k].double(), atol=1e-4), k
    assert torch.equal(wa["fc1.weight_mask"], wb["fc1.weight_mask"])
