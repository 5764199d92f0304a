"""The converted-model format: a small dataflow graph of named nodes over ``[T, B, ...]`` tensors.

A converted model is a list of nodes in execution (topological) order. Every node reads the
outputs of earlier nodes named in ``inputs`` and produces one tensor ``[T, B, ...]``:

``input``     the model input. ``encoding = "analog"``: fed as given (``direct``/``rate``/frames);
              ``"pixels"``: integer pixels ``p ∈ {0..255}`` (their bit planes are threshold units);
              ``"bitplane"`` (format 1 only): emits the 8 planes ``⌊p/2^k⌋ mod 2`` itself.
``conv``      ``y = conv2d(pool(cat(inputs)), W, stride, padding, dilation) + bias [+ bias_map]``:
              ``pool`` (attr, format 2) lists average pools with kernel = stride applied to the
              inputs first; executors fold them into ``W`` (:func:`.synapse.folded`), so the
              layer itself reads the binary inputs. Format 1 stores the folded ``W`` and a ``crop``.
``linear``    ``y = cat(flatten(pool(inputs))) · Wᵀ + bias`` (pools folded the same way).
``neuron``    ``h_t = a·v_{t−1} + b·x_t + c``, ``s_t = Θ(h_t − θ)`` (fires at ``h ≥ θ``), soft
              (``v_reset = null``: ``v_t = h_t − θ s_t``) or hard (``v_t = h_t (1 − s_t) + v_reset s_t``).
``threshold`` a stateless threshold unit: ``u_t = Σ_i w_i x_{i,t}``, ``z_t = [u_t > θ]`` (strict, as
              NIR's ``Threshold``); the units of :mod:`.units` that turn levels into spikes.
``sumpool``   2-D sum pooling (zero padding), time-distributed; with a threshold unit at ½ after it,
              the max (OR) of a window of spikes.
``add``       ``y = Σ_i scale_i · x_i``.
``output``    ``y = Σ_i scale_i · x_i`` — the model's output (logits ``[T, B, classes]``).
``maxpool``   2-D max pooling of real values (a membrane, the analog input): not a neuron.
``quantize``, ``planes`` (format 1 only) ``clamp(round(x/s), 0, L)`` and its binary planes.

Only ``conv`` and ``linear`` are synaptic layers; each reads binary tensors only, except a first
layer fed an ``analog`` input. A *neuron-only* graph (format 2 without ``maxpool``) holds only
synapses, neurons, threshold units, sum pooling and additions (:data:`NON_NEURON_OPS` lists the
rest). Files: ``graph.json`` (this structure, ``format``) and ``model.safetensors`` (every tensor,
float64, keyed ``"<node>.<tensor>"``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

FORMAT = "spikeforge.converted/2"
FORMATS = ("spikeforge.converted/1", FORMAT)  # readable formats (1: quantize/planes nodes)
GRAPH_FILE = "graph.json"
WEIGHTS_FILE = "model.safetensors"
OPS = ("input", "conv", "linear", "neuron", "threshold", "sumpool", "add", "output", "maxpool", "quantize",
       "planes")
SYNAPTIC_OPS = ("conv", "linear")
SPIKING_OPS = ("neuron", "threshold")  # nodes whose output is binary spikes
NON_NEURON_OPS = ("maxpool", "quantize", "planes")  # nonlinearities that are not neurons
PIXEL_BITS = 8  # 8-bit images: 8 binary planes


@dataclass
class Node:
    """One graph node: ``op`` from :data:`OPS`, scalar ``attrs`` and named ``tensors``."""

    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"node {self.name!r}: unknown op {self.op!r}; expected one of {OPS}")


@dataclass
class ConvertedGraph:
    """A converted all-spiking model: nodes in execution order plus free-form metadata."""

    nodes: list[Node]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for n in self.nodes:
            if n.name in seen:
                raise ValueError(f"duplicate node name {n.name!r}")
            missing = [i for i in n.inputs if i not in seen]
            if missing:
                raise ValueError(f"node {n.name!r} reads {missing} before they are computed")
            seen.add(n.name)
        if not self.nodes or self.nodes[0].op != "input" or self.nodes[-1].op != "output":
            raise ValueError("a converted graph starts with an 'input' node and ends with an 'output' node")

    @property
    def input(self) -> Node:
        return self.nodes[0]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def last_uses(self) -> dict[str, int]:
        """Index of the last node reading each node's output (the output node: its own index)."""
        last = {n.name: i for i, n in enumerate(self.nodes)}
        for i, n in enumerate(self.nodes):
            for name in n.inputs:
                last[name] = i
        return last

    def synaptic(self) -> list[Node]:
        return [n for n in self.nodes if n.op in SYNAPTIC_OPS]

    def non_neuron(self) -> list[str]:
        """Nodes computing a nonlinearity that is not a neuron (empty for a neuron-only graph)."""
        planes_input = self.input.attrs.get("encoding") == "bitplane"
        return [n.name for n in self.nodes if n.op in NON_NEURON_OPS or (n is self.input and planes_input)]

    def to_json(self) -> dict[str, Any]:
        nodes = [{"name": n.name, "op": n.op, "inputs": list(n.inputs), "attrs": n.attrs,
                  "tensors": {k: f"{n.name}.{k}" for k in n.tensors}} for n in self.nodes]
        meta = {k: v for k, v in self.meta.items() if k != "format"}
        return {"format": self.meta.get("format", FORMAT), "meta": meta, "nodes": nodes}

    def tensor_dict(self) -> dict[str, torch.Tensor]:
        return {f"{n.name}.{k}": t for n in self.nodes for k, t in n.tensors.items()}


def node_from_json(d: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Node:
    keys = d.get("tensors", {})
    missing = [v for v in keys.values() if v not in tensors]
    if missing:
        raise ValueError(f"node {d.get('name')!r}: tensors {missing} are not in {WEIGHTS_FILE}")
    return Node(name=d["name"], op=d["op"], inputs=list(d.get("inputs", [])), attrs=dict(d.get("attrs", {})),
                tensors={k: tensors[v] for k, v in keys.items()})


def save_graph(graph: ConvertedGraph, out_dir: str | Path) -> Path:
    """Write ``graph.json`` and ``model.safetensors`` (float64, CPU) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", torch.float64).contiguous().clone()
               for k, v in graph.tensor_dict().items()}
    save_file(tensors, str(out / WEIGHTS_FILE), metadata={"format": FORMAT})
    (out / GRAPH_FILE).write_text(json.dumps(graph.to_json(), indent=2) + "\n")
    return out


def load_graph(path: str | Path, device: str | torch.device = "cpu") -> ConvertedGraph:
    """Read a converted directory written by :func:`save_graph` (no pickle involved)."""
    p = Path(path)
    gfile, wfile = p / GRAPH_FILE, p / WEIGHTS_FILE
    for f in (gfile, wfile):
        if not f.is_file():
            raise FileNotFoundError(f"{f}: not found (is {p} a converted model directory?)")
    try:
        doc = json.loads(gfile.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{gfile}: not valid JSON ({e})") from None
    if doc.get("format") not in FORMATS:
        raise ValueError(f"{gfile}: format {doc.get('format')!r} is not one of {FORMATS}")
    tensors = load_file(str(wfile), device=str(device))
    meta = dict(doc.get("meta", {}))
    meta["format"] = doc["format"]
    return ConvertedGraph([node_from_json(d, tensors) for d in doc["nodes"]], meta)
