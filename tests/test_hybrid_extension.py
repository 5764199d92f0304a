"""The [hybrid] engine extension: prepare/restore round trip, metadata, calibration hold-out."""

from __future__ import annotations

import json

import pytest
import torch

from spikeforge.data.base import ArrayDataset, DatasetInfo, DataSplits
from spikeforge.hybrid.config import HybridConfig
from spikeforge.hybrid.extension import METHOD, HybridHook, hold_out, site_steps
from spikeforge.hybrid.spiking_relu import SpikingReLU
from spikeforge.models import ModelConfig, build_model, neuron_sites
from spikeforge.train.distributed import Distributed
from spikeforge.train.hooks import Metadata, TrainContext
from spikeforge.train.recipe import Recipe
from spikeforge.train.rundir import build_from_meta

T = 2
CPU = torch.device("cpu")


def _recipe(sites: str = "last:2", levels: int = 7, **hybrid: float | int) -> Recipe:
    r = Recipe(name="t", model=ModelConfig(name="sdsnn_convnet", width=0.25),
               hybrid=HybridConfig(sites=sites, levels=levels, **hybrid))  # type: ignore[arg-type]
    r.data.time_steps = T
    r.data.encoding = "direct"
    r.train.seed = 3
    r.model.neuron.backend = "reference"
    return r


