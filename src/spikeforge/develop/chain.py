"""Which units survive where, in a chain model, and how to rebuild its layers smaller.

A *chain* model is a ``nn.Sequential`` whose children are synaptic layers (Conv2d, Linear),
batch norms, sites, pools, flatten and dropout (``sdsnn_convnet``, ``cifar_convnet``, VGG).
Keeping output units ``K_l`` of synaptic layer ``l`` keeps

- rows ``K_l`` of its weight and bias, the channels ``K_l`` of the batch norm that follows;
- input columns of the next synaptic layer: ``K_l`` for a conv; through ``Flatten`` a kept
  channel ``c`` keeps its whole ``H×W`` block ``[c·HW, (c+1)·HW)`` (``HW = in_features / C``).

The same plan rebuilds a compacted model from the per-layer widths in ``develop.widths``
(``K_l = {0..width−1}`` after compaction renumbers the kept units).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import layers as L
from ..neurons import Site

PASS_THROUGH: tuple[type[nn.Module], ...] = (Site, nn.AvgPool2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d,
                                             L.Dropout, nn.Dropout, nn.Identity)


@dataclass
class Step:
    """One child of the chain and the indices it keeps (None: not resized)."""

    name: str
    module: nn.Module
    kind: str  # "synapse" | "norm" | "other"
    in_idx: torch.Tensor | None = None
    out_idx: torch.Tensor | None = None


def chain_children(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The children of a chain model; raises ``NotImplementedError`` for other structures."""
    if not isinstance(model, nn.Sequential):
        raise NotImplementedError(f"compaction supports chain (nn.Sequential) models, "
                                  f"got {type(model).__name__}")
    allowed = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, L.Flatten, *PASS_THROUGH)
    out = list(model.named_children())
    for name, m in out:
        if not isinstance(m, allowed):
            raise NotImplementedError(f"compaction supports chain models only: child {name!r} is a "
                                      f"{type(m).__name__} (residual models cannot be compacted)")
        if isinstance(m, nn.Conv2d) and m.groups != 1:
            raise NotImplementedError(f"compaction does not support grouped convolutions ({name})")
    return out


def index_plan(model: nn.Module, keep: dict[str, torch.Tensor]) -> list[Step]:
    """Kept input/output indices of every child, given kept output units per synaptic layer."""
    steps: list[Step] = []
    cur: torch.Tensor | None = None  # kept indices along the activations' channel/feature axis
    channels = 0  # original size of that axis
    flattened = False
    children = chain_children(model)
    last_synapse = [n for n, m in children if isinstance(m, nn.Conv2d | nn.Linear)][-1]
    for name, m in children:
        if isinstance(m, nn.Conv2d | nn.Linear):
            fan_in = m.in_channels if isinstance(m, nn.Conv2d) else m.in_features
            if cur is None:
                in_idx = torch.arange(fan_in)
            elif flattened and fan_in != channels:
                if fan_in % channels:
                    raise ValueError(f"{name}: {fan_in} inputs are not a multiple of {channels} channels")
                block = fan_in // channels
                in_idx = (cur[:, None] * block + torch.arange(block)).flatten()
            else:
                in_idx = cur
            fan_out = m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
            out_idx = keep.get(name, torch.arange(fan_out))
            if name == last_synapse and len(out_idx) != fan_out:
                raise ValueError(f"{name} is the output layer; its units cannot be removed")
            steps.append(Step(name, m, "synapse", in_idx, out_idx))
            cur, channels, flattened = out_idx, fan_out, False
        elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            steps.append(Step(name, m, "norm", cur, cur))
        else:
            flattened = flattened or isinstance(m, L.Flatten)
            steps.append(Step(name, m, "other"))
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
    names = {n for n, _ in model.named_children()}
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
            if n_out != m.num_features:
                setattr(model, s.name, smaller_like(m, n_in, n_out))
            continue
        if m.weight.shape[:2] != (n_out, n_in):  # type: ignore[index]
            setattr(model, s.name, smaller_like(m, n_in, n_out))
    return steps
