"""SD-SNN's networks (Han et al., arXiv 2211.12219): the small MNIST/N-MNIST/DVS convnet and the
CIFAR convnet. Layer names follow the reference (conv1, conv2, fc1, fc2)."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from .. import layers as L
from ..neurons import NeuronConfig
from .common import Net, scaled

SDSNN_WIDTHS = (15, 40, 300)  # conv1, conv2, fc1 channels / units
SDSNN_POOLS = 2  # two 2x2 average pools
CIFAR_CONVNET_CFG: tuple[int | str, ...] = (128, 128, "M", 256, 256, "M", 512, 512)
CIFAR_CONVNET_FC = 512


def sdsnn_convnet(num_classes: int = 10, in_channels: int = 1, input_size: int = 28, width: float = 1.0,
                  neuron: NeuronConfig | None = None, spiking_output: bool = False, **_: object) -> Net:
    """conv(in→15, 3x3) → sn → avgpool2 → conv(15→40, 3x3) → sn → avgpool2 → fc(→300) → sn → fc(→classes)."""
    neuron = neuron or NeuronConfig()
    c1, c2, f1 = (scaled(w, width) for w in SDSNN_WIDTHS)
    side = input_size // 2**SDSNN_POOLS
    body = OrderedDict([
        ("conv1", L.Conv2d(in_channels, c1, 3, padding=1)), ("sn1", neuron.build()), ("pool1", L.AvgPool2d(2)),
        ("conv2", L.Conv2d(c1, c2, 3, padding=1)), ("sn2", neuron.build()), ("pool2", L.AvgPool2d(2)),
        ("flatten", L.Flatten()),
        ("fc1", L.Linear(c2 * side * side, f1)), ("sn3", neuron.build()),
        ("fc2", L.Linear(f1, num_classes)),
    ])
    if spiking_output:
        body["sn_out"] = neuron.build()
    return Net(body)


def conv_bn_stack(cfg: tuple[int | str, ...], in_channels: int, width: float, neuron: NeuronConfig,
                  pool: str) -> tuple[OrderedDict[str, nn.Module], int, int]:
    """conv3x3+BN+neuron per int in ``cfg``, a 2x2 pool per "M"; returns (layers, channels, pools)."""
    mods: OrderedDict[str, nn.Module] = OrderedDict()
    ch, i, p = in_channels, 0, 0
    for item in cfg:
        if item == "M":
            p += 1
            mods[f"pool{p}"] = L.MaxPool2d(2) if pool == "max" else L.AvgPool2d(2)
            continue
        i += 1
        out = scaled(int(item), width)
        mods[f"conv{i}"] = L.Conv2d(ch, out, 3, padding=1, bias=False)
        mods[f"bn{i}"] = L.BatchNorm2d(out)
        mods[f"sn{i}"] = neuron.build()
        ch = out
    return mods, ch, p


def cifar_convnet(num_classes: int = 10, in_channels: int = 3, input_size: int = 32, width: float = 1.0,
                  neuron: NeuronConfig | None = None, spiking_output: bool = False, pool: str = "avg",
                  **_: object) -> Net:
    """SD-SNN's CIFAR net: 128,128,M,256,256,M,512,512 (conv+BN+neuron), fc 512, fc classes."""
    neuron = neuron or NeuronConfig()
    mods, ch, pools = conv_bn_stack(CIFAR_CONVNET_CFG, in_channels, width, neuron, pool)
    side = input_size // 2**pools
    fc = scaled(CIFAR_CONVNET_FC, width)
    mods["flatten"] = L.Flatten()
    mods["fc1"] = L.Linear(ch * side * side, fc)
    mods["sn_fc"] = neuron.build()
    mods["fc2"] = L.Linear(fc, num_classes)
    if spiking_output:
        mods["sn_out"] = neuron.build()
    return Net(mods)
