"""Building blocks of the reparameterization: planes, BN / pooling folds, the file format, errors."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from reparam_models import T, make_hybrid, random_input

from spikeforge import layers as L
from spikeforge.models.common import Net
from spikeforge.neurons import NeuronConfig
from spikeforge.reparam import (
    Batch,
    ConvertedModel,
    InputSpec,
    UnsupportedModelError,
    check_binary_inputs,
    convert_model,
    load_graph,
    save_graph,
    verify_models,
)
from spikeforge.reparam.fold import fold_avgpool_into_conv, fold_bn, fold_pools_into_linear, pool_kernel
from spikeforge.reparam.graph import ConvertedGraph, Node
from spikeforge.reparam.planes import from_planes, plane_count, to_planes
from spikeforge.runtime import EventRuntime

F64 = torch.float64
TOL = 1e-12


@pytest.mark.parametrize("coding", ["bitplane", "unary"])
@pytest.mark.parametrize("max_level", [1, 2, 3, 7, 15, 255])
def test_planes_round_trip(coding: str, max_level: int) -> None:
    n = torch.randint(0, max_level + 1, (2, 3, 4, 5, 5)).to(F64)
    planes = to_planes(n, max_level, coding)
    assert planes.shape[2] == 4 * plane_count(max_level, coding)
    assert bool(((planes == 0) | (planes == 1)).all())
    assert torch.equal(from_planes(planes, max_level, coding), n)
    assert plane_count(max_level, "bitplane") == (max_level + 1 - 1).bit_length()


def test_fold_bn_matches_batchnorm() -> None:
    conv = L.Conv2d(3, 5, 3, padding=1).double()
    bn = L.BatchNorm2d(5).double().eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.2, 2)
        bn.weight.uniform_(-2, 2)
        bn.bias.uniform_(-1, 1)
    w, b = fold_bn(conv.weight, conv.bias, bn)
    x = torch.randn(2, 4, 3, 6, 6, dtype=F64)
    ref = bn(conv(x))
    got = F.conv2d(x.flatten(0, 1), w, b, padding=1).unflatten(0, (2, 4))
    torch.testing.assert_close(got, ref, rtol=0, atol=TOL)


@pytest.mark.parametrize(("size", "stride", "padding"), [((8, 8), 1, 1), ((7, 9), 1, 1), ((9, 6), 2, 0),
                                                          ((10, 10), 2, 2)])
def test_fold_avgpool_into_conv(size: tuple[int, int], stride: int, padding: int) -> None:
    """conv(avgpool_2(x)) == conv'(crop(x)) — including sizes the pool does not tile (cropped)."""
    conv = torch.nn.Conv2d(3, 4, 3, stride=stride, padding=padding, bias=False).double()
    pool = torch.nn.AvgPool2d(2)
    x = torch.randn(2, 3, *size, dtype=F64)
    ref = conv(pool(x))
    w, geom = fold_avgpool_into_conv(conv.weight.detach(), pool_kernel(pool, size), [stride] * 2, [padding] * 2,
                                     [1, 1], size)
    crop = x[..., : geom["crop"][0], : geom["crop"][1]]
    got = F.conv2d(crop, w, None, geom["stride"], geom["padding"], geom["dilation"])
    torch.testing.assert_close(got, ref, rtol=0, atol=TOL)


def test_fold_pools_into_linear() -> None:
    shape = (3, 6, 6)
    ops = [L.AvgPool2d(2), L.AdaptiveAvgPool2d(1), L.Flatten()]
    w = torch.randn(5, 3, dtype=F64)
    x = torch.randn(1, 4, *shape, dtype=F64)
    ref = x
    for op in ops:
        ref = op(ref)
    ref = ref @ w.t()
    kernels = [pool_kernel(ops[0], (6, 6)), pool_kernel(ops[1], (3, 3))]
    got = x.flatten(2) @ fold_pools_into_linear(w, kernels, shape).t()
    torch.testing.assert_close(got, ref, rtol=0, atol=TOL)


def test_save_load_round_trip(tmp_path: Path) -> None:
    model, shape = make_hybrid("resnet19_sew", "plif_hard")
    graph = convert_model(model, InputSpec(shape, T))
    save_graph(graph, tmp_path)
    loaded = load_graph(tmp_path)
    assert [n.name for n in loaded.nodes] == [n.name for n in graph.nodes]
    x = random_input(shape, seed=2)
    assert torch.equal(ConvertedModel(loaded)(x), ConvertedModel(graph)(x))
    assert not list(tmp_path.glob("*.pt")) and not list(tmp_path.glob("*.pkl"))


