"""The faster event runtime: every method equals the dense executor, integer mode is exact, streaming."""

from __future__ import annotations

import json
import warnings
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from reparam_models import B, T, make_hybrid, random_input

from spikeforge import layers as L
from spikeforge.models.common import Net
from spikeforge.neurons import NeuronConfig
from spikeforge.reparam import ConvertedModel, InputSpec, convert_model
from spikeforge.reparam.graph import ConvertedGraph
from spikeforge.runtime import (
    EventRuntime,
    RuntimeConfig,
    StreamingRuntime,
    conv_geometry,
    event_conv,
    event_linear,
    format_layers,
    integer_weights,
    native,
)
from spikeforge.runtime.kernels import SCATTER_CHUNK, weight_tiles

F64 = torch.float64
TOL = 1e-9
RATES = (0.01, 0.1, 0.4)
METHODS = ("csr", "scatter", "dense")
BIG = 2**52 + 1  # integer weights whose sums float32 (and even float64) would round


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize(("stride", "padding", "dilation", "kernel", "size"),
                         [(1, 1, 1, 3, 7), (2, 0, 2, 3, 9), (3, 2, 1, 4, 10), (2, 1, 1, 4, 8)])
def test_conv_methods_equal_conv2d_and_count_pairs(stride: int, padding: int, dilation: int, kernel: int,
                                                   size: int, rate: float) -> None:
    gen = torch.Generator().manual_seed(stride + 7 * kernel)
    x = (torch.rand(3, 4, size, size + 1, generator=gen) < rate).to(F64)
    w = torch.randn(6, 4, kernel, kernel, generator=gen, dtype=F64)
    b = torch.randn(6, generator=gen, dtype=F64)
    geom = conv_geometry((size, size + 1), (kernel, kernel), [stride] * 2, [padding] * 2, [dilation] * 2, x.device)
    ref = F.conv2d(x, w, b, stride, padding, dilation)
    bias_map = torch.randn(ref.shape[1:], generator=gen, dtype=F64)
    pairs = int(F.conv2d(x, torch.ones(1, 4, kernel, kernel, dtype=F64), None, stride, padding, dilation).sum())
    for method in METHODS:
        got, acc = event_conv(x, w, b, bias_map, [stride] * 2, [padding] * 2, [dilation] * 2, method=method,
                              geom=geom)
        torch.testing.assert_close(got, ref + bias_map, rtol=0, atol=TOL)
        assert acc == pairs * 6, method


@pytest.mark.parametrize("rate", RATES)
def test_linear_methods_equal_linear(rate: float) -> None:
    gen = torch.Generator().manual_seed(3)
    x = (torch.rand(9, 50, generator=gen) < rate).to(F64)
    w, b = torch.randn(40, 50, generator=gen, dtype=F64), torch.randn(40, generator=gen, dtype=F64)
    for method in METHODS:
        got, acc = event_linear(x, w, b, method=method)
        torch.testing.assert_close(got, F.linear(x, w, b), rtol=0, atol=TOL)
        assert acc == int(x.sum()) * 40
    tiled, acc = event_linear(x, w, b, tiles=weight_tiles(w.t().contiguous(), 16))  # 16 + 16 + 8 columns
    torch.testing.assert_close(tiled, F.linear(x, w, b), rtol=0, atol=TOL)


def test_unknown_kernel_method_is_refused() -> None:
    with pytest.raises(ValueError, match="csr, scatter, dense"):
        event_linear(torch.zeros(1, 2, dtype=F64), torch.zeros(3, 2, dtype=F64), None, method="fast")


