"""Model zoo: shapes, stable site names, residual styles, width multiplier."""

from __future__ import annotations

import pytest
import torch

from spikeforge.hybrid.spiking_relu import SpikingReLU
from spikeforge.models import MODELS, ModelConfig, build_model, match_sites, neuron_sites, replace_module
from spikeforge.models.sites import synaptic_layers
from spikeforge.neurons import NeuronConfig


def _cfg(name: str, **kw: object) -> ModelConfig:
    small = {"sdsnn_convnet": (1, 28), "cifar_convnet": (3, 32), "vgg11": (3, 32), "vgg16": (3, 32),
             "resnet19": (3, 32), "resnet18": (3, 64), "resnet34": (3, 64)}[name]
    return ModelConfig(name=name, in_channels=small[0], input_size=small[1], width=0.125, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(set(MODELS) - {"nir"}))  # "nir" is built from an imported graph: test_nir_*
def test_every_model_runs_and_names_sites(name: str) -> None:
    cfg = _cfg(name)
    model = build_model(cfg)
    x = torch.rand(2, 2, cfg.in_channels, cfg.input_size, cfg.input_size)
    y = model(x)
    assert y.shape == (2, 2, 10)
    sites = neuron_sites(model)
    assert sites and all(isinstance(n, str) for n in sites)
    # names are stable: a second build gives the same names
    assert list(neuron_sites(build_model(cfg))) == list(sites)


def test_sdsnn_convnet_matches_reference_shapes() -> None:
    m = build_model(ModelConfig(name="sdsnn_convnet"))
    layers = synaptic_layers(m)
    assert list(layers) == ["conv1", "conv2", "fc1", "fc2"]
    assert layers["fc1"].weight.shape == (300, 1960)
    assert list(neuron_sites(m)) == ["sn1", "sn2", "sn3"]
    n_weights = sum(layers[k].weight.numel() for k in layers)
    assert n_weights == 15 * 9 + 40 * 15 * 9 + 1960 * 300 + 300 * 10  # 596,535 as in the SD-SNN reference
    dvs = build_model(ModelConfig(name="sdsnn_convnet", in_channels=2, input_size=128, num_classes=11))
    assert synaptic_layers(dvs)["fc1"].weight.shape == (300, 40960)


def test_resnet19_structure_and_names() -> None:
    m = build_model(ModelConfig(name="resnet19", in_channels=3, input_size=32))
    names = list(neuron_sites(m))
    assert names[:3] == ["stem.sn", "layer1.0.sn1", "layer1.0.sn2"]
    assert [k for k in ("layer1", "layer2", "layer3")] == [n for n, _ in m.named_children() if n.startswith("layer")]
    assert [len(getattr(m, f"layer{i}")) for i in (1, 2, 3)] == [3, 3, 2]
    assert m.layer3[0].conv1.out_channels == 512


@pytest.mark.parametrize("style", ["standard", "sew", "ms"])
def test_residual_styles(style: str) -> None:
    torch.manual_seed(0)
    cfg = _cfg("resnet19", residual=style, neuron=NeuronConfig(threshold=0.2))
    m = build_model(cfg)
    out = m(torch.rand(2, 3, 3, 32, 32))
    assert out.shape == (2, 3, 10)
    if style == "sew":  # block outputs are sums of spikes: integers, can exceed 1
        acts: list[torch.Tensor] = []
        h = m.layer1[1].register_forward_hook(lambda _m, _i, o: acts.append(o))
        m(torch.rand(2, 3, 3, 32, 32) * 4)
        h.remove()
        assert torch.equal(acts[0], acts[0].round()) and float(acts[0].detach().max()) >= 2
    if style == "ms":
        assert "stem.sn" not in neuron_sites(m) and "sn_final" in neuron_sites(m)


def test_width_multiplier_and_site_replacement() -> None:
    m = build_model(ModelConfig(name="vgg11", in_channels=3, input_size=32, width=0.25))
    assert m.conv1.out_channels == 16
    picked = match_sites(m, ["sn1", "sn[78]"])
    assert picked == ["sn1", "sn7", "sn8"]
    replace_module(m, "sn8", SpikingReLU(levels=3))
    assert isinstance(neuron_sites(m)["sn8"], SpikingReLU)
    with pytest.raises(ValueError, match="matches no neuron site"):
        match_sites(m, ["nothing*"])
    with pytest.raises(ValueError, match="unknown model"):
        build_model(ModelConfig(name="alexnet"))
    with pytest.raises(ValueError, match="time-first"):
        m(torch.rand(3, 32))
