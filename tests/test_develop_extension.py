"""The [develop] method: default layers, the per-epoch schedule, metadata/restore, engine runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from develop_helpers import synthetic_splits, tiny_model, tiny_recipe

from spikeforge.develop.config import DevelopConfig
from spikeforge.develop.development import Development, equip
from spikeforge.develop.extension import METHOD
from spikeforge.develop.masking import MaskedBatchNorm2d, is_masked
from spikeforge.develop.plot import plot_development
from spikeforge.train.distributed import Distributed
from spikeforge.train.engine import train
from spikeforge.train.hooks import TrainContext
from spikeforge.train.rundir import RunDir, load_run

CPU = torch.device("cpu")


def _prepared(name: str = "sdsnn_convnet", epochs: int = 20, **develop: object) -> tuple[torch.nn.Module, Development]:
    """The model and the Development the engine's [develop] method prepares for it."""
    recipe = tiny_recipe(epochs)
    recipe.model.name = name
    for key, value in develop.items():
        setattr(METHOD.config(recipe), key, value)
    model = tiny_model(name)
    hook = METHOD.prepare(TrainContext(recipe, model, synthetic_splits(), CPU, Distributed()))
    return model, hook.development


def test_default_pruned_layers_follow_the_reference() -> None:
    model, hook = _prepared()
    assert hook.names == ["conv2", "fc1"]
    assert [n for n, m in model.named_modules() if is_masked(m)] == ["conv2", "fc1"]
    assert hook.rates == {"conv2": 5.0, "fc1": 35.0}
    model, hook = _prepared("cifar_convnet")
    assert hook.names == [f"conv{i}" for i in range(1, 7)] + ["fc1"]
    assert hook.batchnorms == {f"conv{i}": f"bn{i}" for i in range(1, 7)}
    assert isinstance(model.bn3, MaskedBatchNorm2d)


def test_epoch_schedule_constraint_then_pruning_then_rate_growth() -> None:
    model, hook = _prepared(epochs=20)  # C = round(18 * 20 / 300) = 1: pruning from epoch 3
    for epoch in (1, 2):
        rec = hook.end_epoch(epoch)
        assert rec["develop.fc1.rate"] == 0.0 and rec["develop.fc1.neurons_alive"] == 30
    rec = hook.end_epoch(3)
    assert rec["develop.fc1.rate"] == 35.0
    assert rec["develop.fc1.neurons_alive"] == 30 - 10  # floor(30 * 35 / 100)
    assert rec["develop.fc1.neurons_pruned"] == 10
    assert 0.0 < rec["develop.pruning_rate"] < 1.0
    # the neurotrophic update used this epoch's survivors (min_inputs = 4 in the tiny recipe)
    assert hook.rates["fc1"] == 35.0 + 1.0 * rec["develop.fc1.survivors"] / 10.0
    json.dumps(rec)  # JSON-serialisable metrics
    # weights lie inside their ranges once the constraint is on
    w = model.fc1.weight.detach()
    assert bool((w <= model.fc1.range_hi).all()) and bool((w >= model.fc1.range_lo).all())