def test_integer_accumulation_is_exact_beyond_float() -> None:
    """int64 sums of large integer weights equal Python's exact integers (float64 rounds them)."""
    gen = torch.Generator().manual_seed(5)
    n, fin, o = 4, 2 * SCATTER_CHUNK // 64 + 3, 3  # more pairs than one scatter chunk
    x = (torch.rand(n, fin, generator=gen) < 0.5).to(F64)
    w = torch.randint(-9, 10, (o, fin), generator=gen, dtype=torch.int64) + BIG
    bias = torch.tensor([1, -2, 3], dtype=torch.int64)
    got, _ = event_linear(x, w, bias, w.t().contiguous(), method="scatter")
    assert got.dtype == torch.int64
    rows, ws = x.to(torch.int64).tolist(), w.tolist()
    exact = [[sum(wo[i] for i in range(fin) if r[i]) + bias.tolist()[j] for j, wo in enumerate(ws)] for r in rows]
    assert got.tolist() == exact
    assert F.linear(x, w.to(F64)).tolist() != [[e - bb for e, bb in zip(r, bias.tolist(), strict=True)]
                                               for r in exact]  # float64 would have rounded
    xc = (torch.rand(2, 3, 5, 5, generator=gen) < 0.5).to(F64)
    wc = torch.randint(-9, 10, (2, 3, 3, 3), generator=gen, dtype=torch.int64) + BIG
    got_c, _ = event_conv(xc, wc, None, None, [1, 1], [1, 1], [1, 1], method="scatter")
    ref = F.conv2d(xc.to(torch.int64), wc, None, 1, 1)  # CPU int64 conv: exact
    assert torch.equal(got_c, ref)


def _int_mlp() -> Net:
    neuron = NeuronConfig(kind="if", threshold=1.0, reset="soft", backend="reference")
    net = Net(OrderedDict([("flatten", L.Flatten()), ("fc1", L.Linear(36, 40)), ("sn1", neuron.build()),
                           ("fc2", L.Linear(40, 40)), ("sn2", neuron.build()), ("fc3", L.Linear(40, 5))]))
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name in ("fc2", "fc3"):
            layer = net.get_submodule(name)
            layer.weight.copy_(torch.randint(-3, 4, layer.weight.shape, generator=gen).float())
            layer.bias.copy_(torch.randint(-3, 4, layer.bias.shape, generator=gen).float())
    return net


def _graph(net: Net) -> ConvertedGraph:
    return convert_model(net, InputSpec((1, 6, 6), T))


def test_runtime_uses_int_mode_for_integer_layers_and_reports_it() -> None:
    graph = _graph(_int_mlp())
    x = random_input((1, 6, 6), seed=4) * 4
    out, rep = EventRuntime(graph).run(x)
    torch.testing.assert_close(out, ConvertedModel(graph)(x), rtol=0, atol=TOL)
    methods = {c.name: c.method for c in rep.layers}
    assert methods["fc1"] == "analog" and methods["fc2"] == "int" and methods["fc3"] == "int"
    assert integer_weights(EventRuntime(graph)._layer(graph.node("fc2"), x.device).syn)
    off = EventRuntime(graph, config=RuntimeConfig(integer=False)).run(x)[1]
    assert "int" not in {c.method for c in off.layers}
    assert off.accumulations == rep.accumulations


def _scaled(graph: ConvertedGraph, factor: float) -> ConvertedGraph:
    for n in graph.nodes:
        if n.op == "neuron":
            n.attrs["threshold"] = n.attrs["threshold"] * factor
    return graph


@pytest.mark.parametrize("factor", [0.25, 4.0])
@pytest.mark.parametrize("name", ["mlp", "sdsnn", "resnet19_sew", "convnet_max"])
def test_every_method_equals_dense_with_equal_counts(name: str, factor: float) -> None:
    model, shape = make_hybrid(name, "lif_hard")
    graph = _scaled(convert_model(model, InputSpec(shape, T)), factor)
    x = random_input(shape, seed=11)
    dense = ConvertedModel(graph)(x)
    reports = {}
    for method in ("auto", *(("native",) if native.available() else ()), *METHODS):
        out, reports[method] = EventRuntime(graph, method=method).run(x)
        torch.testing.assert_close(out, dense, rtol=0, atol=TOL)
    counts = {m: [(c.accumulations, c.macs, c.events) for c in r.layers] for m, r in reports.items()}
    assert all(v == counts["auto"] for v in counts.values())
    assert all(r.unit_events == reports["auto"].unit_events for r in reports.values())
    assert {c.method for c in reports["dense"].layers} <= {"dense", "analog"}


