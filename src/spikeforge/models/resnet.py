"""Spiking ResNets with three residual styles.

``standard`` (spike after add):   y = SN( BN(conv(SN(BN(conv(x))))) + shortcut(x) )
``sew``      (spike-element-wise): y = SN(BN(conv(SN(BN(conv(x)))))) + shortcut_spikes(x)
                                   (the sum of spikes is integer-valued, not binary)
``ms``       (membrane shortcut):  y = BN(conv(SN(BN(conv(SN(x)))))) + shortcut(x)
                                   (real-valued membrane path; every conv still sees spikes)

``resnet19``: CIFAR stem conv3x3→128, stages [3, 3, 2] at widths 128/256/512, global average
pool, fc 256, fc classes (as in TET / MPBN). ``resnet18`` / ``resnet34``: ImageNet stem
(conv7x7/2 + maxpool3/2), stages [2,2,2,2] / [3,4,6,3] at 64..512, global pool, fc.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import cast

import torch
from torch import nn

from .. import layers as L
from ..neurons import NeuronConfig
from .common import Net, scaled

RESIDUAL_STYLES = ("standard", "sew", "ms")
RESNET19_HEAD = 256


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection in one of :data:`RESIDUAL_STYLES`."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, style: str, neuron: NeuronConfig) -> None:
        super().__init__()
        if style not in RESIDUAL_STYLES:
            raise ValueError(f"residual style must be one of {RESIDUAL_STYLES}, got {style!r}")
        self.style = style
        if style == "ms":
            self.sn1 = neuron.build()
        self.conv1 = L.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = L.BatchNorm2d(out_ch)
        if style != "ms":
            self.sn1 = neuron.build()
        else:
            self.sn2 = neuron.build()
        self.conv2 = L.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = L.BatchNorm2d(out_ch)
        if style != "ms":
            self.sn2 = neuron.build()
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            ds = OrderedDict([("conv", L.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)),
                              ("bn", L.BatchNorm2d(out_ch))])
            if style == "sew":
                ds["sn"] = neuron.build()
            self.downsample = nn.Sequential(ds)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.style == "ms":
            s = self.sn1(x)
            out = self.bn2(self.conv2(self.sn2(self.bn1(self.conv1(s)))))
            short = x if self.downsample is None else self.downsample(s)
            return out + short
        out = self.bn2(self.conv2(self.sn1(self.bn1(self.conv1(x)))))
        short = x if self.downsample is None else self.downsample(x)
        if self.style == "standard":
            return self.sn2(out + short)
        return self.sn2(out) + short


def _stage(in_ch: int, out_ch: int, blocks: int, stride: int, style: str, neuron: NeuronConfig) -> nn.Sequential:
    mods = [BasicBlock(in_ch, out_ch, stride, style, neuron)]
    mods += [BasicBlock(out_ch, out_ch, 1, style, neuron) for _ in range(blocks - 1)]
    return nn.Sequential(*mods)


def _resnet(stem: OrderedDict[str, nn.Module], stem_ch: int, widths: tuple[int, ...], blocks: tuple[int, ...],
            strides: tuple[int, ...], head_hidden: int | None, num_classes: int, style: str,
            neuron: NeuronConfig, spiking_output: bool) -> Net:
    mods: OrderedDict[str, nn.Module] = OrderedDict()
    if style != "ms":
        stem["sn"] = neuron.build()
    mods["stem"] = nn.Sequential(stem)
    ch = stem_ch
    for i, (w, n, s) in enumerate(zip(widths, blocks, strides, strict=True), start=1):
        mods[f"layer{i}"] = _stage(ch, w, n, s, style, neuron)
        ch = w
    if style == "ms":
        mods["sn_final"] = neuron.build()
    mods["pool"] = L.AdaptiveAvgPool2d(1)
    mods["flatten"] = L.Flatten()
    if head_hidden:
        mods["fc1"] = L.Linear(ch, head_hidden)
        mods["sn_fc"] = neuron.build()
        ch = head_hidden
    mods["fc"] = L.Linear(ch, num_classes)
    if spiking_output:
        mods["sn_out"] = neuron.build()
    return Net(mods)


def resnet19(num_classes: int = 10, in_channels: int = 3, width: float = 1.0, neuron: NeuronConfig | None = None,
             residual: str = "standard", spiking_output: bool = False, **_: object) -> Net:
    neuron = neuron or NeuronConfig()
    c = [scaled(x, width) for x in (128, 256, 512)]
    stem = OrderedDict([("conv", L.Conv2d(in_channels, c[0], 3, padding=1, bias=False)),
                        ("bn", L.BatchNorm2d(c[0]))])
    return _resnet(stem, c[0], tuple(c), (3, 3, 2), (1, 2, 2), scaled(RESNET19_HEAD, width), num_classes,
                   residual, neuron, spiking_output)


def _imagenet_resnet(blocks: tuple[int, ...], num_classes: int, in_channels: int, width: float,
                     neuron: NeuronConfig | None, residual: str, spiking_output: bool) -> Net:
    neuron = neuron or NeuronConfig()
    c = [scaled(x, width) for x in (64, 128, 256, 512)]
    stem = OrderedDict([("conv", L.Conv2d(in_channels, c[0], 7, stride=2, padding=3, bias=False)),
                        ("bn", L.BatchNorm2d(c[0]))])
    net = _resnet(stem, c[0], tuple(c), blocks, (1, 2, 2, 2), None, num_classes, residual, neuron,
                  spiking_output)
    # max pool after the stem's neuron (or after BN for the membrane-shortcut style)
    cast(nn.Module, net.stem).add_module("pool", L.MaxPool2d(3, stride=2, padding=1))
    return net


def resnet18(num_classes: int = 1000, in_channels: int = 3, width: float = 1.0, neuron: NeuronConfig | None = None,
             residual: str = "standard", spiking_output: bool = False, **_: object) -> Net:
    return _imagenet_resnet((2, 2, 2, 2), num_classes, in_channels, width, neuron, residual, spiking_output)


def resnet34(num_classes: int = 1000, in_channels: int = 3, width: float = 1.0, neuron: NeuronConfig | None = None,
             residual: str = "standard", spiking_output: bool = False, **_: object) -> Net:
    return _imagenet_resnet((3, 4, 6, 3), num_classes, in_channels, width, neuron, residual, spiking_output)
