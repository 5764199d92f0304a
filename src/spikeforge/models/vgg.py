"""Spiking VGG-11 / VGG-16 (conv3x3 + BN + neuron stacks, global average pool, linear head)."""

from __future__ import annotations

from torch import nn

from .. import layers as L
from ..neurons import NeuronConfig
from .common import Net
from .sdsnn import conv_bn_stack

VGG_CFGS: dict[str, tuple[int | str, ...]] = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
}


def _vgg(cfg_name: str, num_classes: int, in_channels: int, width: float, neuron: NeuronConfig | None,
         spiking_output: bool, pool: str) -> Net:
    neuron = neuron or NeuronConfig()
    mods, ch, _ = conv_bn_stack(VGG_CFGS[cfg_name], in_channels, width, neuron, pool)
    mods["gap"] = L.AdaptiveAvgPool2d(1)
    mods["flatten"] = L.Flatten()
    mods["fc"] = L.Linear(ch, num_classes)
    if spiking_output:
        mods["sn_out"] = neuron.build()
    return Net(mods)


def vgg11(num_classes: int = 10, in_channels: int = 3, width: float = 1.0, neuron: NeuronConfig | None = None,
          spiking_output: bool = False, pool: str = "max", **_: object) -> nn.Module:
    return _vgg("vgg11", num_classes, in_channels, width, neuron, spiking_output, pool)


def vgg16(num_classes: int = 10, in_channels: int = 3, width: float = 1.0, neuron: NeuronConfig | None = None,
          spiking_output: bool = False, pool: str = "max", **_: object) -> nn.Module:
    return _vgg("vgg16", num_classes, in_channels, width, neuron, spiking_output, pool)
