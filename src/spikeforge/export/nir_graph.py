"""Export spikeforge models to NIR (Neuromorphic Intermediate Representation) from the converted graph.

NIR (https://github.com/neuromorphs/nir; Pedersen et al., Nature Communications 2024) describes a
network as a graph of time-continuous primitives that simulators and neuromorphic hardware import.
Every export goes through the one graph representation, :class:`spikeforge.reparam.ConvertedGraph`
(:func:`spikeforge.reparam.convert_model`: pure SNNs, hybrids, developed and compacted runs,
residual networks), which holds only synapses, neurons, threshold units, pools and sums, so each of
its nodes maps onto NIR primitives (``docs/export.md`` has the table):

    input    → Input  ([C, H, W]: one time step of the encoded input, or of 8-bit pixels)
    conv     → per source: [AvgPool2d | SumPool2d] → Conv2d   (batch norm already folded)
    linear   → per source: [AvgPool2d …] → Flatten → Affine
    neuron   → LIF / IF (:mod:`.neuron_map`), fires at v ≥ θ (``v_threshold = nextafter(θ, −∞)``)
    threshold→ LIF with τ = dt (memoryless) or Threshold; lateral synapses as weighted edges
    sumpool  → SumPool2d / AvgPool2d (the OR of a max-pooled window of spikes, with the next unit)
    add, output → the sum NIR forms at a node with several incoming edges (weights: :mod:`.nir_build`)

A synaptic node reading several binary sources (bit planes, SEW terms) becomes one synapse per
source, all edged into the same consumers. A bias *map* (normalised-pixel input with zero padding)
becomes the consuming neurons' per-neuron drive (LIF ``v_leak``, a threshold unit's ``v_leak`` / its
threshold). Refused, naming the node: max pooling of real values (NIR has no max pool), soft reset,
format-1 graphs (``quantize``/``planes``: reconvert), an IF neuron with a constant drive.
"""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..neurons import NeuronParams
from ..reparam.executor import ConvertedModel
from ..reparam.graph import ConvertedGraph, Node
from ..reparam.synapse import pools_of
from ..train.checkpoint import atomic_write_with
from .neuron_map import nir_neuron
from .nir_build import Builder, ExportOptions

INSTALL_HINT = "pip install 'spikeforge[nir]'"
INPUT_NODE = "input"
OUTPUT_NODE = "output"
NEURON_TYPES = ("LIF", "IF", "Threshold")
SYNAPSE_TYPES = ("Conv2d", "Affine")
Terms = list[tuple[str, float]]


def import_nir() -> ModuleType:
    """The ``nir`` package, or an ``ImportError`` saying how to install it."""
    try:
        return importlib.import_module("nir")
    except ImportError as e:
        raise ImportError(f"NIR export needs the `nir` package: {INSTALL_HINT}") from e


@dataclass
class Signal:
    """An IR node's value as NIR sees it: ``Σ scale · node`` plus a constant per-element drive."""

    terms: Terms
    drive: torch.Tensor | None = None

    def scaled(self, s: float) -> Signal:
        return Signal([(n, s * w) for n, w in self.terms], None if self.drive is None else s * self.drive)


def _sum(signals: list[Signal], scales: list[float]) -> Signal:
    terms: Terms = []
    drive: torch.Tensor | None = None
    for sig, sc in zip(signals, scales, strict=True):
        part = sig.scaled(sc)
        terms += part.terms
        if part.drive is not None:
            drive = part.drive if drive is None else drive + part.drive
    return Signal(terms, drive)


