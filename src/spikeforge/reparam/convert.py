"""Reparameterization of a hybrid model into an all-spiking, neuron-only :class:`ConvertedGraph`.

The converter is a :class:`~.walk.ModelWalker` tracking each hybrid tensor as a
:class:`~.values.Val`. Per module:

- conv / linear → a synaptic node reading binary tensors only (see :mod:`.synapse`); a following
  batch norm is folded into it (``BN(W∗x + b) = (g·W)∗x + g·b + h``); pools and flattens before it
  are recorded on it (executors fold them into the weights); masked (developed) layers contribute
  their effective weights ``W ⊙ M`` (the masks are baked, whether or not the loader did it);
- spiking neuron → ``neuron`` node with the same ``(a, b, c, θ, reset)`` → spikes (``u = 1, M = 1``);
- SpikingReLU ``y = s·clamp(round(x/s), 0, L)`` → a ``level`` term of its input ``x``; wherever it is
  read, threshold units (:mod:`.units`: unary, or bit planes by successive approximation) turn it
  into spikes, and the factor ``s·c_k`` of unit ``k`` moves into the reader's weights
  (``W·(s·q) = Σ_k (s·c_k·W)·z_k``) or into an ``add``/``output`` scale;
- residual add of integer values (SEW: spikes + spikes) with bit-plane coding and a range ``M ≥ 3`` →
  an ``add`` node counting them (``u·n₁ + u·n₂ = u·(n₁ + n₂)``), split into units where it is read;
  smaller sums and unary coding keep the spike terms apart (readers take each as a binary source);
  an add involving a membrane (standard, MS) → an analog ``add`` node;
- max pool of spikes → ``sumpool`` + a threshold unit at ½ (the OR of the window); of levels → their
  unary units pooled the same way (``max q = Σ_k OR(q ≥ k)``); of a real value (membrane, analog
  input) → a ``maxpool`` node, the one nonlinearity that is not a neuron (reported by ``verify``,
  refused by the NIR export);
- 8-bit pixel input (``bitplane``) → the input node carries ``p`` and 8 threshold units (successive
  approximation, ``s = 1``) make its bit planes.

Anything else raises :class:`UnsupportedModelError` naming the module.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import nn

from ..develop.masking import MaskedConv2d, MaskedLinear
from ..hybrid.spiking_relu import SpikingReLU
from ..neurons import SpikingNeuron
from .fold import F64, bn_affine, bn_mean_abs, is_flatten, pool_kernel
from .graph import PIXEL_BITS, ConvertedGraph, Node
from .synapse import Factors, Pool, conv_node, fold_bn_into_node, linear_node
from .units import CODINGS, code, integer_threshold, level_threshold
from .values import Term, Val
from .walk import ModelWalker, UnsupportedModelError

INPUT_ENCODINGS = ("analog", "bitplane")
PIXEL_MAX = 2**PIXEL_BITS - 1
PIXEL_CODING = "bitplane"  # 8 units for 8-bit pixels whatever the site coding
MERGE_MIN_LEVEL = 3  # SEW sums below this range stay separate spike terms (cheaper than units)
OR_LEVEL = 1  # a sum-pooled window of spikes fires the OR unit when it holds at least one spike

__all__ = ["INPUT_ENCODINGS", "InputSpec", "UnsupportedModelError", "Converter", "convert_model"]


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


@torch.no_grad()
def _probe(mods: list[nn.Module], shape: tuple[int, ...]) -> tuple[int, ...]:
    x = torch.zeros(1, 1, *shape, dtype=F64)
    for m in mods:
        x = m(x)
    return tuple(x.shape[2:])


def synapse_parameters(m: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A conv/linear layer's weight and bias as its forward pass uses them (pruning masks applied)."""
    if isinstance(m, MaskedConv2d | MaskedLinear):
        return m.effective_weight(), m.effective_bias()
    return cast(torch.Tensor, m.weight), cast(torch.Tensor | None, m.bias)