def test_binary_check_catches_a_non_binary_layer() -> None:
    """Rewire one synaptic layer to read a site's real input instead of its threshold units: it is named."""
    model, shape = make_hybrid("sdsnn", "lif_hard", "all")
    graph = convert_model(model, InputSpec(shape, T))
    x = random_input(shape, seed=6)
    assert check_binary_inputs(graph, x) == []
    victim = next(n for n in graph.synaptic() if graph.node(n.inputs[0]).op == "threshold")
    units = len(victim.inputs)
    victim.inputs = [graph.node(victim.inputs[0]).inputs[0]]  # the membrane the units read
    victim.attrs["sources"] = victim.attrs["sources"][:1]
    victim.tensors["weight"] = victim.tensors["weight"].chunk(units, dim=1)[0]
    assert check_binary_inputs(graph, x) == [victim.name]


def test_analog_first_layer_is_reported_not_hidden() -> None:
    model, shape = make_hybrid("mlp", "lif_hard")
    graph = convert_model(model, InputSpec(shape, T))
    first = graph.synaptic()[0]
    assert first.attrs["analog_input"] and not any(n.attrs["analog_input"] for n in graph.synaptic()[1:])
    first.attrs["analog_input"] = False  # pretend it is an ordinary layer: the check must flag it
    assert check_binary_inputs(graph, random_input(shape, seed=1)) == [first.name]


def _net(*mods: tuple[str, torch.nn.Module]) -> Net:
    return Net(OrderedDict(mods))


def test_unsupported_structures_raise() -> None:
    neuron = NeuronConfig(backend="reference")
    spec = InputSpec((2, 4, 4), T)
    with pytest.raises(UnsupportedModelError, match="GELU"):
        convert_model(_net(("conv", L.Conv2d(2, 3, 3)), ("act", torch.nn.GELU())), spec)
    with pytest.raises(UnsupportedModelError, match="batch norm"):
        bn_after_spikes = _net(("conv", L.Conv2d(2, 3, 3)), ("sn", neuron.build()), ("bn", L.BatchNorm2d(3)))
        convert_model(bn_after_spikes, spec)
    with pytest.raises(UnsupportedModelError, match="real-valued"):
        convert_model(_net(("conv", L.Conv2d(2, 3, 3)), ("conv2", L.Conv2d(3, 3, 1))), spec)


def test_verifier_reports_a_changed_spike() -> None:
    """Perturb one neuron's threshold in the converted graph: the verifier must see the difference."""
    model, shape = make_hybrid("sdsnn", "lif_hard", "every2")
    graph = convert_model(model, InputSpec(shape, T))
    x = random_input(shape, seed=12)
    victim = next(n for n in graph.nodes if n.op == "neuron")
    victim.attrs["threshold"] *= 1.5
    res = verify_models(model, graph, [Batch(x, x)])
    assert res["site_mismatches"][victim.name] > 0 and res["spike_flips"] > 0
    assert res["max_abs_logit_diff"] > 1e-9 and not res["exact"]


def test_format1_graphs_still_load_and_run(tmp_path: Path) -> None:
    """A converted directory of format 1 (quantize + planes nodes) runs as before and is reported non-neuron."""
    gen = torch.Generator().manual_seed(0)
    w1, b1 = torch.randn(5, 4, generator=gen, dtype=F64), torch.randn(5, generator=gen, dtype=F64)
    w2 = torch.randn(3, 5, generator=gen, dtype=F64)
    step, levels = 0.5, 3
    nodes = [Node("input", "input", [], {"encoding": "analog", "shape": [4]}),
             Node("fc1", "linear", ["input"], {}, {"weight": w1, "bias": b1}),
             Node("sr", "quantize", ["fc1"], {"step": step, "levels": levels}),
             Node("sr:planes", "planes", ["sr"], {"coding": "bitplane", "max_level": levels, "planes": 2}),
             Node("fc2", "linear", ["sr:planes"], {}, {"weight": torch.cat([step * w2, 2 * step * w2], 1)}),
             Node("output", "output", ["fc2"], {"scales": [1.0]})]
    save_graph(ConvertedGraph(nodes, {"format": "spikeforge.converted/1"}), tmp_path)
    assert '"spikeforge.converted/1"' in (tmp_path / "graph.json").read_text()
    graph = load_graph(tmp_path)
    x = torch.randn(2, 3, 4, generator=gen, dtype=F64)
    ref = (step * torch.round((x @ w1.t() + b1) / step).clamp(0, levels)) @ w2.t()
    torch.testing.assert_close(ConvertedModel(graph)(x), ref, rtol=0, atol=TOL)
    y, _ = EventRuntime(graph).run(x)
    torch.testing.assert_close(y, ref, rtol=0, atol=TOL)
    assert graph.non_neuron() == ["sr", "sr:planes"]