@pytest.mark.parametrize("revives", [True, False])
def test_regrown_neuron_is_revived_instead_of_re_pruned(revives: bool) -> None:
    model, hook = _prepared(adaptive_rates=False, regen_revives_neurons=revives)  # C = 1, R = 1
    for epoch in (1, 2, 3):
        hook.end_epoch(epoch)
    mask = model.fc1.weight_mask
    dead_rows = torch.nonzero(mask.amax(1) == 0).flatten()
    dead = int(dead_rows[0])
    w = model.fc1.weight
    with torch.no_grad():  # pruned neurons' shadow weights at their lower bounds: no candidates ...
        w[dead_rows] = model.fc1.range_lo[dead_rows]
        w[dead, 0] = model.fc1.range_hi[dead, 0]  # ... but one synapse of one pruned neuron grew
        alive = mask.amax(1) > 0
        model.fc1.range_hi[alive] *= 2  # living neurons' ranges expanded: they are the important ones
        model.fc1.range_lo[alive] *= 2
    rec = hook.end_epoch(4)
    assert rec["develop.fc1.synapses_regenerated"] > 0
    assert rec["develop.fc1.neurons_revived"] == 1
    if revives:
        assert rec["develop.fc1.rate"] == pytest.approx(35.0 - 100.0 / 30)
        assert float(mask[dead].sum()) == 1 and rec["develop.fc1.neurons_alive"] == 30 - 9
    else:  # the reference: the same epoch's pruning masks the regrown neuron again
        assert rec["develop.fc1.rate"] == 35.0
        assert float(mask[dead].sum()) == 0 and rec["develop.fc1.neurons_alive"] == 30 - 10


def test_hook_state_roundtrip_and_restore_rebuilds_the_structure() -> None:
    model, hook = _prepared()
    for epoch in range(1, 4):
        hook.end_epoch(epoch)
    other = Development(tiny_model(seed=2), DevelopConfig(), 20, hook.names)
    other.load_state_dict(json.loads(json.dumps(hook.state_dict())))
    assert other.rates == hook.rates and other.last_epoch == 3
    fresh = tiny_model(seed=3)
    meta = json.loads(json.dumps(hook.metadata()))
    METHOD.restore(tiny_recipe(), fresh, meta)
    fresh.load_state_dict(model.state_dict())  # strict: every buffer exists
    assert torch.equal(fresh.fc1.weight_mask, model.fc1.weight_mask)
    METHOD.finish_loading(fresh, meta)  # the explicit inference step: masks baked into the weights
    assert torch.equal(fresh.fc1.weight.detach(), (model.fc1.weight * model.fc1.weight_mask).detach())


def test_equip_rejects_unknown_layers() -> None:
    model = tiny_model()
    try:
        equip(model, ["sn1"])
    except ValueError as e:
        assert "not a conv/linear layer" in str(e)
    else:
        raise AssertionError("expected ValueError")


def test_engine_run_records_development_and_reloads(tmp_path: Path) -> None:
    splits = synthetic_splits()
    train(tiny_recipe(4), tmp_path / "run", quiet=True, splits=splits)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["develop.fc1.rate"] for r in records[:2]] == [0.0, 0.0]
    assert records[2]["develop.fc1.neurons_alive"] < records[1]["develop.fc1.neurons_alive"]
    assert records[-1]["develop.pruning_rate"] > 0.0
    png = plot_development(RunDir(tmp_path / "run"))
    assert png.stat().st_size > 0
    loaded = load_run(tmp_path / "run")
    meta = RunDir(tmp_path / "run").read_model_meta()
    assert meta["extensions"]["develop"]["layers"] == ["conv2", "fc1"]
    pruned = loaded.model.fc1.weight.detach()[loaded.model.fc1.weight_mask == 0]
    assert pruned.numel() > 0 and torch.equal(pruned, torch.zeros_like(pruned))  # masks folded on load


def test_resume_continues_development_exactly(tmp_path: Path) -> None:
    """Masks, ranges and streaks (buffers) and the rates (hook state) survive --resume."""
    splits = synthetic_splits()
    train(tiny_recipe(5), tmp_path / "straight", quiet=True, splits=splits)
    train(tiny_recipe(3), tmp_path / "resumed", quiet=True, splits=splits)  # same C = 1 as a 5-epoch run
    train(tiny_recipe(5), tmp_path / "resumed", quiet=True, splits=splits, resume=True)

    def records(run: str) -> list[dict]:
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k.startswith("develop.") or k == "train_loss"}
                for line in lines]

    straight, resumed = records("straight"), records("resumed")
    assert straight == resumed and straight[-1]["develop.fc1.rate"] > straight[-2]["develop.fc1.rate"] > 0