def _splits(n: int = 60, seed: int = 0) -> DataSplits:
    """Synthetic uint8 28x28 digits: class c lights rows 2c..2c+5."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=gen)
    x = (torch.rand(n, 1, 28, 28, generator=gen) * 60).to(torch.uint8)
    for i, c in enumerate(y.tolist()):
        x[i, 0, 2 * c:2 * c + 6] = 255
    info = DatasetInfo("synthetic", 10, 1, 28, mean=(0.2,), std=(0.35,))
    return DataSplits(ArrayDataset(x, y), ArrayDataset(x[:10], y[:10]), info)


def _ctx(recipe: Recipe, model: torch.nn.Module, splits: DataSplits) -> TrainContext:
    return TrainContext(recipe, model, splits, CPU, Distributed())


def _prepare(recipe: Recipe, model: torch.nn.Module, splits: DataSplits,
             saved: Metadata | None = None) -> HybridHook:
    return METHOD.prepare(_ctx(recipe, model, splits), saved)


def _input(seed: int = 0) -> torch.Tensor:
    return torch.rand(T, 4, 1, 28, 28, generator=torch.Generator().manual_seed(seed)) * 2


def test_prepare_static_policy_and_metadata() -> None:
    recipe, model, splits = _recipe(), build_model(_recipe().model), _splits()
    train_before = splits.train
    hook = _prepare(recipe, model, splits)
    assert splits.train is train_before  # nothing held out without auto
    sites = neuron_sites(model)
    assert [n for n, s in sites.items() if isinstance(s, SpikingReLU)] == ["sn2", "sn3"]
    assert all(s.levels == 7 for s in sites.values() if isinstance(s, SpikingReLU))
    meta = hook.metadata()
    assert meta == {"sites": ["sn2", "sn3"], "levels": 7, "policy": "last:2", "calibration_samples": 0}
    assert json.loads(json.dumps(meta)) == meta


def test_none_policy_replaces_nothing() -> None:
    recipe = _recipe("none")
    model = build_model(recipe.model)
    hook = _prepare(recipe, model, _splits())
    assert hook.sites == [] and not any(isinstance(s, SpikingReLU) for s in neuron_sites(model).values())
    assert hook.end_epoch(_ctx(recipe, model, _splits())) == {}


def test_steps_are_initialised_by_the_first_training_forward_and_reported() -> None:
    recipe = _recipe()
    model = build_model(recipe.model)
    hook = _prepare(recipe, model, _splits())
    ctx = _ctx(recipe, model, _splits())
    assert hook.end_epoch(ctx) == {"hybrid.step.sn2": 1.0, "hybrid.step.sn3": 1.0}
    inputs: dict[str, torch.Tensor] = {}
    handles = [model.get_submodule(n).register_forward_pre_hook(
        lambda _m, a, n=n: inputs.__setitem__(n, a[0].detach())) for n in ("sn2", "sn3")]
    model.train()
    model(_input())
    for h in handles:
        h.remove()
    steps = hook.end_epoch(ctx)
    for n in ("sn2", "sn3"):
        expected = float(2 * inputs[n].abs().mean() / 7 ** 0.5)
        assert steps[f"hybrid.step.{n}"] == pytest.approx(expected, rel=1e-5)
    assert steps == site_steps(model)


def test_restore_round_trip_loads_weights_and_keeps_steps() -> None:
    recipe = _recipe("sn1,sn3", levels=3)
    torch.manual_seed(0)
    model = build_model(recipe.model)
    hook = _prepare(recipe, model, _splits())
    model.train()
    model(_input(1))  # LSQ init
    with torch.no_grad():
        model.get_submodule("sn3").step.mul_(1.7)  # as if trained
    meta = json.loads(json.dumps(hook.metadata()))
    state = model.state_dict()

    torch.manual_seed(99)  # different initial weights: everything must come from the checkpoint
    restored = build_model(recipe.model)
    METHOD.restore(recipe, restored, meta)
    restored.load_state_dict(state, strict=True)
    model.eval(), restored.eval()
    x = _input(2)
    torch.testing.assert_close(restored(x), model(x))
    step = restored.get_submodule("sn3").step.item()
    assert bool(restored.get_submodule("sn3").initialized)
    restored.train()
    restored(x * 10)  # a restored, initialised step is not re-initialised
    assert restored.get_submodule("sn3").step.item() == step

    # the run-directory loader goes through the same registered method
    via_loader = build_from_meta(recipe, {"extensions": {"hybrid": meta}})
    via_loader.load_state_dict(state, strict=True)
    assert [n for n, s in neuron_sites(via_loader).items() if isinstance(s, SpikingReLU)] == ["sn1", "sn3"]


def test_restore_without_metadata_and_levels_from_metadata() -> None:
    model = build_model(_recipe().model)
    METHOD.restore(_recipe("first:1", levels=5), model, {})  # static policy: resolved from the recipe
    assert isinstance(model.sn1, SpikingReLU) and model.sn1.levels == 5
    model = build_model(_recipe().model)
    METHOD.restore(_recipe("first:1", levels=5), model, {"sites": ["sn2"], "levels": 9})
    assert isinstance(model.sn2, SpikingReLU) and model.sn2.levels == 9
    assert not isinstance(model.sn1, SpikingReLU)
    with pytest.raises(ValueError, match="lacks the chosen sites"):
        METHOD.restore(_recipe("auto:0.5"), build_model(_recipe().model), {})


def test_hold_out_takes_the_last_samples() -> None:
    splits = _splits(50)
    x, y = splits.train.x.clone(), splits.train.y.clone()
    cal = hold_out(splits, 12)
    assert len(splits.train) == 38 and len(cal) == 12
    assert torch.equal(splits.train.x, x[:38]) and torch.equal(cal.y, y[38:])
    for bad in (1, 50, 100):
        with pytest.raises(ValueError, match="calibration_samples"):
            hold_out(_splits(50), bad)


def test_prepare_auto_holds_out_calibration_and_is_deterministic() -> None:
    recipe = _recipe("auto:100", calibration_samples=40, calibration_batch_size=10, calibration_steps=2)
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        model, splits = build_model(recipe.model), _splits(100)
        hook = _prepare(recipe, model, splits)
        assert len(splits.train) == 60  # the engine trains on the rest only
        meta = json.loads(json.dumps(hook.metadata()))
        assert meta["calibration_samples"] == 40 and meta["policy"] == "auto:100"
        assert meta["sites"] == meta["auto"]["sites"] and len(meta["auto"]["rounds"]) >= 1
        assert [n for n, s in neuron_sites(model).items() if isinstance(s, SpikingReLU)] == meta["sites"]
        results.append(meta)
    assert results[0] == results[1]


def test_resume_reuses_the_saved_auto_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = _recipe("auto:100", calibration_samples=40, calibration_batch_size=10, calibration_steps=2)
    torch.manual_seed(0)
    first = _prepare(recipe, build_model(recipe.model), _splits(100))
    saved = json.loads(json.dumps(first.metadata()))

    def no_calibration(*args: object, **kwargs: object) -> None:
        raise AssertionError("--resume must not calibrate again")

    monkeypatch.setattr("spikeforge.hybrid.extension.select", no_calibration)
    model, splits = build_model(recipe.model), _splits(100)
    hook = _prepare(recipe, model, splits, saved)
    assert len(splits.train) == 60  # the same calibration split is still held out
    assert json.loads(json.dumps(hook.metadata())) == saved
    assert [n for n, s in neuron_sites(model).items() if isinstance(s, SpikingReLU)] == saved["sites"]
    with pytest.raises(ValueError, match="trained with hybrid policy"):
        _prepare(_recipe("auto:50", calibration_samples=40), build_model(recipe.model), _splits(100), saved)


def test_auto_needs_data_and_says_so() -> None:
    recipe = _recipe("auto:100", calibration_samples=40)
    ctx = TrainContext(recipe, build_model(recipe.model), None, CPU, Distributed())  # e.g. `spikeforge import`
    with pytest.raises(ValueError, match="hybrid policy 'auto:100' needs the training data"):
        METHOD.prepare(ctx)
    static = _recipe("last:1")
    hook = METHOD.prepare(TrainContext(static, build_model(static.model), None, CPU, Distributed()))
    assert hook.sites == ["sn3"]
