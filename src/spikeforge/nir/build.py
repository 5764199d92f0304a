"""NIR graph → :class:`~.spec.GraphSpec` + tensors → a spikeforge model.

:func:`read_spec` walks a ``nir.NIRGraph`` (nested graphs flattened, pass-through nodes removed,
recurrent edges found, shapes inferred from the input) and reads every node with the table in
:mod:`.nodes`; anything else is refused naming the node and its type. :func:`build_model` turns a
spec into modules (ONE table, :data:`BUILDERS`): synapses are spikeforge's time-distributed
``Conv2d``/``Linear`` (so structural development's masks and the hybrid policies see them), neurons
are :class:`~.neuron.NirNeuron` sites. A graph that is a chain (input → … → output, one edge in and
one out per node, no recurrence) becomes the zoo's ``Net`` (an ``nn.Sequential`` of named children)
that ``convert``, ``compact`` and ``export`` walk; any other graph a :class:`~.graphnet.GraphNet`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import layers as L
from ..models.common import Net
from ..neurons.surrogate import Atan, Surrogate
from .graphnet import GraphNet
from .neuron import CubaNeuron, Integrator, NirNeuron
from .nodes import READERS, NodeError, input_shape
from .ops import Conv1d, Delay, NirFlatten, Scale, SumPool2d
from .semantics import Semantics
from .spec import INPUT, OUTPUT, GraphSpec, NodeSpec, drop_pass_through, flatten, module_names, plan

SUPPORTED = sorted(set(READERS) - {INPUT, OUTPUT})


def json_safe(value: Any) -> Any:
    """Graph metadata as JSON values (arrays → lists, bytes → str; anything else → its str)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def read_spec(graph: Any, semantics: Semantics) -> tuple[GraphSpec, dict[str, torch.Tensor]]:
    """The spec of ``graph`` and its tensors keyed like the built model's state dict."""
    if type(graph).__name__ != "NIRGraph":
        raise ValueError(f"expected a NIR graph (nir.NIRGraph), got {type(graph).__name__}")
    nodes, edges = flatten(dict(graph.nodes), [(str(a), str(b)) for a, b in graph.edges])
    for path, node in nodes.items():
        kind = type(node).__name__
        if kind not in READERS and kind != "Identity":
            raise NodeError(f"node {path!r} has type {kind}, which spikeforge's NIR import does not support "
                            f"(supported: {', '.join(SUPPORTED)})")
    top = {k: [p for p, n in nodes.items() if type(n).__name__ == k and "/" not in p] for k in (INPUT, OUTPUT)}
    if len(top[INPUT]) != 1 or len(top[OUTPUT]) != 1:
        raise ValueError(f"the graph has {len(top[INPUT])} Input and {len(top[OUTPUT])} Output nodes; spikeforge "
                         "imports graphs with exactly one of each")
    inp, out = top[INPUT][0], top[OUTPUT][0]
    edges = drop_pass_through(nodes, edges, {inp, out})
    names = module_names(list(nodes), set(dir(GraphNet)))
    by_name = {names[p]: p for p in nodes}
    named_edges = [(names[a], names[b]) for a, b in edges]
    pl = plan(list(by_name), named_edges, names[inp])
    shapes: dict[str, tuple[int, ...]] = {}
    specs: dict[str, NodeSpec] = {}
    tensors: dict[str, torch.Tensor] = {}
    for name in pl.order:
        path, node = by_name[name], nodes[by_name[name]]
        if name == names[inp]:
            in_shape = input_shape(node, path)
        else:
            incoming = {a: shapes[a] for a, b in pl.forward if b == name}
            if len(set(incoming.values())) > 1:
                raise NodeError(f"node {path!r} sums inputs of different shapes: "
                                + ", ".join(f"{by_name[a]!r} {list(s)}" for a, s in incoming.items()))
            in_shape = next(iter(incoming.values()))
        read = READERS[type(node).__name__](node, in_shape, semantics, path)
        shapes[name] = read.out_shape
        specs[name] = NodeSpec(name, type(node).__name__, path, list(in_shape), list(read.out_shape), read.attrs)
        tensors.update({f"{name}.{k}": v for k, v in read.tensors.items()})
    for a, b in pl.recurrent:
        if list(shapes[a]) != specs[b].in_shape:
            raise NodeError(f"recurrent edge {by_name[a]!r} -> {by_name[b]!r}: output shape {list(shapes[a])} does "
                            f"not match the input shape {specs[b].in_shape}")
    meta = json_safe(dict(graph.metadata or {}))
    spec = GraphSpec([specs[n] for n in pl.order], named_edges, names[inp], names[out], semantics, meta)
    return spec, tensors


