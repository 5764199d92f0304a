"""The event-driven runtime equals the dense converted model and counts exactly the verifier's SOPs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from reparam_models import B, T, make_hybrid, random_input

from spikeforge.energy import count_ops
from spikeforge.reparam import Batch, ConvertedModel, InputSpec, convert_model, verify_models
from spikeforge.runtime import EventRuntime, event_conv, event_linear

F64 = torch.float64
TOL = 1e-9
SPIKE_RATE = 0.2


@pytest.mark.parametrize("method", ["csr", "scatter"])
@pytest.mark.parametrize(("stride", "padding", "dilation", "size"), [(1, 1, 1, 7), (2, 1, 1, 8), (2, 0, 2, 9),
                                                                     (3, 2, 1, 10)])
def test_event_conv_matches_conv2d(stride: int, padding: int, dilation: int, size: int, method: str) -> None:
    gen = torch.Generator().manual_seed(stride * 10 + padding)
    x = (torch.rand(3, 4, size, size, generator=gen) < SPIKE_RATE).to(F64)
    w = torch.randn(5, 4, 3, 3, generator=gen, dtype=F64)
    b = torch.randn(5, generator=gen, dtype=F64)
    got, acc = event_conv(x, w, b, None, [stride] * 2, [padding] * 2, [dilation] * 2, method=method)
    ref = F.conv2d(x, w, b, stride, padding, dilation)
    torch.testing.assert_close(got, ref, rtol=0, atol=TOL)
    taps = F.conv2d(x, torch.ones(1, 4, 3, 3, dtype=F64), None, stride, padding, dilation)
    assert acc == int(taps.sum()) * 5  # C_out per (event, tap reaching an output)


@pytest.mark.parametrize("method", ["csr", "scatter"])
def test_event_linear_matches_linear(method: str) -> None:
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(6, 30, generator=gen) < SPIKE_RATE).to(F64)
    w, b = torch.randn(7, 30, generator=gen, dtype=F64), torch.randn(7, generator=gen, dtype=F64)
    got, acc = event_linear(x, w, b, method=method)
    torch.testing.assert_close(got, F.linear(x, w, b), rtol=0, atol=TOL)
    assert acc == int(x.sum()) * 7


@pytest.mark.parametrize(("name", "encoding"), [("mlp", "analog"), ("sdsnn", "bitplane"),
                                                ("convnet_max", "analog"), ("resnet19_sew", "analog"),
                                                ("resnet18_ms", "bitplane")])
def test_runtime_equals_dense_and_counts_equal_verifier(name: str, encoding: str) -> None:
    model, shape = make_hybrid(name, "lif_hard")
    if encoding == "bitplane":
        c = shape[0]
        spec = InputSpec(shape, T, "bitplane", (0.5,) * c, (0.5,) * c)
        gen = torch.Generator().manual_seed(1)
        xc = torch.randint(0, 256, (B, *shape), generator=gen).to(F64).unsqueeze(0).expand(T, B, *shape)
        xh = (xc / 255.0 - 0.5) / 0.5
    else:
        spec = InputSpec(shape, T)
        xc = xh = random_input(shape, seed=9)
    graph = convert_model(model, spec)
    dense = ConvertedModel(graph)(xc)
    out, report = EventRuntime(graph).run(xc)
    torch.testing.assert_close(out, dense, rtol=0, atol=TOL)
    # per layer: runtime accumulations == the verifier's SOPs (energy.count_ops on the dense model)
    ops = count_ops(ConvertedModel(graph), xc)
    sops = {lay.name.split(".")[1]: lay.sops * B for lay in ops.layers if lay.binary}
    for count in report.layers:
        key = count.name.replace(".", "_")
        if count.macs:
            assert key not in sops and encoding == "analog"
        else:
            assert count.accumulations == pytest.approx(sops[key], rel=1e-12)
    res = verify_models(model, graph, [Batch(xh, xc)])
    assert sum(report.unit_events.values()) > 0  # the threshold units' lateral / edge events are counted
    assert sum(report.unit_events.values()) == pytest.approx(res["unit_sops"] * B, rel=1e-12)
    assert report.accumulations == pytest.approx(res["sops"] * B, rel=1e-12)
    assert report.macs == pytest.approx(res["macs"] * B, rel=1e-12)
    assert res["exact"]
