"""Converted graph == hybrid in float64, for random small models of every supported block type."""

from __future__ import annotations

import pytest
import torch
from reparam_models import (
    LEVELS,
    B,
    T,
    make_hybrid,
    random_input,
    site_outputs,
    spiking_sites,
)

from spikeforge.hybrid.spiking_relu import SpikingReLU
from spikeforge.models import neuron_sites
from spikeforge.reparam import Batch, ConvertedModel, InputSpec, convert_model, verify_models
from spikeforge.reparam.verify import LOGIT_TOLERANCE

MIN_DISTINCT_LEVELS = 3  # a SpikingReLU site must output at least this many different levels
PIXEL_MEAN, PIXEL_STD = 0.4, 0.6

# (model, neuron, sites): every block type, each neuron kind, SpikingReLU at some / all / no sites
CASES = [
    ("mlp", "lif_hard", "every2"),
    ("mlp", "if_soft", "all"),
    ("convnet_avg", "plif_hard", "every2"),
    ("convnet_max", "lif_hard", "every2"),
    ("sdsnn", "if_soft", "every2"),
    ("sdsnn", "plif_hard", "none"),
    ("sdsnn_out", "lif_hard", "all"),  # the output itself is a SpikingReLU: logits s·q
    ("resnet19_standard", "lif_hard", "every2"),
    ("resnet19_sew", "if_soft", "every2"),
    ("resnet19_sew", "lif_hard", "all"),
    ("resnet19_ms", "plif_hard", "every2"),
    ("resnet18_sew", "plif_hard", "every2"),
    ("resnet18_ms", "lif_hard", "every2"),
]