def _listify(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


class Converter(ModelWalker[Val]):
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
        self.unit_cache: dict[tuple[str, str, float, int], list[tuple[str, int]]] = {}

    # -- graph building ---------------------------------------------------------------------
    def emit(self, node: Node) -> str:
        base, i = node.name, 1
        while node.name in self.names:
            i += 1
            node.name = f"{base}_{i}"
        self.names.add(node.name)
        self.nodes.append(node)
        return node.name

    def convert(self, model: nn.Module) -> ConvertedGraph:
        spec = self.spec
        attrs: dict[str, Any] = {"encoding": "analog", "shape": list(spec.shape)}
        if spec.encoding == "bitplane":
            mean, std = spec.norm()
            attrs.update(encoding="pixels", mean=mean.tolist(), std=std.tolist(), bits=PIXEL_BITS)
        name = self.emit(Node("input", "input", [], attrs))
        kind = "pixels" if spec.encoding == "bitplane" else "input"
        val = self.walk(model, Val(kind, tuple(spec.shape), node=name), "")
        inputs, scales = self.sum_of(val, "output")
        self.emit(Node("output", "output", inputs, {"scales": scales}))
        return ConvertedGraph(self.nodes, {"time_steps": spec.time_steps, "coding": self.coding,
                                           "input_encoding": spec.encoding})

    def units(self, term: Term, coding: str) -> list[tuple[str, int]]:
        """Threshold units whose spikes ``z_k`` encode ``term``'s integer as ``Σ_k c_k z_k``: ``[(node, c_k)]``."""
        if term.kind == "spikes":
            return [(term.node, 1)]
        key = (term.node, coding, term.scale, term.max_level)
        if key in self.unit_cache:
            return self.unit_cache[key]
        level = term.kind == "level"
        quantum = term.scale if level else 1.0
        base = term.site or term.node
        out: list[tuple[str, int]] = []
        for u in code(term.max_level, coding):
            theta = level_threshold(quantum, u.boundary) if level else integer_threshold(u.boundary)
            attrs = {"weights": [1.0] + [-out[j][1] * quantum for j in u.laterals], "threshold": theta,
                     "digit": u.digit, "boundary": u.boundary, "tie": "up" if u.tie_up else "down",
                     "quantum": quantum, "levels": term.max_level, "code": coding, "site": base,
                     "role": "level" if level else "count"}
            inputs = [term.node] + [out[j][0] for j in u.laterals]
            out.append((self.emit(Node(f"{base}.u{u.index}", "threshold", inputs, attrs)), u.digit))
        self.unit_cache[key] = out
        return out

    def sources(self, val: Val) -> tuple[list[tuple[str, Factors]], torch.Tensor | None]:
        """Binary sources of a synaptic layer reading ``val`` with their factors, and the pixel offset."""
        if val.kind == "input":
            return [(val.node, [1.0])], None
        if val.kind == "pixels":
            mean, std = self.spec.norm()
            pixel = Term(val.node, 1.0, PIXEL_MAX, "count", val.node)
            return [(n, [(digit / PIXEL_MAX) / std]) for n, digit in self.units(pixel, PIXEL_CODING)], -mean / std
        return [(n, [t.scale * digit]) for t in val.terms for n, digit in self.units(t, self.coding)], None

    def sum_of(self, val: Val, where: str) -> tuple[list[str], list[float]]:
        """Nodes and scales whose weighted sum is ``val`` (no pending pools allowed)."""
        if val.pending:
            raise UnsupportedModelError(f"{where}: pooling/flatten {[p.name for p in val.pending]} must be "
                                        "followed by a synaptic layer to be folded")
        if val.kind == "pixels":
            raise UnsupportedModelError(f"{where}: bitplane pixels must feed a synaptic layer first")
        if val.kind == "integer":
            pairs = [(n, t.scale * d) for t in val.terms for n, d in self.units(t, self.coding)]
            return [n for n, _ in pairs], [s for _, s in pairs]
        return [val.node], [1.0]

    def to_analog(self, val: Val, where: str) -> str:
        inputs, scales = self.sum_of(val, where)
        if len(inputs) == 1 and scales[0] == 1.0:
            return inputs[0]
        return self.emit(Node(f"{where}.in", "add", inputs, {"scales": scales}))

    # -- walker hooks ---------------------------------------------------------------------------
    def fork(self, val: Val, path: str) -> None:
        self.shared.add(val.node)

    def add(self, vals: list[Val], path: str) -> Val:
        shape = vals[0].shape
        if any(v.pending or v.shape != shape for v in vals):
            raise UnsupportedModelError(f"{path}: residual add of pooled or differently shaped values")
        if all(v.kind == "integer" for v in vals):
            groups: OrderedDict[float, list[Term]] = OrderedDict()
            for t in (t for v in vals for t in v.terms):
                groups.setdefault(t.scale, []).append(t)
            terms: list[Term] = []
            for scale, ts in groups.items():
                total = sum(t.max_level for t in ts)
                if len(ts) == 1 or self.coding == "unary" or total < MERGE_MIN_LEVEL:
                    terms += ts
                    continue
                pairs = [(n, float(d)) for t in ts for n, d in self.units(t, self.coding)]
                node = self.emit(Node(f"{path}.add", "add", [n for n, _ in pairs], {"scales": [d for _, d in pairs]}))
                terms.append(Term(node, scale, total, "count", node))
            return Val("integer", shape, terms=terms)
        inputs: list[str] = []
        scales: list[float] = []
        for v in vals:
            i, s = self.sum_of(v, path)
            inputs += i
            scales += s
        return Val("analog", shape, node=self.emit(Node(f"{path}.add", "add", inputs, {"scales": scales})))

    def synapse(self, m: nn.Module, val: Val, path: str) -> Val:
        if val.kind == "analog":
            raise UnsupportedModelError(f"{path}: the synaptic layer would read a real-valued tensor "
                                        "(membrane potential); only spikes, SpikingReLU levels and the model "
                                        "input can feed a synaptic layer")
        pools, flat, size = [], False, val.shape
        for p in val.pending:
            if is_flatten(p.module):
                flat = True
                continue
            if len(size) != 3 or flat:
                raise UnsupportedModelError(f"{p.name}: pooling needs a [C, H, W] input before the flatten")
            try:
                kernel = pool_kernel(p.module, (size[1], size[2]))
            except ValueError as e:
                raise UnsupportedModelError(f"{p.name}: {e}") from None
            pools.append(Pool(p.name, kernel))
            size = (size[0], size[1] // kernel[0], size[2] // kernel[1])
        sources, offset = self.sources(val)
        weight, raw_bias = synapse_parameters(m)
        weight = weight.detach().to(F64)
        bias = None if raw_bias is None else raw_bias.detach().to(F64)
        try:
            if isinstance(m, nn.Conv2d):
                if flat:
                    raise ValueError("a conv cannot read a flattened input")
                node = conv_node(path, m, weight, bias, pools, val.shape, sources, offset)
            else:
                node = linear_node(path, weight, bias, pools, flat, val.shape, sources, offset)
        except ValueError as e:
            raise UnsupportedModelError(f"{path}: {e}") from None
        node.attrs["source"] = path
        node.attrs["analog_input"] = val.kind == "input"
        if flat:
            node.attrs["flatten"] = next(p.name for p in val.pending if is_flatten(p.module))
        name = self.emit(node)
        return Val("analog", _probe([*(p.module for p in val.pending), m], val.shape), node=name)

    def batchnorm(self, bn: nn.Module, val: Val, path: str) -> Val:
        last = self.nodes[-1]
        if val.kind != "analog" or val.node != last.name or last.op not in ("conv", "linear") \
                or val.node in self.shared:
            raise UnsupportedModelError(f"{path}: batch norm must directly follow a conv/linear layer "
                                        "to be folded into it")
        g, h = bn_affine(bn)
        fold_bn_into_node(last, g, h, bn_mean_abs(bn))
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
        step = float(m.step.detach().to(F64).abs().clamp(min=torch.finfo(F64).tiny))
        return Val("integer", val.shape, terms=[Term(x, step, int(m.levels), "level", path)])

    def avgpool(self, m: nn.Module, val: Val, path: str) -> Val:
        return self._pending(m, val, path)

    def flatten(self, m: nn.Module, val: Val, path: str) -> Val:
        return self._pending(m, val, path)

    def _pending(self, m: nn.Module, val: Val, path: str) -> Val:
        if val.kind == "analog":
            raise UnsupportedModelError(f"{path}: pooling/flatten of a real-valued tensor (membrane) "
                                        "cannot be folded; only spikes, levels and inputs can be pooled")
        return val.with_pending(path, m)

    def maxpool(self, m: nn.Module, val: Val, path: str) -> Val:
        if val.pending or val.kind == "pixels" or (val.kind == "integer" and len(val.terms) != 1):
            raise UnsupportedModelError(f"{path}: max pool must act on spikes, one integer level tensor, "
                                        "a membrane or the analog input (not on a sum or pooled value)")
        attrs = {k: _listify(v) for k, v in dict(kernel_size=m.kernel_size, stride=m.stride, padding=m.padding,
                                                 dilation=m.dilation, ceil_mode=m.ceil_mode).items()}
        shape = _probe([m], val.shape)
        if val.kind != "integer":  # a real value: the one non-neuron node
            return Val(val.kind, shape, node=self.emit(Node(path, "maxpool", [val.node], attrs)))
        if attrs["dilation"] not in (1, [1, 1]):
            raise UnsupportedModelError(f"{path}: max pool with dilation is not supported on spikes")
        term = val.terms[0]
        pooled: list[Term] = []
        for j, (unit, _digit) in enumerate(self.units(term, "unary")):  # thermometer: max q = Σ_k OR(z_k)
            suffix = "" if term.max_level == 1 else str(j)
            s = self.emit(Node(f"{path}.sum{suffix}", "sumpool", [unit], dict(attrs)))
            or_attrs = {"weights": [1.0], "threshold": integer_threshold(OR_LEVEL), "digit": 1,
                        "boundary": OR_LEVEL, "tie": "down", "quantum": 1.0, "levels": 1, "code": "unary",
                        "site": path, "role": "or"}
            or_node = self.emit(Node(f"{path}.or{suffix}", "threshold", [s], or_attrs))
            pooled.append(Term(or_node, term.scale, 1, "spikes", path))
        return Val("integer", shape, terms=pooled)


@torch.no_grad()
def convert_model(model: nn.Module, spec: InputSpec | Any, coding: str = "bitplane",
                  input_encoding: str | None = None) -> ConvertedGraph:
    """Reparameterize ``model`` (a hybrid or pure SNN of the model zoo) into a converted graph.

    ``spec`` is an :class:`InputSpec` or a recipe (shape from ``recipe.model``, T from
    ``recipe.data``; bitplane input then needs mean/std: pass an InputSpec). The model is
    copied, cast to float64 and put in eval mode; the original is untouched. Pruning masks of a
    structurally developed model are baked into the copy (``W ⊙ M``, dead neurons' biases zero,
    gated batch-norm channels zero), so an in-memory developed model converts what it computes.
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