def test_auto_picks_by_density_crossover() -> None:
    model, shape = make_hybrid("sdsnn", "lif_hard")
    graph = convert_model(model, InputSpec(shape, T))
    x = random_input(shape, seed=1)
    everywhere = RuntimeConfig(linear_crossover=1.0, conv_crossover=1.0, linear_full_outputs=1, conv_full_width=1,
                               min_sparse_channels=1, min_sparse_macs=0, linear_tile_density=0.0, kernel="torch")
    y_sparse, sparse = EventRuntime(graph, config=everywhere).run(x)
    torch.testing.assert_close(y_sparse, ConvertedModel(graph)(x), rtol=0, atol=TOL)  # tiled linear too
    never = RuntimeConfig(linear_crossover=0.0, conv_crossover=0.0, kernel="torch")
    dense = EventRuntime(graph, config=never).run(x)[1]
    assert {c.method for c in sparse.layers} <= {"sparse", "analog"} and "sparse" in {c.method for c in sparse.layers}
    assert {c.method for c in dense.layers} <= {"dense", "analog"}
    narrow = EventRuntime(graph, config=RuntimeConfig(conv_crossover=1.0, conv_full_width=1, min_sparse_macs=0,
                                                      min_sparse_channels=10**6, kernel="torch")).run(x)[1]
    ops = {n.name: n.op for n in graph.synaptic()}
    assert all(c.method in ("dense", "analog") for c in narrow.layers if ops[c.name] == "conv")


def test_index_builders_give_the_same_run_and_linear_reads_channels_last_spikes() -> None:
    torch.manual_seed(4)
    neuron = NeuronConfig(kind="if", threshold=0.5, reset="soft", backend="reference")
    model = Net(OrderedDict([("conv1", L.Conv2d(2, 12, 3, padding=1)), ("sn1", neuron.build()),
                             ("conv2", L.Conv2d(12, 9, 3, padding=1)), ("sn2", neuron.build()),
                             ("flatten", L.Flatten()), ("fc", L.Linear(9 * 5 * 6, 7))])).eval()
    shape = (2, 5, 6)
    graph = convert_model(model, InputSpec(shape, T))
    x = (torch.rand(T, B, *shape) < 0.3).to(F64)
    ref = ConvertedModel(graph)(x)
    runs = {}
    for indices in ("numpy", "torch"):
        rt = EventRuntime(graph, config=RuntimeConfig(method="csr", indices=indices))
        runs[indices] = rt.run(x)
        torch.testing.assert_close(runs[indices][0], ref, rtol=0, atol=TOL)
        # the sparse conv leaves its spikes channels-last: the linear layer after it reads them through
        # weight columns permuted once, not a copy of the spikes
        assert any(k.endswith("/hwc") for k in rt._layers), sorted(rt._layers)
    counts = {k: [(c.events, c.accumulations) for c in r[1].layers] for k, r in runs.items()}
    assert counts["numpy"] == counts["torch"]
    with pytest.raises(ValueError, match="index builder must be"):
        EventRuntime(graph, config=RuntimeConfig(indices="gpu")).run(x)


