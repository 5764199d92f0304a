"""spikeforge → NIR → spikeforge for every zoo model NIR can express (the current exporter: chain models
with average pooling, hard-reset IF/LIF/PLIF neurons), in float64: outputs to 1e-9, spikes exact."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

pytest.importorskip("nir")

from spikeforge.export import ExportOptions, model_to_nir  # noqa: E402
from spikeforge.models import ModelConfig, build_model  # noqa: E402
from spikeforge.neurons import NeuronConfig  # noqa: E402
from spikeforge.nir import load  # noqa: E402

NEURONS = {
    "lif": NeuronConfig(kind="lif", tau=2.0, threshold=0.5),
    "lif_beta": NeuronConfig(kind="lif", beta=0.2, threshold=0.5),
    "if": NeuronConfig(kind="if", threshold=1.0),
    "plif": NeuronConfig(kind="plif", tau=3.0, threshold=0.7, v_reset=-0.1),
}
MODELS = {  # name: (model config kwargs, input side)
    "sdsnn_convnet": ({"in_channels": 2, "width": 0.5}, 16),
    "cifar_convnet": ({"in_channels": 3, "width": 0.0625}, 16),
    "vgg11": ({"in_channels": 3, "width": 0.0625, "pool": "avg"}, 32),
}


@pytest.fixture(autouse=True)
def float64() -> Iterator[None]:
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def site_outputs(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    from spikeforge.neurons import Site

    spikes: list[torch.Tensor] = []
    sites = [m for m in model.modules() if isinstance(m, Site)]
    hooks = [m.register_forward_hook(lambda _m, _i, o: spikes.append(o)) for m in sites]
    with torch.no_grad():
        out = model(x)
    for h in hooks:
        h.remove()
    return out, spikes


@pytest.mark.parametrize("neuron", sorted(NEURONS))
@pytest.mark.parametrize("name", sorted(MODELS))
def test_zoo_round_trip(name: str, neuron: str) -> None:
    kw, side = MODELS[name]
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=name, num_classes=10, input_size=side, neuron=NEURONS[neuron], **kw))
    for m in model.modules():  # non-trivial batch norm statistics, so folding is exercised
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    model.eval()
    shape = (kw["in_channels"], side, side)
    imported = load(model_to_nir(model, shape, ExportOptions(dt=0.5)))
    assert type(imported).__name__ == "Net"  # a chain, like the source
    x = torch.rand(6, 3, *shape) * 2
    want, want_spikes = site_outputs(model, x)
    got, got_spikes = site_outputs(imported, x)
    assert len(want_spikes) == len(got_spikes) > 0
    for a, b in zip(want_spikes, got_spikes, strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=0)
    assert any(0 < float(s.mean()) < 1 for s in want_spikes)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-9)
