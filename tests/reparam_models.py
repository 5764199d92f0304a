"""Random small hybrid models of every block type the converter supports (shared by the tests)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn

from spikeforge import layers as L
from spikeforge.hybrid.policy import apply_hybrid
from spikeforge.hybrid.spiking_relu import SpikingReLU
from spikeforge.models import neuron_sites
from spikeforge.models.common import Net
from spikeforge.models.resnet import resnet18, resnet19
from spikeforge.models.sdsnn import cifar_convnet, sdsnn_convnet
from spikeforge.neurons import NeuronConfig, SpikingNeuron

T, B = 3, 4
LEVELS = 7
STEP_QUANTILE = 0.9  # the step puts this quantile of a site's positive inputs near the top level
TOP_FRACTION = 0.8
WEIGHT_GAIN = 2.0  # weights ~ N(0, (gain / fan_in)): sites get enough input to fire


def mlp(neuron: NeuronConfig, in_channels: int = 1, input_size: int = 6) -> Net:
    d = in_channels * input_size * input_size
    return Net(OrderedDict([("flatten", L.Flatten()), ("fc1", L.Linear(d, 24)), ("bn1", L.BatchNorm1d(24)),
                            ("sn1", neuron.build()), ("fc2", L.Linear(24, 16)), ("sn2", neuron.build()),
                            ("drop", L.Dropout(0.5)), ("fc3", L.Linear(16, 5))]))


def small_convnet(neuron: NeuronConfig, pool: str) -> Net:
    return cifar_convnet(num_classes=5, in_channels=2, input_size=8, width=1 / 32, neuron=neuron, pool=pool)


def small_sdsnn(neuron: NeuronConfig) -> Net:
    return sdsnn_convnet(num_classes=4, in_channels=1, input_size=12, width=0.3, neuron=neuron)


def small_sdsnn_spiking_out(neuron: NeuronConfig) -> Net:
    return sdsnn_convnet(num_classes=4, in_channels=1, input_size=12, width=0.3, neuron=neuron,
                         spiking_output=True)


def small_resnet19(neuron: NeuronConfig, style: str) -> Net:
    return resnet19(num_classes=5, in_channels=3, width=1 / 32, neuron=neuron, residual=style)


def small_resnet18(neuron: NeuronConfig, style: str) -> Net:
    return resnet18(num_classes=5, in_channels=3, width=1 / 16, neuron=neuron, residual=style)


# name -> (factory, per-sample input shape)
FACTORIES: dict[str, tuple[Callable[[NeuronConfig], Net], tuple[int, ...]]] = {
    "mlp": (mlp, (1, 6, 6)),
    "convnet_avg": (lambda n: small_convnet(n, "avg"), (2, 8, 8)),
    "convnet_max": (lambda n: small_convnet(n, "max"), (2, 8, 8)),
    "sdsnn": (small_sdsnn, (1, 12, 12)),
    "sdsnn_out": (small_sdsnn_spiking_out, (1, 12, 12)),
    "resnet19_standard": (lambda n: small_resnet19(n, "standard"), (3, 8, 8)),
    "resnet19_sew": (lambda n: small_resnet19(n, "sew"), (3, 8, 8)),
    "resnet19_ms": (lambda n: small_resnet19(n, "ms"), (3, 8, 8)),
    "resnet18_sew": (lambda n: small_resnet18(n, "sew"), (3, 16, 16)),
    "resnet18_ms": (lambda n: small_resnet18(n, "ms"), (3, 16, 16)),
}

NEURONS = {
    "lif_hard": NeuronConfig(kind="lif", tau=2.0, threshold=0.5, reset="hard", backend="reference"),
    "if_soft": NeuronConfig(kind="if", threshold=1.0, reset="soft", backend="reference"),
    "plif_hard": NeuronConfig(kind="plif", tau=1.7, threshold=0.4, reset="hard", v_reset=0.1,
                              backend="reference"),
}


@torch.no_grad()
def randomize(model: nn.Module, gen: torch.Generator) -> None:
    """Random weights, BN statistics and affine parameters, PLIF time constants."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            fan_in = m.weight[0].numel()
            m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (WEIGHT_GAIN / fan_in) ** 0.5)
            if m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.2)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=gen) * 0.2)
            m.running_var.copy_(torch.rand(c, generator=gen) * 1.5 + 0.3)
            m.weight.copy_(torch.rand(c, generator=gen) * 1.2 + 0.4)
            m.bias.copy_(torch.randn(c, generator=gen) * 0.3 + 0.2)
        elif hasattr(m, "w") and isinstance(m.w, nn.Parameter):  # PLIF
            m.w.copy_(torch.randn((), generator=gen) * 0.5)


@torch.no_grad()
def calibrate_steps(model: nn.Module, x: torch.Tensor) -> None:
    """Set each SpikingReLU's step so its levels spread over 0..L on ``x``."""
    def hook(m: SpikingReLU, inputs: tuple[torch.Tensor, ...]) -> None:
        pos = inputs[0][inputs[0] > 0]
        top = float(pos.quantile(STEP_QUANTILE)) if pos.numel() else 1.0
        m.step.fill_(max(top, 1e-3) / (m.levels * TOP_FRACTION))
        m.initialized.fill_(True)

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, SpikingReLU)]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()


def make_hybrid(name: str, neuron: str = "lif_hard", sites: str = "every2", seed: int = 0,
                levels: int = LEVELS) -> tuple[nn.Module, tuple[int, ...]]:
    """A random float64 eval-mode hybrid: ``sites`` = "every2" | "all" | "none" | "first" | names."""
    gen = torch.Generator().manual_seed(seed)
    factory, shape = FACTORIES[name]
    torch.manual_seed(seed)
    model = factory(NEURONS[neuron])
    names = list(neuron_sites(model))
    presets = {"every2": names[1::2], "all": names, "none": [], "first": names[:1]}
    chosen = presets.get(sites, sites.split(","))
    apply_hybrid(model, list(chosen), levels)
    randomize(model, gen)
    model = model.double().eval()
    calibrate_steps(model, random_input(shape, seed + 1))
    return model, shape


def random_input(shape: tuple[int, ...], seed: int, t: int = T, b: int = B) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(t, b, *shape, generator=gen, dtype=torch.float64)


def site_outputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    handles = [m.register_forward_hook(lambda _m, _i, y, n=n: out.__setitem__(n, y.detach()))
               for n, m in neuron_sites(model).items()]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return out


def spiking_sites(model: nn.Module) -> list[str]:
    return [n for n, m in neuron_sites(model).items() if isinstance(m, SpikingNeuron)]
