"""Compaction: removing dead neurons (and their BN channels and outgoing synapses) preserves outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from develop_helpers import synthetic_splits, tiny_config, tiny_model, tiny_recipe

from spikeforge.cli import main as cli_main
from spikeforge.develop.chain import chain_children, index_plan, resize
from spikeforge.develop.compact import REPORT, compact_run, compact_state, param_count
from spikeforge.develop.development import equip
from spikeforge.develop.masking import is_masked, sync_gates
from spikeforge.develop.pruning import prune_neurons
from spikeforge.hybrid.config import HybridConfig
from spikeforge.hybrid.spiking_relu import SpikingReLU
from spikeforge.models import build_model, neuron_sites, replace_module
from spikeforge.train.engine import evaluate_model, train
from spikeforge.train.rundir import load_run

TOL = 1e-9


def _developed(name: str, hybrid: bool = False) -> tuple[torch.nn.Module, list[str]]:
    model = tiny_model(name)
    if hybrid:
        for site in list(neuron_sites(model))[:2]:
            relu = SpikingReLU(levels=15, init_step=0.05)
            relu.initialized.fill_(True)
            replace_module(model, site, relu)
    names = ["conv2", "fc1"] if name == "sdsnn_convnet" else ["conv1", "conv3", "conv6", "fc1"]
    bn_of = equip(model, names)
    torch.manual_seed(1)
    for n in names:
        layer = model.get_submodule(n)
        with torch.no_grad():
            layer.range_hi.uniform_(0.1, 1.0)
        prune_neurons(layer, 50.0)
        dead = torch.nonzero(layer.weight_mask.flatten(1).sum(1) == 0).flatten()
        layer.weight_mask.mul_((torch.rand_like(layer.weight_mask) > 0.2).float())  # single masked synapses
        layer.weight_mask[dead[0], 0] = 1  # a regenerated synapse keeps one pruned neuron alive
    sync_gates(model, bn_of)
    with torch.no_grad():  # non-trivial batch-norm statistics
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.bias.uniform_(0.0, 1.0)
    return model.eval(), names


@pytest.mark.parametrize(("name", "hybrid"), [("sdsnn_convnet", False), ("cifar_convnet", False),
                                              ("sdsnn_convnet", True)])
def test_compacted_model_computes_the_same_outputs(name: str, hybrid: bool) -> None:
    model, names = _developed(name, hybrid)
    widths, state = compact_state(model)
    assert set(widths) == set(names)
    for n in names:
        alive = int((model.get_submodule(n).weight_mask.flatten(1).sum(1) > 0).sum())
        assert widths[n] == alive < model.get_submodule(n).weight.shape[0]
    small = tiny_model(name, seed=5)
    if hybrid:
        for site in list(neuron_sites(small))[:2]:
            replace_module(small, site, SpikingReLU(levels=15))
    resize(small, widths)
    small.load_state_dict(state)  # strict: the rebuilt structure matches exactly
    assert param_count(small) < param_count(build_model(tiny_config(name)))
    torch.manual_seed(2)
    cfg = tiny_config(name)
    x = (torch.rand(6, 8, cfg.in_channels, cfg.input_size, cfg.input_size) < 0.5).double()
    with torch.no_grad():
        ref = model.double()(x)
        out = small.eval().double()(x)
    assert float(ref.detach().abs().sum()) > 0  # the check is not vacuous
    assert float((ref - out).abs().max()) <= TOL


def test_flatten_keeps_the_whole_spatial_block_of_a_kept_channel() -> None:
    model = tiny_model()
    keep = {"conv2": torch.tensor([0, 2])}
    plan = {s.name: s for s in index_plan(model, keep)}
    block = model.fc1.in_features // model.conv2.out_channels
    expected = torch.cat([torch.arange(block), 2 * block + torch.arange(block)])
    assert torch.equal(plan["fc1"].in_idx, expected)


def test_output_layer_cannot_shrink_and_residual_models_are_refused() -> None:
    model = tiny_model()
    with pytest.raises(ValueError, match="output layer"):
        index_plan(model, {"fc2": torch.tensor([0])})
    cfg = tiny_config()
    cfg.name, cfg.in_channels, cfg.width = "resnet19", 3, 1 / 64
    with pytest.raises(NotImplementedError, match="chain"):
        chain_children(build_model(cfg))


@pytest.fixture(scope="module", params=[False, True], ids=["snn", "hybrid"])
def developed_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("develop") / "run"
    train(tiny_recipe(4, hybrid=request.param), run_dir, quiet=True, splits=synthetic_splits())
    return run_dir


def test_compact_run_writes_a_smaller_verified_run(developed_run: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import spikeforge.data
    import spikeforge.develop.compact as compact_mod

    monkeypatch.setattr(spikeforge.data, "load_dataset", lambda cfg, root=None: synthetic_splits())
    seen: list[int] = []
    batches = compact_mod.encoded_test_batches

    def spy(*args: object, **kw: object):  # noqa: ANN202
        for x, y in batches(*args, **kw):  # type: ignore[arg-type]
            seen.append(int(x.shape[1]))
            yield x, y

    monkeypatch.setattr(compact_mod, "encoded_test_batches", spy)
    out = tmp_path / "compact"
    assert cli_main(["compact", str(developed_run), "--out", str(out), "--json", "--samples", "32",
                     "--batch-size", "12"]) == 0
    rep = json.loads((out / REPORT).read_text())
    assert seen == [12, 12, 8] and rep["samples"] == 32 and rep["batch_size"] == 12  # bounded batches
    assert rep["peak_rss_mb"] > 0
    assert rep["max_abs_output_diff"] <= TOL
    assert rep["params_after"] < rep["params_before"] and rep["compression_rate"] > 0
    assert rep["widths_after"]["fc1"] < rep["widths_before"]["fc1"]
    assert rep["sample_accuracy_after"] == rep["sample_accuracy_before"]
    assert rep["ops_after"]["energy_pj"] < rep["ops_before"]["energy_pj"]
    assert rep["ops_after"]["macs"] <= rep["ops_before"]["macs"]
    src, dst = load_run(developed_run), load_run(out)
    assert dst.method_meta("develop")["widths"] == rep["widths_after"]  # kept widths: run metadata, not recipe
    assert dst.recipe == src.recipe
    assert not any(is_masked(m) for m in dst.model.modules())
    assert dst.model.fc1.out_features == rep["widths_after"]["fc1"]
    assert type(dst.model.sn1) is type(src.model.sn1)  # hybrid sites are kept
    assert (src.recipe.section(HybridConfig) is None) != isinstance(dst.model.sn1, SpikingReLU)
    splits = synthetic_splits()
    info, data = splits.info, src.recipe.data
    cpu = torch.device("cpu")
    before = evaluate_model(src.model, splits.test, info, data, 16, cpu, seed=0, loss_name="mse_rate")
    after = evaluate_model(dst.model, splits.test, info, data, 16, cpu, seed=0, loss_name="mse_rate")
    assert after["accuracy"] == before["accuracy"]
    with pytest.raises(FileExistsError):
        compact_run(developed_run, out, splits=splits)


def test_develop_compact_convert_chain(developed_run: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """develop (hybrid or SNN) → compact → convert: the converted graph equals the compacted model."""
    import spikeforge.data
    from spikeforge.reparam import convert_run, verify

    monkeypatch.setattr(spikeforge.data, "load_dataset", lambda cfg, root=None: synthetic_splits())
    compacted = tmp_path / "compact"
    rep = compact_run(developed_run, compacted, splits=synthetic_splits(), count_energy=False)
    convert_run(compacted, tmp_path / "converted")
    res = verify(tmp_path / "converted")
    assert res["exact"] and res["max_abs_logit_diff"] <= TOL and res["argmax_agreement"] == 1.0
    assert res["samples"] == rep["samples"] and res["hybrid_accuracy"] == rep["sample_accuracy_after"]