def _assert_active(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Precondition: every site is active, SpikingReLU levels are varied, spikes are not saturated."""
    outs = site_outputs(model, x)
    sites = neuron_sites(model)
    fired = 0
    for name, y in outs.items():
        if isinstance(sites[name], SpikingReLU):
            levels = torch.unique(torch.round(y / sites[name].step.abs()))
            assert levels.numel() >= MIN_DISTINCT_LEVELS, (name, levels)
        fired += int(bool((y != 0).any()))
    assert fired >= len(outs) - 1, "almost every site must fire for the test to mean something"
    for name in spiking_sites(model):
        assert float(outs[name].mean()) < 1.0, f"{name} saturated"


def _pixels(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    p = torch.randint(0, 256, (B, *shape), generator=gen).to(torch.float64)
    return p.unsqueeze(0).expand(T, *p.shape).contiguous()


@pytest.mark.parametrize(("name", "neuron", "sites"), CASES)
def test_converted_equals_hybrid(name: str, neuron: str, sites: str) -> None:
    model, shape = make_hybrid(name, neuron, sites)
    x = random_input(shape, seed=11)
    _assert_active(model, x)
    graph = convert_model(model, InputSpec(shape, T))
    res = verify_models(model, graph, [Batch(x, x), Batch(2.0 * x, 2.0 * x)])
    assert res["max_abs_logit_diff"] <= LOGIT_TOLERANCE
    assert res["argmax_agreement"] == 1.0
    assert res["spike_flips"] == 0, res["site_mismatches"]
    first = graph.synaptic()[0].name
    assert res["binary_hidden_inputs"] and res["first_non_binary"] == first  # only the analog first layer
    assert not res["binary_inputs"] and res["analog_input_layers"] == [first]
    assert res["exact"]
    cert = res["certificate"]
    assert cert["certified"] and cert["guarantee"] in ("certified", "exact-arithmetic"), cert
    assert cert["margin"] > cert["max_bound"] and res["max_abs_logit_diff"] <= cert["logit_bound"]
    # only neurons and threshold units (the ms ResNet-18 max-pools a membrane: named, not hidden)
    assert res["neuron_only"] == (name != "resnet18_ms"), res["non_neuron_nodes"]
    assert not any(n.op in ("quantize", "planes") for n in graph.nodes)
    if sites != "none":  # SpikingReLU sites feed their consumers through threshold units
        assert any(n.op == "threshold" and n.attrs["role"] == "level" for n in graph.nodes)


@pytest.mark.parametrize(("name", "neuron", "coding"), [
    ("mlp", "lif_hard", "bitplane"),
    ("sdsnn", "lif_hard", "unary"),
    ("convnet_avg", "if_soft", "bitplane"),
    ("resnet19_standard", "plif_hard", "bitplane"),
    ("resnet18_sew", "lif_hard", "unary"),
])
def test_bitplane_input_is_exact_and_all_binary(name: str, neuron: str, coding: str) -> None:
    """8-bit pixels as 8 planes; normalisation folded (bias map handles the zero padding)."""
    model, shape = make_hybrid(name, neuron)
    pix = _pixels(shape, seed=3)
    hyb_in = (pix / 255.0 - PIXEL_MEAN) / PIXEL_STD
    c = shape[0]
    spec = InputSpec(shape, T, "bitplane", (PIXEL_MEAN,) * c, (PIXEL_STD,) * c)
    graph = convert_model(model, spec, coding=coding)
    res = verify_models(model, graph, [Batch(hyb_in, pix)])
    assert res["max_abs_logit_diff"] <= LOGIT_TOLERANCE and res["argmax_agreement"] == 1.0
    assert res["spike_flips"] == 0 and res["certificate"]["certified"]
    assert res["binary_inputs"] and res["analog_input_layers"] == []
    assert res["macs"] == 0.0 and res["sops"] > 0  # even the first layer only accumulates
    pixel_units = [n for n in graph.nodes if n.op == "threshold" and n.inputs[0] == "input"]
    assert len(pixel_units) == 8  # the pixels' bit planes come from threshold units
    first = graph.synaptic()[0]
    if first.op == "conv" and any(first.attrs["padding"]):
        bias_map = first.tensors["bias_map"]
        # border outputs see zero padding, not the normalised zero pixel: not a constant per channel
        assert float((bias_map - bias_map[:, 1:2, 1:2]).abs().max()) > 0.0


def test_unary_and_bitplane_unit_counts() -> None:
    model, shape = make_hybrid("sdsnn", "lif_hard", "all")
    for coding, planes in (("bitplane", LEVELS.bit_length()), ("unary", LEVELS)):
        graph = convert_model(model, InputSpec(shape, T), coding=coding)
        per_site: dict[str, int] = {}
        for n in graph.nodes:
            if n.op == "threshold":
                per_site[n.attrs["site"]] = per_site.get(n.attrs["site"], 0) + 1
        assert set(per_site) == {"sn1", "sn2", "sn3"} and set(per_site.values()) == {planes}
        x = random_input(shape, seed=4)
        torch.testing.assert_close(ConvertedModel(graph)(x), model(x), rtol=0.0, atol=LOGIT_TOLERANCE)


def test_sew_sums_become_integer_units() -> None:
    """SEW adds of spikes are integer (0..M) and reach the next layer only through threshold units."""
    model, shape = make_hybrid("resnet19_sew", "lif_hard", "none")
    graph = convert_model(model, InputSpec(shape, T))
    adds = [n for n in graph.nodes if n.op == "add"]
    units = [n for n in graph.nodes if n.op == "threshold" and n.attrs["role"] == "count"]
    assert adds and units
    assert max(u.attrs["levels"] for u in units) >= 3  # sums of sums of spikes grow
    unary = convert_model(model, InputSpec(shape, T), coding="unary")  # unary: the spike terms stay apart
    assert not any(n.op in ("add", "threshold") for n in unary.nodes)
    x = random_input(shape, seed=8)
    torch.testing.assert_close(ConvertedModel(graph)(x), model(x), rtol=0.0, atol=LOGIT_TOLERANCE)
