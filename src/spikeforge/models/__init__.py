"""Model zoo. Every model maps ``[T, B, C, H, W] -> [T, B, classes]`` and names its sites stably."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from ..layers import MEMORY_FORMATS, set_memory_format, set_spike_convs
from ..neurons import NeuronConfig
from ..spike_conv import MODES as SPIKE_CONV_MODES
from .imported import nir_model
from .resnet import BasicBlock, resnet18, resnet19, resnet34
from .sdsnn import cifar_convnet, sdsnn_convnet
from .sites import match_sites, neuron_sites, replace_module, synaptic_layers
from .vgg import vgg11, vgg16

MODELS: dict[str, Callable[..., nn.Module]] = {
    "sdsnn_convnet": sdsnn_convnet,
    "cifar_convnet": cifar_convnet,
    "vgg11": vgg11,
    "vgg16": vgg16,
    "resnet19": resnet19,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "nir": nir_model,  # a graph imported from NIR (`spikeforge import`); its structure is model.graph
}


@dataclass
class ModelConfig:
    """Recipe section ``[model]``."""

    name: str = "sdsnn_convnet"
    num_classes: int = 10
    in_channels: int = 1
    input_size: int = 28
    width: float = 1.0
    residual: str = "standard"  # resnets: "standard" | "sew" | "ms"
    pool: str = "avg"  # convnets/vgg: "avg" | "max"
    spiking_output: bool = False
    init: str = "kaiming"  # synaptic weight init: "kaiming" (normal, fan-in, ReLU gain; zero bias) | "torch"
    memory_format: str = "channels_last"  # activation layout while training: "channels_last" | "contiguous"
    spike_convs: str = "auto"  # training convs on spikes: "auto" (event-driven where sparse, CPU) | "dense"
    neuron: NeuronConfig = field(default_factory=NeuronConfig)
    graph: str = ""  # name = "nir": the imported graph's structure as JSON (spikeforge.nir.GraphSpec)


def _kaiming(model: nn.Module) -> None:
    """N(0, 2/fan_in) weights, zero biases. PyTorch's default (uniform, std ≈ 0.58/√fan_in) leaves
    deep spiking layers silent at the start (measured on MNIST: sdsnn_convnet's fc1 and output
    layers fire 0 %), so the surrogate gradient never reaches them; this init keeps 3–25 % firing."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


INITS: dict[str, Callable[[nn.Module], None]] = {"kaiming": _kaiming, "torch": lambda _m: None}


def build_model(cfg: ModelConfig) -> nn.Module:
    try:
        factory = MODELS[cfg.name]
    except KeyError:
        raise ValueError(f"unknown model {cfg.name!r}; expected one of {sorted(MODELS)}") from None
    if cfg.init not in INITS:
        raise ValueError(f"model.init must be one of {sorted(INITS)}, got {cfg.init!r}")
    if cfg.memory_format not in MEMORY_FORMATS:
        raise ValueError(f"model.memory_format must be one of {sorted(MEMORY_FORMATS)}, got {cfg.memory_format!r}")
    if cfg.spike_convs not in SPIKE_CONV_MODES:
        raise ValueError(f"model.spike_convs must be one of {sorted(SPIKE_CONV_MODES)}, got {cfg.spike_convs!r}")
    model = factory(num_classes=cfg.num_classes, in_channels=cfg.in_channels, input_size=cfg.input_size,
                   width=cfg.width, neuron=cfg.neuron, residual=cfg.residual, pool=cfg.pool,
                   spiking_output=cfg.spiking_output, graph=cfg.graph)
    INITS[cfg.init](model)
    return set_spike_convs(set_memory_format(model, cfg.memory_format), cfg.spike_convs)


__all__ = ["MODELS", "ModelConfig", "build_model", "BasicBlock", "neuron_sites", "synaptic_layers",
           "match_sites", "replace_module"]
