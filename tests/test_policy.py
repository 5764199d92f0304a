"""Site policies: static specs, globs, errors, apply_hybrid and the auto search."""

from __future__ import annotations

import pytest
import torch

from spikeforge.hybrid.policy import (
    AutoConfig,
    Calibration,
    apply_hybrid,
    auto_select,
    evaluate_sites,
    parse_budget,
    parse_spec,
    select_sites,
)
from spikeforge.hybrid.spiking_relu import SpikingReLU
from spikeforge.models import ModelConfig, build_model, neuron_sites
from spikeforge.neurons import NeuronConfig, SpikingNeuron
from spikeforge.train.metrics import ce_loss

SDSNN = ["sn1", "sn2", "sn3"]


@pytest.fixture(scope="module")
def sdsnn() -> torch.nn.Module:
    return build_model(ModelConfig(name="sdsnn_convnet", width=0.125))


@pytest.fixture(scope="module")
def resnet() -> torch.nn.Module:
    return build_model(ModelConfig(name="resnet19", width=0.125, in_channels=3, input_size=32))


@pytest.mark.parametrize(("spec", "expected"), [
    ("none", []), ("", []), ("all", SDSNN), ("last:1", ["sn3"]), ("last:3", SDSNN),
    ("first:2", ["sn1", "sn2"]),
    ("every:2", ["sn1", "sn3"]), ("every:2@1", ["sn2"]), ("every:1", SDSNN), ("sn3, sn1", ["sn1", "sn3"]),
    ("sn?", SDSNN), ("sn[12]", ["sn1", "sn2"]),
])
def test_static_specs_on_sdsnn(sdsnn: torch.nn.Module, spec: str, expected: list[str]) -> None:
    assert select_sites(sdsnn, spec) == expected


def test_static_specs_on_resnet19(resnet: torch.nn.Module) -> None:
    names = list(neuron_sites(resnet))
    assert len(names) == 18 and names[0] == "stem.sn" and names[-1] == "sn_fc"
    assert select_sites(resnet, "last:2") == ["layer3.1.sn2", "sn_fc"]
    assert select_sites(resnet, "first:1") == ["stem.sn"]
    assert select_sites(resnet, "every:6") == [names[0], names[6], names[12]]
    layer3 = ["layer3.0.sn1", "layer3.0.sn2", "layer3.1.sn1", "layer3.1.sn2"]
    assert select_sites(resnet, "layer3.*") == layer3
    firsts = ["layer1.0.sn1", "layer2.0.sn1", "layer3.0.sn1", "sn_fc"]
    assert select_sites(resnet, "layer?.0.sn1,sn_fc") == firsts
    assert select_sites(resnet, "all") == names


