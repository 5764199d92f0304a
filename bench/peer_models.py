"""The benchmark models built from a peer library's layers, mirroring spikeforge's model zoo.

``sdsnn_convnet`` and ``resnet19`` are described once here with a table of layer factories
(``Ops``), then instantiated with SpikingJelly's multi-step layers or with plain ``torch.nn``
layers plus snnTorch ``Leaky(init_hidden=True)`` neurons stepped in a Python loop over T (the
way snnTorch's tutorials run convolutional SNNs). Shapes match spikeforge's builders exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from common import peer
from torch import nn

SDSNN_WIDTHS = (15, 40, 300)
RESNET19_WIDTHS = (128, 256, 512)
RESNET19_BLOCKS = (3, 3, 2)
RESNET19_STRIDES = (1, 2, 2)
RESNET19_HEAD = 256
LIF_TAU = 2.0
SURROGATE_ALPHA = 4.0


@dataclass
class Ops:
    conv: Callable[..., nn.Module]
    bn: Callable[[int], nn.Module]
    avgpool: Callable[[int], nn.Module]
    gap: Callable[[], nn.Module]
    flatten: Callable[[], nn.Module]
    linear: Callable[[int, int], nn.Module]
    neuron: Callable[[], nn.Module]


def _scaled(c: int, width: float) -> int:
    return max(1, int(round(c * width)))


def sdsnn_convnet(ops: Ops, in_channels: int = 1, input_size: int = 28, classes: int = 10) -> nn.Sequential:
    c1, c2, f1 = SDSNN_WIDTHS
    side = input_size // 4
    return nn.Sequential(
        ops.conv(in_channels, c1, 3, padding=1), ops.neuron(), ops.avgpool(2),
        ops.conv(c1, c2, 3, padding=1), ops.neuron(), ops.avgpool(2),
        ops.flatten(), ops.linear(c2 * side * side, f1), ops.neuron(), ops.linear(f1, classes))


class Block(nn.Module):
    """Standard spiking basic block: SN(BN(conv(SN(BN(conv(x))))) + shortcut(x))."""

    def __init__(self, ops: Ops, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(ops.conv(cin, cout, 3, stride=stride, padding=1, bias=False), ops.bn(cout),
                                  ops.neuron(), ops.conv(cout, cout, 3, padding=1, bias=False), ops.bn(cout))
        self.short: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(ops.conv(cin, cout, 1, stride=stride, bias=False), ops.bn(cout))
        self.sn = ops.neuron()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sn(self.body(x) + self.short(x))


def resnet19(ops: Ops, width: float, in_channels: int = 3, classes: int = 10) -> nn.Sequential:
    widths = [_scaled(c, width) for c in RESNET19_WIDTHS]
    mods: list[nn.Module] = [ops.conv(in_channels, widths[0], 3, padding=1, bias=False), ops.bn(widths[0]),
                             ops.neuron()]
    ch = widths[0]
    for w, n, s in zip(widths, RESNET19_BLOCKS, RESNET19_STRIDES, strict=True):
        for i in range(n):
            mods.append(Block(ops, ch, w, s if i == 0 else 1))
            ch = w
    head = _scaled(RESNET19_HEAD, width)
    mods += [ops.gap(), ops.flatten(), ops.linear(ch, head), ops.neuron(), ops.linear(head, classes)]
    return nn.Sequential(*mods)


def build(ops: Ops, model: str, width: float, in_channels: int, input_size: int) -> nn.Sequential:
    if model == "sdsnn_convnet":
        return sdsnn_convnet(ops, in_channels, input_size)
    return resnet19(ops, width, in_channels)


Runner = Callable[[torch.Tensor], torch.Tensor]  # [T, B, C, H, W] -> [T, B, classes]


def spikingjelly_model(model: str, width: float, in_channels: int,
                       input_size: int) -> tuple[nn.Module, Runner] | None:
    """SpikingJelly's version (None when it is not installed). Its neuron implementation on CUDA
    is chosen at import by ``SJ_LIF_CUDA_IMPLEMENTATION`` = auto (native CUDA, then Triton, then
    torch) | cuda | triton | torch; on CPU it runs its torch/CPU path."""
    layer = peer("spikingjelly.activation_based.layer")
    neuron = peer("spikingjelly.activation_based.neuron")
    surrogate = peer("spikingjelly.activation_based.surrogate")
    functional = peer("spikingjelly.activation_based.functional")
    if layer is None or neuron is None or surrogate is None or functional is None:
        return None
    ops = Ops(conv=layer.Conv2d, bn=layer.BatchNorm2d, avgpool=layer.AvgPool2d,
              gap=lambda: layer.AdaptiveAvgPool2d(1), flatten=layer.Flatten, linear=layer.Linear,
              neuron=lambda: neuron.LIFNode(tau=LIF_TAU, v_reset=0.0,
                                            surrogate_function=surrogate.Sigmoid(alpha=SURROGATE_ALPHA)))
    net = build(ops, model, width, in_channels, input_size)
    functional.set_step_mode(net, "m")

    def run(x: torch.Tensor) -> torch.Tensor:
        functional.reset_net(net)
        return net(x)

    return net, run


def snntorch_model(model: str, width: float, in_channels: int,
                   input_size: int) -> tuple[nn.Module, Runner] | None:
    snn = peer("snntorch")
    sg = peer("snntorch.surrogate")
    utils = peer("snntorch.utils")
    if snn is None or sg is None or utils is None:
        return None
    ops = Ops(conv=nn.Conv2d, bn=nn.BatchNorm2d, avgpool=nn.AvgPool2d, gap=lambda: nn.AdaptiveAvgPool2d(1),
              flatten=nn.Flatten, linear=nn.Linear,
              neuron=lambda: snn.Leaky(beta=1.0 - 1.0 / LIF_TAU, init_hidden=True, reset_mechanism="zero",
                                       spike_grad=sg.sigmoid(slope=SURROGATE_ALPHA)))
    net = build(ops, model, width, in_channels, input_size)

    def run(x: torch.Tensor) -> torch.Tensor:
        utils.reset(net)
        return torch.stack([net(x_t) for x_t in x])

    return net, run
