"""Reparameterization of a hybrid model into an all-spiking :class:`ConvertedGraph`.

The converter walks the model zoo's structure (``Net``/``nn.Sequential`` children in order and
:class:`spikeforge.models.BasicBlock` in its three residual styles), tracking each hybrid tensor
as a :class:`~spikeforge.reparam.values.Val`. Per module:

- conv / linear → a synaptic node reading binary tensors only (see :mod:`.synapse`); a following
  batch norm is folded into it (``BN(W∗x + b) = (g·W)∗x + g·b + h``);
- spiking neuron → ``neuron`` node with the same ``(a, b, c, θ, reset)`` → spikes (``u = 1, M = 1``);
- SpikingReLU ``y = s·clamp(round(x/s), 0, L)`` → ``quantize`` node (integer ``q``, ``u = s, M = L``);
  where ``q`` feeds a synaptic layer it is split into binary planes (``planes`` node) and
  ``s·2^k`` (or ``s``, unary) is folded into that layer's weights: ``W·(s·q) = Σ_k (s·2^k·W)·b_k``;
- residual add of integer values (SEW: spikes + spikes) → an integer ``add`` node (equal quanta
  merge: ``u·n₁ + u·n₂ = u·(n₁ + n₂)``, ``M = M₁ + M₂``) decomposed into planes at its consumers;
  an add involving a membrane (standard, MS) → an analog ``add`` node;
- average pools and flattens → folded into the next synaptic layer; max pool → ``maxpool``
  node (on spikes or integer levels it commutes with nothing and is applied before the planes).

Anything else raises :class:`UnsupportedModelError` naming the module.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import nn

from .. import layers as L
from ..hybrid.spiking_relu import SpikingReLU
from ..models import BasicBlock
from ..models.common import Net
from ..neurons import Site, SpikingNeuron
from .fold import F64, _is_flatten, bn_affine
from .graph import PIXEL_BITS, ConvertedGraph, Node
from .planes import CODINGS, plane_count, plane_factors
from .synapse import Factors, conv_node, fold_bn_into_node, linear_node
from .values import Term, Val

INPUT_ENCODINGS = ("analog", "bitplane")
PIXEL_MAX = 2**PIXEL_BITS - 1
PASS_THROUGH: tuple[type[nn.Module], ...] = (nn.Identity, nn.Dropout, L.Dropout)  # identities in eval mode


class UnsupportedModelError(ValueError):
    """The model contains a module or a wiring the converter cannot reparameterize exactly."""


@dataclass
class InputSpec:
    """The model input: per-sample ``shape`` ``(C, H, W)``; for ``bitplane``, pixel normalisation."""

    shape: tuple[int, ...]
    time_steps: int = 4
    encoding: str = "analog"  # "analog" | "bitplane"
    mean: tuple[float, ...] = field(default_factory=tuple)  # per channel, [0, 1] units (empty: 0)
    std: tuple[float, ...] = field(default_factory=tuple)  # per channel (empty: 1)

    def norm(self) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.shape[0]
        mean = torch.tensor(self.mean or (0.0,) * c, dtype=F64)
        std = torch.tensor(self.std or (1.0,) * c, dtype=F64)
        if mean.numel() != c or std.numel() != c:
            raise ValueError(f"input mean/std need {c} values, got {len(self.mean)}/{len(self.std)}")
        return mean, std


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


@torch.no_grad()
def _probe(mods: list[nn.Module], shape: tuple[int, ...]) -> tuple[int, ...]:
    x = torch.zeros(1, 1, *shape, dtype=F64)
    for m in mods:
        x = m(x)
    return tuple(x.shape[2:])


def _is_avgpool(m: nn.Module) -> bool:
    return isinstance(m, nn.AvgPool2d | nn.AdaptiveAvgPool2d)


class Converter:
    """Walks one (float64, eval-mode) hybrid model and emits graph nodes."""

    def __init__(self, spec: InputSpec, coding: str = "bitplane") -> None:
        if coding not in CODINGS:
            raise ValueError(f"plane coding must be one of {CODINGS}, got {coding!r}")
        if spec.encoding not in INPUT_ENCODINGS:
            raise ValueError(f"input encoding must be one of {INPUT_ENCODINGS}, got {spec.encoding!r}")
        self.spec, self.coding = spec, coding
        self.nodes: list[Node] = []
        self.names: set[str] = set()
        self.shared: set[str] = set()
        self.plane_nodes: dict[str, str] = {}

    # -- graph building ---------------------------------------------------------------------
    def emit(self, node: Node) -> str:
        base, i = node.name, 1
        while node.name in self.names:
            i += 1
            node.name = f"{base}#{i}"
        self.names.add(node.name)
        self.nodes.append(node)
        return node.name

    def convert(self, model: nn.Module) -> ConvertedGraph:
        spec = self.spec
        attrs: dict[str, Any] = {"encoding": spec.encoding, "shape": list(spec.shape)}
        if spec.encoding == "bitplane":
            mean, std = spec.norm()
            attrs.update(mean=mean.tolist(), std=std.tolist(), bits=PIXEL_BITS)
        name = self.emit(Node("input", "input", [], attrs))
        kind = "pixels" if spec.encoding == "bitplane" else "input"
        val = self.walk(model, Val(kind, tuple(spec.shape), node=name), "")
        inputs, scales = self.sum_of(val, "output")
        self.emit(Node("output", "output", inputs, {"scales": scales}))
        return ConvertedGraph(self.nodes, {"time_steps": spec.time_steps, "coding": self.coding,
                                           "input_encoding": spec.encoding})

    def sum_of(self, val: Val, where: str) -> tuple[list[str], list[float]]:
        """Nodes and scales whose weighted sum is ``val`` (no pending pools allowed)."""
        if val.pending:
            raise UnsupportedModelError(f"{where}: pooling/flatten {val.pending} must be followed by a "
                                        "synaptic layer to be folded")
        if val.kind == "pixels":
            raise UnsupportedModelError(f"{where}: bitplane pixels must feed a synaptic layer first")
        if val.kind == "integer":
            return [t.node for t in val.terms], [t.scale for t in val.terms]
        return [val.node], [1.0]

    def to_analog(self, val: Val, where: str) -> str:
        inputs, scales = self.sum_of(val, where)
        if len(inputs) == 1 and scales[0] == 1.0:
            return inputs[0]
        return self.emit(Node(f"{where}:sum", "add", inputs, {"scales": scales}))

    def planes(self, term: Term) -> str:
        if term.node not in self.plane_nodes:
            attrs = {"coding": self.coding, "max_level": term.max_level,
                     "planes": plane_count(term.max_level, self.coding)}
            self.plane_nodes[term.node] = self.emit(Node(f"{term.node}:planes", "planes", [term.node], attrs))
        return self.plane_nodes[term.node]

    # -- module walk --------------------------------------------------------------------------
    def walk(self, m: nn.Module, val: Val, path: str) -> Val:
        if isinstance(m, BasicBlock):
            return self.block(m, val, path)
        if type(m) in (nn.Sequential, Net):
            for name, child in m.named_children():
                val = self.walk(child, val, _join(path, name))
            return val
        if isinstance(m, nn.Conv2d | nn.Linear):
            return self.synapse(m, val, path)
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            return self.batchnorm(m, val, path)
        if isinstance(m, SpikingReLU):
            return self.spiking_relu(m, val, path)
        if isinstance(m, SpikingNeuron):
            return self.neuron(m, val, path)
        if isinstance(m, Site):
            raise UnsupportedModelError(f"{path}: site type {type(m).__name__} is not supported")
        if _is_avgpool(m) or _is_flatten(m):
            if val.kind == "analog":
                raise UnsupportedModelError(f"{path}: pooling/flatten of a real-valued tensor (membrane) "
                                            "cannot be folded; only spikes, levels and inputs can be pooled")
            return val.with_pending(m)
        if isinstance(m, nn.MaxPool2d):
            return self.maxpool(m, val, path)
        if isinstance(m, PASS_THROUGH):
            return val
        raise UnsupportedModelError(f"{path}: module {type(m).__name__} is not supported by the converter "
                                    "(supported: Conv2d, Linear, BatchNorm1d/2d, AvgPool2d, "
                                    "AdaptiveAvgPool2d, MaxPool2d, Flatten, Dropout, spiking neurons, "
                                    "SpikingReLU, BasicBlock)")

    def block(self, blk: BasicBlock, x: Val, path: str) -> Val:
        def sub(name: str, v: Val) -> Val:
            return self.walk(getattr(blk, name), v, _join(path, name))

        self.shared.add(x.node)
        if blk.style == "ms":
            s = sub("sn1", x)
            out = sub("bn2", sub("conv2", sub("sn2", sub("bn1", sub("conv1", s)))))
            short = x if blk.downsample is None else sub("downsample", s)
            return self.add([out, short], path)
        out = sub("bn2", sub("conv2", sub("sn1", sub("bn1", sub("conv1", x)))))
        short = x if blk.downsample is None else sub("downsample", x)
        if blk.style == "standard":
            return sub("sn2", self.add([out, short], path))
        if blk.style == "sew":
            return self.add([sub("sn2", out), short], path)
        raise UnsupportedModelError(f"{path}: residual style {blk.style!r} is not supported")

    def add(self, vals: list[Val], path: str) -> Val:
        shape = vals[0].shape
        if any(v.pending or v.shape != shape for v in vals):
            raise UnsupportedModelError(f"{path}: residual add of pooled or differently shaped values")
        if all(v.kind == "integer" for v in vals):
            groups: OrderedDict[float, list[Term]] = OrderedDict()
            for t in (t for v in vals for t in v.terms):
                groups.setdefault(t.scale, []).append(t)
            terms = []
            for scale, ts in groups.items():
                if len(ts) == 1:
                    terms.append(ts[0])
                    continue
                ones = {"scales": [1.0] * len(ts)}
                node = self.emit(Node(f"{path}:add", "add", [t.node for t in ts], ones))
                terms.append(Term(node, scale, sum(t.max_level for t in ts)))
            return Val("integer", shape, terms=terms)
        inputs: list[str] = []
        scales: list[float] = []
        for v in vals:
            i, s = self.sum_of(v, path)
            inputs += i
            scales += s
        return Val("analog", shape, node=self.emit(Node(f"{path}:add", "add", inputs, {"scales": scales})))

    def synapse(self, m: nn.Module, val: Val, path: str) -> Val:
        if val.kind == "analog":
            raise UnsupportedModelError(f"{path}: the synaptic layer would read a real-valued tensor "
                                        "(membrane potential); only spikes, SpikingReLU levels and the model "
                                        "input can feed a synaptic layer")
        offset: torch.Tensor | None = None
        sources: list[tuple[str, Factors]]
        if val.kind == "input":
            sources = [(val.node, [1.0])]
        elif val.kind == "pixels":
            mean, std = self.spec.norm()
            sources = [(val.node, [(2.0**k / PIXEL_MAX) / std for k in range(PIXEL_BITS)])]
            offset = -mean / std
        else:
            sources = []
            for t in val.terms:
                if t.max_level == 1:
                    sources.append((t.node, [t.scale]))
                else:
                    factors = [t.scale * c for c in plane_factors(t.max_level, self.coding)]
                    sources.append((self.planes(t), factors))
        weight = cast(torch.Tensor, m.weight).detach().to(F64)
        bias = None if m.bias is None else cast(torch.Tensor, m.bias).detach().to(F64)
        if isinstance(m, nn.Conv2d):
            node = conv_node(path, m, weight, bias, val.pending, val.shape, sources, offset)
        else:
            node = linear_node(path, weight, bias, val.pending, val.shape, sources, offset)
        node.attrs["source"] = path
        node.attrs["analog_input"] = val.kind == "input"
        name = self.emit(node)
        return Val("analog", _probe([*val.pending, m], val.shape), node=name)

    def batchnorm(self, bn: nn.Module, val: Val, path: str) -> Val:
        last = self.nodes[-1]
        if val.kind != "analog" or val.node != last.name or last.op not in ("conv", "linear") \
                or val.node in self.shared:
            raise UnsupportedModelError(f"{path}: batch norm must directly follow a conv/linear layer "
                                        "to be folded into it")
        g, h = bn_affine(bn)
        fold_bn_into_node(last, g, h)
        last.attrs["folded_bn"] = path
        return val

    def neuron(self, m: SpikingNeuron, val: Val, path: str) -> Val:
        x = self.to_analog(val, path)
        p = m.params()
        if isinstance(p.threshold, torch.Tensor) or isinstance(p.v_reset, torch.Tensor):
            raise UnsupportedModelError(f"{path}: tensor-valued threshold/reset is not supported")
        attrs = {"decay": float(p.decay), "input_gain": float(p.input_gain), "bias": float(p.bias),
                 "threshold": float(p.threshold), "v_reset": None if p.v_reset is None else float(p.v_reset),
                 "kind": type(m).__name__}
        return Val("integer", val.shape, terms=[Term(self.emit(Node(path, "neuron", [x], attrs)), 1.0, 1)])

    def spiking_relu(self, m: SpikingReLU, val: Val, path: str) -> Val:
        x = self.to_analog(val, path)
        step = m.step.detach().to(F64).abs().clamp(min=torch.finfo(F64).tiny)
        attrs = {"step": float(step), "levels": int(m.levels)}
        node = self.emit(Node(path, "quantize", [x], attrs))
        return Val("integer", val.shape, terms=[Term(node, float(step), int(m.levels))])

    def maxpool(self, m: nn.MaxPool2d, val: Val, path: str) -> Val:
        if val.pending or val.kind == "pixels" or (val.kind == "integer" and len(val.terms) != 1):
            raise UnsupportedModelError(f"{path}: max pool must act on spikes, one integer level tensor, "
                                        "a membrane or the analog input (not on a sum or pooled value)")
        attrs = {k: list(v) if isinstance(v, tuple) else v for k, v in
                 dict(kernel_size=m.kernel_size, stride=m.stride, padding=m.padding, dilation=m.dilation,
                      ceil_mode=m.ceil_mode).items()}
        src = val.terms[0].node if val.kind == "integer" else val.node
        node = self.emit(Node(path, "maxpool", [src], attrs))
        shape = _probe([m], val.shape)
        if val.kind == "integer":
            t = val.terms[0]
            return Val("integer", shape, terms=[Term(node, t.scale, t.max_level)])
        return Val(val.kind, shape, node=node)


@torch.no_grad()
def convert_model(model: nn.Module, spec: InputSpec | Any, coding: str = "bitplane",
                  input_encoding: str | None = None) -> ConvertedGraph:
    """Reparameterize ``model`` (a hybrid or pure SNN of the model zoo) into a converted graph.

    ``spec`` is an :class:`InputSpec` or a recipe (shape from ``recipe.model``, T from
    ``recipe.data``; bitplane input then needs mean/std: pass an InputSpec). The model is
    copied, cast to float64 and put in eval mode; the original is untouched.
    """
    if not isinstance(spec, InputSpec):
        spec = InputSpec((spec.model.in_channels, spec.model.input_size, spec.model.input_size),
                         spec.data.time_steps)
    if input_encoding is not None:
        spec = InputSpec(spec.shape, spec.time_steps, input_encoding, spec.mean, spec.std)
    m = copy.deepcopy(model).to("cpu", F64).eval()
    graph = Converter(spec, coding).convert(m)
    device = next((t.device for t in model.parameters()), torch.device("cpu"))
    for n in graph.nodes:
        n.tensors = {k: v.to(device) for k, v in n.tensors.items()}
    return graph
