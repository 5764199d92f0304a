"""Which units survive where, in a chain model, and how to rebuild its layers smaller.

A *chain* model is a ``nn.Sequential`` whose children are synaptic layers (Conv2d, Linear),
batch norms, sites, pools, flatten and dropout (``sdsnn_convnet``, ``cifar_convnet``, VGG). The plan is
computed by the model walker shared with the converter and the NIR export
(:class:`spikeforge.reparam.walk.ModelWalker`), carrying the kept indices along the activations'
channel/feature axis. Keeping output units ``K_l`` of synaptic layer ``l`` keeps

- rows ``K_l`` of its weight and bias, the channels ``K_l`` of the batch norm that follows;
- input columns of the next synaptic layer: ``K_l`` for a conv; through ``Flatten`` a kept
  channel ``c`` keeps its whole ``H×W`` block ``[c·HW, (c+1)·HW)`` (``HW = in_features / C``).

The same plan rebuilds a compacted model from the per-layer widths in ``develop.widths``
(``K_l = {0..width−1}`` after compaction renumbers the kept units). Residual blocks are refused:
removing a unit there would have to remove it from every branch of the sum.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..models import BasicBlock, replace_module
from ..reparam.walk import ModelWalker


@dataclass
class Step:
    """One child of the chain and the indices it keeps (None: not resized)."""

    name: str
    module: nn.Module
    kind: str  # "synapse" | "norm" | "other"
    in_idx: torch.Tensor | None = None
    out_idx: torch.Tensor | None = None


@dataclass
class Axis:
    """The walker's value: kept indices along the activations' channel/feature axis (None: all)."""

    idx: torch.Tensor | None = None
    channels: int = 0  # original size of that axis
    flattened: bool = False


@dataclass
class Planner(ModelWalker[Axis]):
    """Records a :class:`Step` per leaf, in forward order."""

    keep: dict[str, torch.Tensor]
    steps: list[Step] = field(default_factory=list)

    def block(self, blk: BasicBlock, x: Axis, path: str) -> Axis:
        raise NotImplementedError(f"compaction supports chain models only: {path!r} is a residual block "
                                  "(residual models cannot be compacted)")

    def synapse(self, m: nn.Module, val: Axis, path: str) -> Axis:
        if isinstance(m, nn.Conv2d) and m.groups != 1:
            raise NotImplementedError(f"compaction does not support grouped convolutions ({path})")
        fan_in, fan_out = layer_sizes(m)
        if val.idx is None:
            in_idx = torch.arange(fan_in)
        elif val.flattened and fan_in != val.channels:
            if fan_in % val.channels:
                raise ValueError(f"{path}: {fan_in} inputs are not a multiple of {val.channels} channels")
            block = fan_in // val.channels
            in_idx = (val.idx[:, None] * block + torch.arange(block)).flatten()
        else:
            in_idx = val.idx
        out_idx = self.keep.get(path, torch.arange(fan_out))
        self.steps.append(Step(path, m, "synapse", in_idx, out_idx))
        return Axis(out_idx, fan_out, False)

    def batchnorm(self, m: nn.Module, val: Axis, path: str) -> Axis:
        self.steps.append(Step(path, m, "norm", val.idx, val.idx))
        return val

    def _other(self, m: nn.Module, val: Axis, path: str) -> Axis:
        self.steps.append(Step(path, m, "other"))
        return val

    skip = neuron = spiking_relu = unknown_site = avgpool = maxpool = _other

    def flatten(self, m: nn.Module, val: Axis, path: str) -> Axis:
        self.steps.append(Step(path, m, "other"))
        return Axis(val.idx, val.channels, True)


def layer_sizes(m: nn.Module) -> tuple[int, int]:
    """``(inputs, outputs)`` of a conv (channels) or linear (features) layer."""
    if isinstance(m, nn.Conv2d):
        return m.in_channels, m.out_channels
    if isinstance(m, nn.Linear):
        return m.in_features, m.out_features
    raise TypeError(f"not a synaptic layer: {type(m).__name__}")


def _plan(model: nn.Module, keep: dict[str, torch.Tensor]) -> list[Step]:
    if not isinstance(model, nn.Sequential):
        raise NotImplementedError(f"compaction supports chain (nn.Sequential) models, got {type(model).__name__}")
    planner = Planner(keep)
    planner.walk(model, Axis())
    return planner.steps


def chain_children(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The leaves of a chain model in order; raises ``NotImplementedError`` for other structures."""
    return [(s.name, s.module) for s in _plan(model, {})]


def index_plan(model: nn.Module, keep: dict[str, torch.Tensor]) -> list[Step]:
    """Kept input/output indices of every child, given kept output units per synaptic layer."""
    steps = _plan(model, keep)
    synapses = [s for s in steps if s.kind == "synapse"]
    last = synapses[-1]
    assert last.out_idx is not None
    if len(last.out_idx) != layer_sizes(last.module)[1]:
        raise ValueError(f"{last.name} is the output layer; its units cannot be removed")
    return steps


def smaller_like(m: nn.Module, n_in: int, n_out: int) -> nn.Module:
    """A fresh module of ``m``'s class and hyper-parameters with new sizes (same device/dtype)."""
    w = getattr(m, "weight", None)
    dd = {"device": w.device, "dtype": w.dtype} if w is not None else {}
    cls = type(m)
    if isinstance(m, nn.Conv2d):
        return cls(n_in, n_out, m.kernel_size, stride=m.stride, padding=m.padding, dilation=m.dilation,
                   groups=m.groups, bias=m.bias is not None, padding_mode=m.padding_mode, **dd)
    if isinstance(m, nn.Linear):
        return cls(n_in, n_out, bias=m.bias is not None, **dd)
    if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
        return cls(n_out, eps=m.eps, momentum=m.momentum, affine=m.affine,
                   track_running_stats=m.track_running_stats, **dd)
    raise TypeError(f"cannot resize a {cls.__name__}")


def resize(model: nn.Module, widths: dict[str, int]) -> list[Step]:
    """Replace the layers of ``model`` (in place) by smaller ones with the given output widths."""
    names = {n for n, _ in model.named_modules()}
    unknown = sorted(set(widths) - names)
    if unknown:
        raise ValueError(f"develop.widths names unknown layers {unknown}")
    steps = index_plan(model, {n: torch.arange(w) for n, w in widths.items()})
    for s in steps:
        if s.kind == "other" or s.in_idx is None or s.out_idx is None:
            continue
        m = s.module
        n_in, n_out = len(s.in_idx), len(s.out_idx)
        if s.kind == "norm":
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and n_out != m.num_features:
                replace_module(model, s.name, smaller_like(m, n_in, n_out))
            continue
        if layer_sizes(m) != (n_in, n_out):
            replace_module(model, s.name, smaller_like(m, n_in, n_out))
    return steps