class Translator:
    """Walks a converted graph in order and emits NIR nodes (one dispatch table over the ops)."""

    def __init__(self, graph: ConvertedGraph, options: ExportOptions) -> None:
        self.graph, self.options = graph, options
        self.bld = Builder(import_nir(), options)
        self.signals: dict[str, Signal] = {}
        self.shapes = node_shapes(graph)
        self.ops: dict[str, Callable[[Node], Signal]] = {
            "input": self.input, "conv": self.synapse, "linear": self.synapse, "neuron": self.neuron,
            "threshold": self.threshold, "sumpool": self.sumpool, "add": self.add, "output": self.output}

    def run(self) -> Builder:
        for n in self.graph.nodes:
            op = self.ops.get(n.op)
            if op is None:
                raise ValueError(refusal(n))
            self.signals[n.name] = op(n)
        return self.bld

    # -- helpers ------------------------------------------------------------------------------------
    def inputs(self, node: Node) -> list[Signal]:
        return [self.signals[i] for i in node.inputs]

    def connect(self, sig: Signal, dst: str, gain: float = 1.0) -> None:
        for src, w in sig.terms:
            self.bld.connect(src, dst, w * gain)

    # -- ops ---------------------------------------------------------------------------------------
    def input(self, node: Node) -> Signal:
        nir, shape = self.bld.nir, self.shapes[node.name]
        self.bld.add(INPUT_NODE, nir.Input(input_type={"input": np.array(shape)}), shape)
        return Signal([(INPUT_NODE, 1.0)])

    def synapse(self, node: Node) -> Signal:
        nir, bld, a = self.bld.nir, self.bld, node.attrs
        if "in_shape" not in a:
            raise ValueError(refusal(node))
        w = node.tensors["weight"]
        bias = node.tensors.get("bias", torch.zeros(w.shape[0], dtype=w.dtype))
        pools = pools_of(node)
        per_source = w.shape[1] // len(node.inputs)
        terms: Terms = []
        for j, src in enumerate(node.inputs):
            (src_name, src_scale), = self.signals[src].terms
            tag = "" if len(node.inputs) == 1 else f".{src}"
            wj = w[:, j * per_source:(j + 1) * per_source] * src_scale
            prev, shape = src_name, tuple(a["in_shape"])
            for p in pools:
                prev, shape, divisor = self.pool(f"{p.name}{tag}", prev, shape, p.kernel)
                wj = wj / divisor
            if node.op == "linear" and len(shape) == 3:
                flat = bld.add(f"{a.get('flatten', 'flatten')}{tag}",
                               nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1),
                               (int(np.prod(shape)),))
                bld.connect(prev, flat)
                prev, shape = flat, (int(np.prod(shape)),)
            bj = bias if j == 0 else torch.zeros_like(bias)
            name = f"{node.name}{tag}"
            if node.op == "conv":
                syn = nir.Conv2d(input_shape=shape[1:], weight=bld.array(wj), stride=tuple(a["stride"]),
                                 padding=tuple(a["padding"]), dilation=tuple(a["dilation"]), groups=1,
                                 bias=bld.array(bj))
                out_shape = tuple(int(s) for s in syn.output_type["output"])
            else:
                syn = nir.Affine(weight=bld.array(wj), bias=bld.array(bj))
                out_shape = (int(wj.shape[0]),)
            bld.add(name, syn, out_shape)
            bld.connect(prev, name)
            terms.append((name, 1.0))
        return Signal(terms, node.tensors.get("bias_map"))

    def pool(self, name: str, src: str, shape: tuple[int, ...],
             kernel: tuple[int, int]) -> tuple[str, tuple[int, ...], float]:
        nir = self.bld.nir
        k = np.array(kernel)
        node = (nir.SumPool2d if self.options.pool_node == "sum" else nir.AvgPool2d)(
            kernel_size=k, stride=k, padding=np.array([0, 0]))
        out = (shape[0], shape[1] // kernel[0], shape[2] // kernel[1])
        self.bld.add(name, node, out)
        self.bld.connect(src, name)
        return name, out, float(kernel[0] * kernel[1]) if self.options.pool_node == "sum" else 1.0

    def neuron(self, node: Node) -> Signal:
        a, bld, nir = node.attrs, self.bld, self.bld.nir
        shape = self.shapes[node.name]
        x = self.inputs(node)[0]
        params = NeuronParams(a["decay"], a["input_gain"], a["bias"], a["threshold"], a["v_reset"])
        n = nir_neuron(node.name, params, self.options.dt)
        c = torch.full(shape, float(a["bias"]), dtype=torch.float64)
        if x.drive is not None:
            if n.kind == "IF":
                raise ValueError(f"neuron {node.name!r}: an integrate-and-fire neuron fed a per-position bias map "
                                 "(normalised pixels with zero padding) has a constant drive NIR's IF cannot hold")
            c = c + float(a["input_gain"]) * x.drive.to(c)
        gain = n.r if self.options.unit_r else 1.0
        r = bld.full(shape, 1.0 if self.options.unit_r else n.r)
        theta = np.nextafter(bld.full(shape, n.v_threshold), -np.inf)  # v > θ' ⟺ v ≥ θ (spikeforge)
        meta = {"v_init": n.v_init, "threshold_comparison": "v > v_threshold = nextafter(theta, -inf): v >= theta"}
        if n.kind == "IF":
            nir_node = nir.IF(r=r, v_threshold=theta, v_reset=bld.full(shape, n.v_reset), metadata=meta)
        else:
            tau_over_dt = n.tau / self.options.dt
            nir_node = nir.LIF(tau=bld.full(shape, n.tau), r=r, v_leak=bld.array(c * tau_over_dt),
                               v_threshold=theta, v_reset=bld.full(shape, n.v_reset), metadata=meta)
        bld.add(node.name, nir_node, shape)
        self.connect(x, node.name, gain)
        return Signal([(node.name, 1.0)])

    def threshold(self, node: Node) -> Signal:
        a, bld, nir = node.attrs, self.bld, self.bld.nir
        shape = self.shapes[node.name]
        u = _sum(self.inputs(node), list(a["weights"]))
        theta = float(a["threshold"])
        if self.options.pool_node == "avg" and self.graph.node(node.inputs[0]).op == "sumpool":
            k = self.graph.node(node.inputs[0]).attrs["kernel_size"]
            theta /= float(np.prod(k if isinstance(k, list) else [k, k]))  # an AvgPool2d carries sum / window
        drive = torch.zeros(shape, dtype=torch.float64) if u.drive is None else u.drive.to(torch.float64)
        meta = {"unit": {k: a[k] for k in ("site", "role", "digit", "boundary", "tie", "code") if k in a},
                "threshold_comparison": "u > threshold (strict)"}
        if self.options.threshold_node == "threshold":
            nir_node = nir.Threshold(threshold=bld.array(theta - drive), metadata=meta)
        else:  # LIF with τ = dt: v = (1 − dt/τ)·v + (dt/τ)·(v_leak + R·I) = v_leak + I, no memory
            nir_node = nir.LIF(tau=bld.full(shape, self.options.dt), r=bld.full(shape, 1.0),
                               v_leak=bld.array(drive), v_threshold=bld.full(shape, theta),
                               v_reset=bld.full(shape, 0.0), metadata=meta)
        bld.add(node.name, nir_node, shape)
        self.connect(u, node.name)
        return Signal([(node.name, 1.0)])

    def sumpool(self, node: Node) -> Signal:
        a = node.attrs
        if a.get("ceil_mode") or a.get("dilation", 1) not in (1, [1, 1]):
            raise ValueError(f"max pool {a.get('site', node.name)!r}: ceil_mode / dilation have no NIR pooling")
        pair = [(v if isinstance(v, list) else [v, v]) for v in (a["kernel_size"], a["stride"] or a["kernel_size"],
                                                                 a["padding"])]
        nir = self.bld.nir
        node_cls = nir.SumPool2d if self.options.pool_node == "sum" else nir.AvgPool2d
        self.bld.add(node.name, node_cls(kernel_size=np.array(pair[0]), stride=np.array(pair[1]),
                                         padding=np.array(pair[2])), self.shapes[node.name])
        self.connect(self.inputs(node)[0], node.name)
        return Signal([(node.name, 1.0)])

    def add(self, node: Node) -> Signal:
        return _sum(self.inputs(node), list(node.attrs["scales"]))

    def output(self, node: Node) -> Signal:
        sig = self.add(node)
        if sig.drive is not None:
            raise ValueError("output: a per-position bias map reaches the output directly; NIR has no node for it")
        shape = self.shapes[node.name]
        bld = self.bld
        bld.add(OUTPUT_NODE, bld.nir.Output(output_type={"output": np.array(shape)}), shape)
        if self.options.scale_node == "synapse" and (len(sig.terms) > 1 or sig.terms[0][1] != 1.0):
            # nirtorch hands an Output node its incoming edges unsummed: sum them in an identity synapse first
            n = int(np.prod(shape))
            readout = bld.add(f"{OUTPUT_NODE}.sum", bld.nir.Affine(weight=np.eye(n, dtype=bld.dtype),
                                                                     bias=np.zeros(n, dtype=bld.dtype)), (n,))
            self.connect(sig, readout)
            bld.connect(readout, OUTPUT_NODE)
            return sig
        self.connect(sig, OUTPUT_NODE)
        return sig


def refusal(node: Node) -> str:
    if node.op == "maxpool":
        return (f"max pool {node.name!r} acts on real values (a membrane or the analog input); NIR has no "
                "max-pool primitive. Max pools of spikes or levels are exported (as sum pool + threshold unit); "
                "train with [model] pool = \"avg\" or a spiking site before the pool")
    if node.op in ("quantize", "planes") or node.attrs.get("encoding") == "bitplane":
        return (f"node {node.name!r} ({node.op}) comes from a format-1 converted model, whose rounding and bit "
                "extraction are not neurons; convert the run again with this version")
    return f"node {node.name!r}: op {node.op!r} has no NIR export"


@torch.no_grad()
def node_shapes(graph: ConvertedGraph) -> dict[str, tuple[int, ...]]:
    """Per-sample shape of every node's output (one step of a zero input through the dense executor)."""
    shapes: dict[str, tuple[int, ...]] = {}
    x = torch.zeros(1, 1, *graph.input.attrs["shape"], dtype=torch.float64)
    ConvertedModel(graph)(x, lambda n, _xs, y: shapes.__setitem__(n.name, tuple(int(s) for s in y.shape[2:])))
    return shapes


def graph_metadata(graph: ConvertedGraph, options: ExportOptions, readout: list[str],
                   extra: dict[str, Any] | None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "producer": "spikeforge", "spikeforge_version": __version__, "dt": float(options.dt),
        "readout_node": readout[0] if len(readout) == 1 else readout,
        "readout_decoding": "mean of the output over the T time steps",
        "input": "pixels: integer 8-bit values (0..255) per step" if graph.input.attrs["encoding"] == "pixels"
        else "one time step of the encoded input (after the recipe's normalisation)",
        "threshold_comparison": "neurons fire at v >= theta (exported as v > nextafter(theta, -inf)); "
                                "threshold units at u > threshold",
        "export_options": asdict(options), "time_steps": int(graph.meta.get("time_steps", 0)),
        "coding": graph.meta.get("coding"), "input_encoding": graph.meta.get("input_encoding"),
    }
    meta.update(extra or {})
    return meta


def graph_to_nir(graph: ConvertedGraph, options: ExportOptions | None = None,
                 metadata: dict[str, Any] | None = None) -> Any:
    """A ``nir.NIRGraph`` computing ``graph`` (see the module docstring for the mapping)."""
    options = options or ExportOptions()
    bld = Translator(graph, options).run()
    edges = bld.edges()
    readout = sorted({s for s, d in edges if d == OUTPUT_NODE})
    return bld.nir.NIRGraph(nodes=bld.nodes, edges=edges, metadata=graph_metadata(graph, options, readout, metadata),
                            type_check=True)


def write_nir(graph: Any, path: str | Path) -> Path:
    """Write ``graph`` to ``path`` atomically (temporary file in the same folder, then ``os.replace``)."""
    nir = import_nir()
    path = Path(path)
    atomic_write_with(path, lambda tmp: nir.write(tmp, graph))
    return path


def graph_summary(graph: Any) -> dict[str, Any]:
    """Node counts by type, neurons per node, synaptic weight counts and the readout."""
    types = Counter(type(n).__name__ for n in graph.nodes.values())
    neurons = {k: int(np.prod(n.output_type["output"])) for k, n in graph.nodes.items()
               if type(n).__name__ in NEURON_TYPES}
    synapses = [n.weight for n in graph.nodes.values() if type(n).__name__ in SYNAPSE_TYPES]
    return {
        "nodes": len(graph.nodes), "edges": len(graph.edges), "node_types": dict(sorted(types.items())),
        "neuron_sites": neurons, "neurons": sum(neurons.values()),
        "weights": int(sum(w.size for w in synapses)),
        "nonzero_weights": int(sum(np.count_nonzero(w) for w in synapses)),
        "readout": graph.metadata.get("readout_node"), "dt": graph.metadata.get("dt"),
    }
