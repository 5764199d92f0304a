"""Building one converted synaptic node from a hybrid conv/linear layer and what feeds it.

A layer ``W`` (BN already folded, bias ``b``) reads the hybrid value
``x = pending(Σ_j Σ_k f_jk ⊙ b_jk) + o`` — binary sources ``b_jk`` (spikes, or the planes of an
integer term) with factors ``f_jk`` (scalars, or per input channel for pixel planes), average
pools / flattens ``pending`` and, for normalised pixels only, a per-channel offset ``o = −m/σ``.
By linearity

    W·x + b = Σ_jk (f_jk · (W∘pending))·b_jk + (W∘pending)·o + b

so the converted node reads ``cat_jk(b_jk)`` with weight ``cat_jk(f_jk · (W∘pending))`` and bias
``b + (W∘pending)·o``. For a conv the offset term is a position-dependent *bias map*
``conv2d(o·1_{H×W}, W∘pending)``: border outputs see zero padding, not ``o``, so it cannot be a
per-channel constant. ``W∘pending`` is :mod:`spikeforge.reparam.fold`'s folding of the pools.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .fold import F64, _is_flatten, fold_avgpool_into_conv, fold_pools_into_linear
from .graph import Node
from .planes import expand_input_weight

Factors = list[float] | list[torch.Tensor]


def _pair(v: Any) -> list[int]:
    return [int(v[0]), int(v[1])] if isinstance(v, tuple | list) else [int(v), int(v)]


def conv_node(name: str, conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor | None,
              pending: list[nn.Module], shape: tuple[int, ...], sources: list[tuple[str, Factors]],
              offset: torch.Tensor | None) -> Node:
    if conv.groups != 1 or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        raise ValueError(f"{name}: only convs with groups=1, zero padding given as integers are supported")
    if len(shape) != 3:
        raise ValueError(f"{name}: a conv needs a [C, H, W] input, got per-sample shape {shape}")
    if any(_is_flatten(p) for p in pending) or len(pending) > 1:
        raise ValueError(f"{name}: only a single average pool can be folded into a conv, got {pending}")
    geom: dict[str, Any]
    if pending:
        w, geom = fold_avgpool_into_conv(weight, conv, pending[0], (shape[1], shape[2]))
    else:
        w = weight.to(F64)
        geom = {"stride": _pair(conv.stride), "padding": _pair(conv.padding),
                "dilation": _pair(conv.dilation), "crop": None}
    tensors = {"weight": torch.cat([expand_input_weight(w, f) for _, f in sources], dim=1)}
    if bias is not None:
        tensors["bias"] = bias.to(F64)
    if offset is not None:
        h, ww = geom["crop"] or [shape[1], shape[2]]
        const = offset.to(w).reshape(1, -1, 1, 1).expand(1, shape[0], h, ww)
        tensors["bias_map"] = F.conv2d(const, w, None, geom["stride"], geom["padding"], geom["dilation"])[0]
    return Node(name, "conv", [s for s, _ in sources], geom, tensors)


def linear_node(name: str, weight: torch.Tensor, bias: torch.Tensor | None, pending: list[nn.Module],
                shape: tuple[int, ...], sources: list[tuple[str, Factors]],
                offset: torch.Tensor | None) -> Node:
    if len(shape) > 1 and not any(_is_flatten(p) for p in pending):
        raise ValueError(f"{name}: a linear layer needs a flattened input, got per-sample shape {shape}")
    w = fold_pools_into_linear(weight, pending, shape)  # [O, numel(shape)]
    channels = shape[0]
    per_feature = w.shape[1] // channels

    def widen(f: Factors) -> list[Any]:
        return [c.to(w).repeat_interleave(per_feature) if isinstance(c, torch.Tensor) else c for c in f]

    tensors = {"weight": torch.cat([expand_input_weight(w, widen(f)) for _, f in sources], dim=1)}
    b = None if bias is None else bias.to(F64)
    if offset is not None:
        shift = w @ offset.to(w).repeat_interleave(per_feature)
        b = shift if b is None else b + shift
    if b is not None:
        tensors["bias"] = b
    return Node(name, "linear", [s for s, _ in sources], {}, tensors)


def fold_bn_into_node(node: Node, g: torch.Tensor, h: torch.Tensor) -> None:
    """``BN(node) = g·node + h`` per output channel, folded into the node's tensors in place."""
    t = node.tensors
    w = t["weight"]
    t["weight"] = w * g.to(w).reshape([-1] + [1] * (w.dim() - 1))
    t["bias"] = h.to(w) if "bias" not in t else t["bias"] * g.to(w) + h.to(w)
    if "bias_map" in t:
        t["bias_map"] = t["bias_map"] * g.to(w).reshape(-1, 1, 1)
