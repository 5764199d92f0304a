"""Building one converted synaptic node from a hybrid conv/linear layer, and folding it for execution.

A layer ``W`` (BN already folded, bias ``b``) reads the hybrid value
``x = pool(Σ_j Σ_k f_jk ⊙ z_jk) + o`` — binary sources ``z_jk`` (spikes, or the threshold units
of an integer term) with factors ``f_jk`` (scalars, or per input channel for pixel planes),
average pools with kernel = stride ``pool`` and, for normalised pixels only, a per-channel offset
``o = −m/σ``. By linearity

    W·x + b = Σ_jk (f_jk · W)·pool(z_jk) + W·pool(o) + b

The node stores ``W' = cat_jk(f_jk · W)`` on the input axis (sources concatenated on the channel
axis, ``attrs.sources`` = their channel counts), the pools (``attrs.pool``: kernels, in order) and
the bias ``b``; the offset becomes a bias (linear) or a position-dependent *bias map*
``conv2d(pool(o·1_{H×W}), W)`` (conv: border outputs see zero padding, not ``o``). This unfolded
form is what NIR receives (an ``AvgPool2d`` per pool, one synapse per source). Executors run
:func:`folded`: the pools folded into ``W'`` (:mod:`.fold`), so the layer reads the binary
sources themselves and every input event costs ``fan-out`` accumulations.

``bias_abs`` (optional tensor) bounds the magnitude of the terms summed into the bias
(``|g|·(|b| + |μ|) + |β|`` after a batch norm, plus the offset's ``|W|·|o|``); the verifier's
error bound uses it. ``attrs.exact_fold`` is true when every factor folded into the weights was
applied without rounding (powers of two times float32-short values, no batch norm).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .floats import MANTISSA_BITS, is_power_of_two, significant_bits
from .fold import F64, fold_avgpool_into_conv, fold_pools_into_linear
from .graph import Node
from .planes import expand_input_weight

Factors = list[float] | list[torch.Tensor]


def _pair(v: Any) -> list[int]:
    return [int(v[0]), int(v[1])] if isinstance(v, tuple | list) else [int(v), int(v)]


@dataclass
class Pool:
    """An average pool with kernel = stride (no padding, floor mode), named after its module."""

    name: str
    kernel: tuple[int, int]

    def to_attr(self) -> dict[str, Any]:
        return {"name": self.name, "kernel": list(self.kernel)}


def pools_of(node: Node) -> list[Pool]:
    return [Pool(p["name"], (int(p["kernel"][0]), int(p["kernel"][1]))) for p in node.attrs.get("pool", [])]


def exact_factors(weight: torch.Tensor, factors: list[Factors]) -> bool:
    """Whether every product ``f·W`` is exact in float64 (powers of two, or short enough operands)."""
    bits = significant_bits(weight)
    for fs in factors:
        for f in fs:
            if isinstance(f, torch.Tensor):
                return False
            if not is_power_of_two(f) and bits + significant_bits(torch.tensor([f])) > MANTISSA_BITS:
                return False
    return True


def conv_node(name: str, conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor | None, pools: list[Pool],
              shape: tuple[int, ...], sources: list[tuple[str, Factors]], offset: torch.Tensor | None) -> Node:
    if conv.groups != 1 or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        raise ValueError(f"{name}: only convs with groups=1, zero padding given as integers are supported")
    if len(shape) != 3:
        raise ValueError(f"{name}: a conv needs a [C, H, W] input, got per-sample shape {shape}")
    if len(pools) > 1:
        raise ValueError(f"{name}: only a single average pool can be folded into a conv, got {len(pools)}")
    attrs: dict[str, Any] = {"stride": _pair(conv.stride), "padding": _pair(conv.padding),
                             "dilation": _pair(conv.dilation), "pool": [p.to_attr() for p in pools],
                             "sources": [shape[0]] * len(sources), "in_shape": list(shape),
                             "exact_fold": exact_factors(weight, [f for _, f in sources])}
    w = weight.to(F64)
    tensors = {"weight": torch.cat([expand_input_weight(w, f) for _, f in sources], dim=1)}
    if bias is not None:
        tensors["bias"] = bias.to(F64)
    node = Node(name, "conv", [s for s, _ in sources], attrs, tensors)
    if offset is not None:
        fw = folded(Node(name, "conv", [], attrs, {"weight": w}))
        h, ww = fw.crop or [shape[1], shape[2]]
        const = offset.to(w).reshape(1, -1, 1, 1).expand(1, shape[0], h, ww)
        tensors["bias_map"] = F.conv2d(const, fw.weight, None, fw.stride, fw.padding, fw.dilation)[0]
        abs_map = F.conv2d(const.abs(), fw.weight.abs(), None, fw.stride, fw.padding, fw.dilation)[0]
        b_abs = bias.abs().to(w).reshape(-1, 1, 1) if bias is not None else 0.0
        tensors["bias_abs"] = abs_map + b_abs
        attrs["exact_fold"] = False
    return node


def linear_node(name: str, weight: torch.Tensor, bias: torch.Tensor | None, pools: list[Pool], flat: bool,
                shape: tuple[int, ...], sources: list[tuple[str, Factors]], offset: torch.Tensor | None) -> Node:
    if len(shape) > 1 and not flat:
        raise ValueError(f"{name}: a linear layer needs a flattened input, got per-sample shape {shape}")
    w = weight.to(F64)  # [O, C·m] (m: pooled positions per channel)
    channels = shape[0]
    per_feature = w.shape[1] // channels

    def widen(f: Factors) -> Factors:
        if all(isinstance(c, float) for c in f):
            return f
        return [torch.as_tensor(c).to(w).repeat_interleave(per_feature) for c in f]

    attrs: dict[str, Any] = {"pool": [p.to_attr() for p in pools], "sources": [channels] * len(sources),
                             "in_shape": list(shape), "exact_fold": exact_factors(w, [f for _, f in sources])}
    tensors = {"weight": torch.cat([expand_input_weight(w, widen(f)) for _, f in sources], dim=1)}
    b = None if bias is None else bias.to(F64)
    if offset is not None:
        o = offset.to(w).repeat_interleave(per_feature)
        shift, shift_abs = w @ o, w.abs() @ o.abs()
        tensors["bias_abs"] = shift_abs + (0.0 if b is None else b.abs())
        b = shift if b is None else b + shift
        attrs["exact_fold"] = False
    if b is not None:
        tensors["bias"] = b
    return Node(name, "linear", [s for s, _ in sources], attrs, tensors)


def fold_bn_into_node(node: Node, g: torch.Tensor, h: torch.Tensor, mean_abs: torch.Tensor) -> None:
    """``BN(node) = g·node + h`` per output channel, folded into the node's tensors in place.

    ``mean_abs`` (``|μ|``) and ``|β|`` enter ``bias_abs``, the magnitude of the bias's terms.
    """
    t = node.tensors
    w = t["weight"]
    g, h = g.to(w), h.to(w)
    beta_abs = (h + mean_abs.to(w) * g).abs()
    shape = [-1] + [1] * (w.dim() - 1)
    t["weight"] = w * g.reshape(shape)
    prev_abs = t.get("bias_abs", t["bias"].abs() if "bias" in t else torch.zeros_like(g))
    gb = g.reshape(-1, *([1] * (prev_abs.dim() - 1)))
    t["bias_abs"] = gb.abs() * (prev_abs + mean_abs.to(w).reshape(gb.shape)) + beta_abs.reshape(gb.shape)
    t["bias"] = h if "bias" not in t else t["bias"] * g + h
    if "bias_map" in t:
        t["bias_map"] = t["bias_map"] * g.reshape(-1, 1, 1)
    node.attrs["exact_fold"] = False


@dataclass
class FoldedSynapse:
    """What an executor runs: the pools folded into the weight (the layer reads the binary inputs)."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    bias_map: torch.Tensor | None
    stride: list[int]
    padding: list[int]
    dilation: list[int]
    crop: list[int] | None

    def to(self, device: torch.device, dtype: torch.dtype = F64) -> FoldedSynapse:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, dtype)

        weight = self.weight.to(device, dtype)
        return FoldedSynapse(weight, move(self.bias), move(self.bias_map), self.stride, self.padding, self.dilation,
                             self.crop)


def folded(node: Node) -> FoldedSynapse:
    """The executable form of a synaptic node (format 1 nodes are stored folded already)."""
    a, t = node.attrs, node.tensors
    w = t["weight"]
    pools = pools_of(node)
    stride, padding, dilation = a.get("stride", [1, 1]), a.get("padding", [0, 0]), a.get("dilation", [1, 1])
    crop = a.get("crop")
    if pools and node.op == "conv":
        shape = a["in_shape"]
        w, geom = fold_avgpool_into_conv(w, pools[0].kernel, stride, padding, dilation, (shape[1], shape[2]))
        stride, padding, dilation, crop = geom["stride"], geom["padding"], geom["dilation"], geom["crop"]
    elif pools or (node.op == "linear" and len(a.get("in_shape", [])) == 3):
        _, h, ww = a["in_shape"]
        w = fold_pools_into_linear(w, [p.kernel for p in pools], (sum(a["sources"]), h, ww))
    return FoldedSynapse(w, t.get("bias"), t.get("bias_map"), list(stride), list(padding), list(dilation), crop)