@pytest.mark.parametrize("name", ["sdsnn", "resnet19_sew", "mlp"])
def test_row_blocks_on_threads_equal_one_block(name: str) -> None:
    model, shape = make_hybrid(name, "lif_hard")
    graph = convert_model(model, InputSpec(shape, T))
    x = random_input(shape, seed=3)
    one = EventRuntime(graph, config=RuntimeConfig(method="csr", threads=1))
    blocks = EventRuntime(graph, config=RuntimeConfig(method="csr", threads=3, min_rows_per_thread=1))
    filters = list(warnings.filters)
    (y1, r1), (y3, r3) = one.run(x), blocks.run(x)
    assert warnings.filters == filters  # the row-block threads leave the process's warning filters alone
    torch.testing.assert_close(y3, y1, rtol=0, atol=TOL)
    torch.testing.assert_close(y3, ConvertedModel(graph)(x), rtol=0, atol=TOL)
    assert [(c.events, c.accumulations) for c in r3.layers] == [(c.events, c.accumulations) for c in r1.layers]
    assert blocks._pool_size == (3 if any(n.op == "conv" for n in graph.nodes) else 0)  # conv blocks only


@pytest.mark.parametrize(("name", "encoding"), [("sdsnn", "bitplane"), ("resnet19_sew", "analog"), ("mlp", "analog")])
def test_streaming_equals_whole_run_and_resets(name: str, encoding: str) -> None:
    model, shape = make_hybrid(name, "lif_hard")
    if encoding == "bitplane":
        spec = InputSpec(shape, T, "bitplane", (0.5,) * shape[0], (0.5,) * shape[0])
        gen = torch.Generator().manual_seed(1)
        x = torch.randint(0, 256, (B, *shape), generator=gen).to(F64).unsqueeze(0).expand(T, B, *shape)
    else:
        spec, x = InputSpec(shape, T), random_input(shape, seed=9)
    graph = convert_model(model, spec)
    runtime = EventRuntime(graph)
    whole, rep = runtime.run(x)
    stream = StreamingRuntime(runtime)
    steps = stream.run(x)
    torch.testing.assert_close(steps, whole, rtol=0, atol=TOL)
    assert stream.report.time_steps == T and stream.report.samples == B
    assert stream.report.accumulations == rep.accumulations
    assert [c.events for c in stream.report.layers] == [c.events for c in rep.layers]
    more = stream.step(x[0])  # continues: state kept, differs from a fresh first step in general
    stream.reset()
    assert stream.report.time_steps == 0 and not stream.state
    torch.testing.assert_close(stream.step(x[0]), whole[0], rtol=0, atol=TOL)
    assert more.shape == whole[0].shape
    with pytest.raises(ValueError, match="reset"):
        stream.step(x[0, :1])  # another batch size mid-stream


def test_streaming_spikes_are_exact() -> None:
    model, shape = make_hybrid("mlp", "lif_hard")
    graph = convert_model(model, InputSpec(shape, T))
    x = random_input(shape, seed=2)
    seen: dict[str, torch.Tensor] = {}
    ConvertedModel(graph)(x, lambda n, _xs, y: seen.__setitem__(n.name, y) if n.op == "neuron" else None)
    stream = StreamingRuntime(graph)
    got: dict[str, list[torch.Tensor]] = {}
    orig = stream._neuron

    def spy(node, h):  # noqa: ANN001, ANN202
        s = orig(node, h)
        got.setdefault(node.name, []).append(s[0])
        return s

    stream._neuron = spy  # type: ignore[method-assign]
    stream.run(x)
    assert seen and all(torch.equal(torch.stack(got[k]), v) for k, v in seen.items())


def test_report_has_time_method_and_serialises() -> None:
    model, shape = make_hybrid("sdsnn", "lif_hard")
    graph = convert_model(model, InputSpec(shape, T))
    _, rep = EventRuntime(graph).run(random_input(shape, seed=3))
    d = json.loads(json.dumps(rep.to_dict()))
    assert d["accumulations"] == rep.accumulations and len(d["layers"]) == len(rep.layers)
    assert all(lay["seconds"] > 0 and lay["method"] for lay in d["layers"])
    table = format_layers(rep)
    assert len(table) == 2 + len(rep.layers) and rep.layers[0].name in table[2]