@pytest.mark.parametrize(("spec", "message"), [
    ("last:0", "positive integer"), ("last:x", "positive integer"), ("first:", "positive integer"),
    ("first:4", "only 3 sites"), ("every:0", "positive integer"), ("every:2@2", "offset"),
    ("every:5@4", "past the last"), ("foo:1", "unknown policy"), ("none:1", "unknown policy"),
    ("auto:abc", "budget"), ("auto:-1", "budget"), ("auto:", "budget"), ("sn9", "matches no neuron site"),
    ("sn1,,sn2", "empty site name"), ("auto:0.2", "needs calibration"),
])
def test_bad_specs(sdsnn: torch.nn.Module, spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        select_sites(sdsnn, spec)


def test_budget_parsing() -> None:
    assert parse_budget("0.25", "s") == (0.25, True)
    assert parse_budget("25%", "s") == (0.25, True)
    assert parse_budget("2.5M", "s") == (2.5e6, False)
    assert parse_budget("3k", "s") == (3000.0, False)
    assert parse_budget("1e-1", "s") == (0.1, True)
    assert parse_spec("auto:40%").needs_data and not parse_spec("last:1").needs_data


def test_apply_hybrid_replaces_exactly_those() -> None:
    model = build_model(ModelConfig(name="resnet19", width=0.125, in_channels=3))
    before = neuron_sites(model)
    chosen = ["layer1.0.sn1", "layer2.2.sn2", "sn_fc"]
    assert apply_hybrid(model, chosen, levels=7) is model
    after = neuron_sites(model)
    assert list(after) == list(before)  # same names, same order
    for name, site in after.items():
        if name in chosen:
            assert isinstance(site, SpikingReLU) and site.levels == 7
        else:
            assert site is before[name] and isinstance(site, SpikingNeuron)
    y = model(torch.rand(2, 1, 3, 32, 32))
    assert y.shape == (2, 1, 10)
    with pytest.raises(ValueError, match="already a SpikingReLU"):
        apply_hybrid(model, ["sn_fc"], 7)
    with pytest.raises(ValueError, match="not a neuron site"):
        apply_hybrid(model, ["layer1.0.conv1"], 7)
    with pytest.raises(ValueError, match="duplicate"):
        apply_hybrid(model, ["stem.sn", "stem.sn"], 7)
    assert apply_hybrid(model, [], 7) is model


# ---- auto -------------------------------------------------------------------------------------

T_CAL = 2


SIDE = 14  # small synthetic images keep the search cheap


def _batch(gen: torch.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Learnable synthetic digits: class c lights rows c..c+4, plus noise."""
    y = torch.randint(0, 10, (n,), generator=gen)
    proto = torch.zeros(10, 1, SIDE, SIDE)
    for c in range(10):
        proto[c, 0, c:c + 4] = 1.0
    x = proto[y] * 0.8 + 0.2 * torch.rand(n, 1, SIDE, SIDE, generator=gen)
    return x.unsqueeze(0).expand(T_CAL, -1, -1, -1, -1).contiguous(), y


@pytest.fixture(scope="module")
def calibration() -> Calibration:
    gen = torch.Generator().manual_seed(1)
    return Calibration(fit=[_batch(gen, 16), _batch(gen, 16)], eval=[_batch(gen, 32)],
                       loss_fn=lambda out, y: ce_loss(out, y, 0.0),
                       make_optimizer=lambda ps: torch.optim.Adam(ps, lr=3e-3))


@pytest.fixture(scope="module")
def auto_model() -> torch.nn.Module:
    torch.manual_seed(0)
    neuron = NeuronConfig(kind="lif", beta=0.2, threshold=0.5, surrogate="rectangle", backend="reference")
    return build_model(ModelConfig(name="sdsnn_convnet", width=0.25, input_size=SIDE, neuron=neuron))


AUTO = AutoConfig(steps=3, seed=0)


@pytest.fixture(scope="module")
def generous(auto_model: torch.nn.Module, calibration: Calibration):  # noqa: ANN201
    return auto_select(auto_model, parse_spec("auto:100"), 15, calibration, AUTO)


def test_auto_is_deterministic_and_leaves_model_and_rng_alone(auto_model: torch.nn.Module,
                                                               calibration: Calibration, generous) -> None:  # noqa: ANN001
    weights = {k: v.clone() for k, v in auto_model.state_dict().items()}
    rng = torch.get_rng_state()
    again = auto_select(auto_model, parse_spec("auto:100"), 15, calibration, AUTO)
    assert again.to_dict() == generous.to_dict()
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, weights[k]) for k, v in auto_model.state_dict().items())
    assert not any(isinstance(s, SpikingReLU) for s in neuron_sites(auto_model).values())


def test_auto_generous_budget_picks_beneficial_sites(auto_model: torch.nn.Module, calibration: Calibration,
                                                     generous) -> None:  # noqa: ANN001
    assert generous.sites, "a ReLU site should lower the calibration loss on learnable data"
    assert generous.base.sops > 0
    # each pick was the feasible candidate with the best benefit per SOP of its round
    assert sorted(generous.order) == sorted(generous.sites)
    for site, rnd in zip(generous.order, generous.rounds, strict=False):
        feasible = [c for c in rnd if c["feasible"]]
        best = max(feasible, key=lambda c: c["ratio"])
        assert best["site"] == site and best["benefit"] > 0
    # the reported final trial is reproducible by evaluate_sites
    final = evaluate_sites(auto_model, generous.sites, 15, calibration, AUTO)
    last = [c for c in generous.rounds[len(generous.order) - 1] if c["site"] == generous.order[-1]][0]
    assert final.sops == pytest.approx(last["sops"]) and final.loss == pytest.approx(last["loss"])


@pytest.mark.parametrize("budget", ["auto:0", "auto:5%", "auto:20k"])
def test_auto_respects_budget(auto_model: torch.nn.Module, calibration: Calibration, budget: str) -> None:
    spec = parse_spec(budget)
    res = auto_select(auto_model, spec, 15, calibration, AUTO)
    expected_budget = spec.budget * res.base.sops if spec.relative else spec.budget
    assert res.budget_sops == pytest.approx(expected_budget)
    if res.sites:
        final = evaluate_sites(auto_model, res.sites, 15, calibration, AUTO)
        assert final.sops - res.base.sops <= res.budget_sops
    # every rejected candidate in the last round was over budget or not beneficial
    for c in res.rounds[-1]:
        assert not c["feasible"]
        assert c["sops"] - res.base.sops > res.budget_sops or c["benefit"] <= 0


def test_auto_max_sites_and_select_sites(auto_model: torch.nn.Module, calibration: Calibration) -> None:
    cfg = AutoConfig(steps=3, seed=0, max_sites=1)
    sites = select_sites(auto_model, "auto:100", 15, calibration, cfg)
    assert len(sites) <= 1
    with pytest.raises(ValueError, match="no fit or no eval"):
        auto_select(auto_model, parse_spec("auto:1"), 15, Calibration([], [], calibration.loss_fn,
                                                                        calibration.make_optimizer))


def test_auto_on_resnet19_respects_budget() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="resnet19", width=0.125, in_channels=3, input_size=8,
                                    neuron=NeuronConfig(backend="reference")))
    gen = torch.Generator().manual_seed(2)
    y = torch.arange(8) % 10
    x = torch.rand(1, 8, 3, 8, 8, generator=gen) + y.view(1, 8, 1, 1, 1) / 10  # brightness encodes the class
    cal = Calibration(fit=[(x, y)], eval=[(x, y)], loss_fn=lambda out, t: ce_loss(out, t, 0.0),
                      make_optimizer=lambda ps: torch.optim.SGD(ps, lr=0.05))
    cfg = AutoConfig(steps=1, seed=0, max_sites=1)
    res = auto_select(model, parse_spec("auto:50%"), 15, cal, cfg)
    assert len(res.rounds[0]) == 18 and len(res.sites) <= 1
    for c in res.rounds[0]:
        assert c["feasible"] == (c["benefit"] > 0 and c["sops"] - res.base.sops <= res.budget_sops)