# ---------------------------------------------------------------- modules


def neuron_module(shape: tuple[int, ...], attrs: dict[str, Any], surrogate: Surrogate,
                  backend: str) -> NirNeuron | Integrator:
    if attrs["kind"] == "integrator":
        return Integrator(shape, attrs["coefs"])
    return NirNeuron(shape, attrs["coefs"], attrs["fire"], attrs["reset"], attrs["spikes"], surrogate, backend,
                     max_spikes=attrs.get("max_spikes"))  # graphs read before max_spikes existed: no cap


Builder = Callable[[NodeSpec, Surrogate, str], nn.Module | None]


def build_conv(n: NodeSpec, surrogate: Surrogate, backend: str) -> nn.Module:
    a = n.attrs
    cls: Any = L.Conv2d if len(a["kernel"]) == 2 else Conv1d
    return cls(a["in_channels"], a["out_channels"], tuple(a["kernel"]), stride=tuple(a["stride"]),
               padding=a["padding"] if isinstance(a["padding"], str) else tuple(a["padding"]),
               dilation=tuple(a["dilation"]), groups=a["groups"], bias=True)


def build_neuron(n: NodeSpec, surrogate: Surrogate, backend: str) -> nn.Module:
    if n.type in ("CubaLI", "CubaLIF"):
        shape = tuple(n.in_shape)
        return CubaNeuron(Integrator(shape, n.attrs["current"]["coefs"]),
                          neuron_module(shape, n.attrs["membrane"], surrogate, backend))
    return neuron_module(tuple(n.in_shape), n.attrs, surrogate, backend)


BUILDERS: dict[str, Builder] = {
    "Input": lambda n, s, b: None,
    "Output": lambda n, s, b: None,
    "Affine": lambda n, s, b: L.Linear(n.attrs["in_features"], n.attrs["out_features"], bias=n.attrs["bias"]),
    "Linear": lambda n, s, b: L.Linear(n.attrs["in_features"], n.attrs["out_features"], bias=n.attrs["bias"]),
    "Conv1d": build_conv,
    "Conv2d": build_conv,
    "AvgPool2d": lambda n, s, b: L.AvgPool2d(tuple(n.attrs["kernel"]), tuple(n.attrs["stride"]),
                                             tuple(n.attrs["padding"])),
    "SumPool2d": lambda n, s, b: SumPool2d(tuple(n.attrs["kernel"]), tuple(n.attrs["stride"]),
                                           tuple(n.attrs["padding"])),
    "Flatten": lambda n, s, b: L.Flatten() if n.attrs["all"] else NirFlatten(n.attrs["start_dim"],
                                                                            n.attrs["end_dim"]),
    "Scale": lambda n, s, b: Scale(tuple(n.in_shape), n.attrs["value"]),
    "Delay": lambda n, s, b: Delay(tuple(n.in_shape), n.attrs["value"], n.attrs["max"]),
    "I": build_neuron, "LI": build_neuron, "IF": build_neuron, "LIF": build_neuron, "Threshold": build_neuron,
    "CubaLI": build_neuron, "CubaLIF": build_neuron,
}


def is_chain(spec: GraphSpec) -> bool:
    """input → n1 → … → output, one edge into and one out of every node, no cycle."""
    outs: dict[str, list[str]] = {}
    for a, b in spec.edges:
        outs.setdefault(a, []).append(b)
    ins = [b for _, b in spec.edges]
    if len(set(ins)) != len(ins) or any(len(v) != 1 for v in outs.values()):
        return False
    seen, cur = {spec.input}, spec.input
    while cur in outs:
        cur = outs[cur][0]
        if cur in seen:
            return False
        seen.add(cur)
    return cur == spec.output and len(seen) == len(spec.nodes)


def build_model(spec: GraphSpec, surrogate: Surrogate | None = None, backend: str = "auto") -> nn.Module:
    """Modules for every node (weights uninitialised: load the tensors of :func:`read_spec` into it)."""
    sg = surrogate or Atan()
    modules: dict[str, nn.Module] = {}
    for n in spec.nodes:
        m = BUILDERS[n.type](n, sg, backend)
        if m is not None:
            modules[n.name] = m
    if is_chain(spec):
        return Net(OrderedDict((n.name, modules[n.name]) for n in spec.nodes if n.name in modules))
    return GraphNet(spec, modules)

