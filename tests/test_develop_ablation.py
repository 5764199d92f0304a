"""The [develop] ablation switches: constraint only, pruning without regeneration, fixed rates."""

from __future__ import annotations

import json
from pathlib import Path

from test_engine import make_mnist

from spikeforge.train.engine import train
from spikeforge.train.recipe import load_recipe

BASE = ["train.epochs=5", "train.batch_size=8", "data.time_steps=2", "model.width=0.5",
        "develop.reference_epochs=25", "develop.consecutive_epochs=1",
        "develop.min_consecutive_epochs=1"]


def _records(tmp_path: Path, name: str, extra: list[str]) -> list[dict]:
    data = make_mnist(tmp_path / "mnist", 32, 8)
    train(load_recipe("mnist-sdsnn-develop", BASE + extra), tmp_path / name, data_root=data, device="cpu", quiet=True)
    return [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]


def test_constraint_only_prunes_nothing(tmp_path: Path) -> None:
    recs = _records(tmp_path, "c", ["develop.prune=false"])
    assert all(r["develop.pruning_rate"] == 0.0 for r in recs)
    assert all(r["develop.fc1.neurons_pruned"] == 0 for r in recs)


def test_pruning_without_regeneration_and_fixed_rates(tmp_path: Path) -> None:
    recs = _records(tmp_path, "p", ["develop.regenerate=false", "develop.adaptive_rates=false"])
    assert recs[-1]["develop.pruning_rate"] > 0.2
    assert all(r["develop.fc1.synapses_regenerated"] == 0 for r in recs)
    assert {r["develop.fc1.rate"] for r in recs if r["develop.fc1.rate"] > 0} == {35.0}


def test_short_run_floor_for_consecutive_epochs() -> None:
    from spikeforge.develop.config import DevelopConfig
    from spikeforge.develop.schedule import Schedule

    assert Schedule.from_config(DevelopConfig(min_consecutive_epochs=1), 15).consecutive == 1  # round(18·15/300)
    assert Schedule.from_config(DevelopConfig(), 15).consecutive == 3  # the default floor
    floored = Schedule.from_config(DevelopConfig(min_consecutive_epochs=3), 15)
    assert (floored.consecutive, floored.first_pruning_epoch) == (3, 7)
    assert Schedule.from_config(DevelopConfig(min_consecutive_epochs=3), 300).consecutive == 18
