"""The structure of an imported NIR graph: plain data, JSON in run directories, tensors kept apart.

A :class:`GraphSpec` is what spikeforge keeps of a NIR graph once read: one :class:`NodeSpec` per
computing node (its NIR type, original name, batch-free input/output shapes and JSON-able
attributes), the edges, the single input and output, the :class:`~.semantics.Semantics` it was read
with and the producer's graph metadata. Weights and per-neuron parameters are not in it: they are
the built module's state dict (safetensors in a run directory).

Graph-level rules (:func:`plan`):

- nested ``NIRGraph`` nodes are flattened (``outer/inner`` names); their ``Input``/``Output`` nodes
  pass values through and are removed, wiring every predecessor to every successor;
- edges into a node are summed (merges), edges out of a node copy its output (branches);
- a **recurrent edge** is an edge that closes a cycle in a depth-first walk from the input (edges
  in file order): it reads its source's output of the *previous* time step (zero at the first
  step), as nirtorch's interpreter and snnTorch's ``RLeaky``/``RSynaptic`` do. All other edges read
  the current step, in topological order.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from .semantics import Semantics

FORMAT = "spikeforge-nir-graph"
FORMAT_VERSION = 1
INPUT, OUTPUT = "Input", "Output"
PASS_THROUGH = ("Input", "Output", "Identity")
NAME_CHARS = re.compile(r"[^0-9A-Za-z_]")


@dataclass
class NodeSpec:
    """One node: ``name`` is its module name in spikeforge, ``nir_name`` its path in the NIR graph."""

    name: str
    type: str
    nir_name: str
    in_shape: list[int]
    out_shape: list[int]
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class GraphSpec:
    nodes: list[NodeSpec]
    edges: list[tuple[str, str]]
    input: str
    output: str
    semantics: Semantics
    metadata: dict[str, Any] = field(default_factory=dict)

    def node(self, name: str) -> NodeSpec:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    @property
    def input_shape(self) -> list[int]:
        return self.node(self.input).out_shape

    @property
    def output_shape(self) -> list[int]:
        return self.node(self.output).in_shape

    def to_json(self) -> str:
        doc = {"format": FORMAT, "version": FORMAT_VERSION, "input": self.input, "output": self.output,
               "semantics": self.semantics.to_dict(), "metadata": self.metadata,
               "nodes": [asdict(n) for n in self.nodes], "edges": [list(e) for e in self.edges]}
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))

    @staticmethod
    def from_json(text: str, where: str = "model.graph") -> GraphSpec:
        try:
            doc = json.loads(text)
            if doc.get("format") != FORMAT or doc.get("version") != FORMAT_VERSION:
                raise ValueError(f"expected format {FORMAT!r} version {FORMAT_VERSION}, got "
                                 f"{doc.get('format')!r} version {doc.get('version')!r}")
            nodes = [NodeSpec(**n) for n in doc["nodes"]]
            edges = [(str(a), str(b)) for a, b in doc["edges"]]
            return GraphSpec(nodes, edges, str(doc["input"]), str(doc["output"]),
                             Semantics.from_dict(doc["semantics"]), dict(doc.get("metadata", {})))
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{where}: not a valid imported NIR graph description ({e})") from None


# ---------------------------------------------------------------- names and flattening


def module_names(paths: list[str], reserved: set[str] | frozenset[str] = frozenset()) -> dict[str, str]:
    """NIR node paths → unique module names (``[A-Za-z0-9_]``, none in ``reserved``: attribute names of
    the module that will hold them)."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for p in paths:
        base = NAME_CHARS.sub("_", p) or "node"
        if base in reserved or base.startswith("_"):
            base = f"node_{base}"
        name, i = base, 1
        while name in used:
            i += 1
            name = f"{base}_{i}"
        used.add(name)
        out[p] = name
    return out


def flatten(nodes: dict[str, Any], edges: list[tuple[str, str]], prefix: str = "",
            ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Nested graphs inlined: ``{path: node}`` and edges between paths (subgraph I/O kept as pass-throughs)."""
    flat: dict[str, Any] = {}
    entry: dict[str, str] = {}  # subgraph path -> its Input's path
    exit_: dict[str, str] = {}  # subgraph path -> its Output's path
    out_edges: list[tuple[str, str]] = []
    for key, node in nodes.items():
        path = f"{prefix}{key}"
        if type(node).__name__ == "NIRGraph":
            inner, inner_edges = flatten(node.nodes, [(str(a), str(b)) for a, b in node.edges], f"{path}/")
            ins = [k for k, n in node.nodes.items() if type(n).__name__ == INPUT]
            outs = [k for k, n in node.nodes.items() if type(n).__name__ == OUTPUT]
            if len(ins) != 1 or len(outs) != 1:
                raise ValueError(f"subgraph {path!r} has {len(ins)} Input and {len(outs)} Output nodes; "
                                 "spikeforge imports subgraphs with exactly one of each")
            entry[path], exit_[path] = f"{path}/{ins[0]}", f"{path}/{outs[0]}"
            flat.update(inner)
            out_edges.extend(inner_edges)
        else:
            flat[path] = node
    for a, b in edges:
        src, dst = f"{prefix}{a}", f"{prefix}{b}"
        for end in (src, dst):
            if end not in flat and end not in entry:
                raise ValueError(f"edge ({a!r}, {b!r}) names node {end.removeprefix(prefix)!r}, which is not in the "
                                 f"graph{' ' + prefix.rstrip('/') if prefix else ''}")
        out_edges.append((exit_.get(src, src), entry.get(dst, dst)))
    return flat, out_edges


def drop_pass_through(nodes: dict[str, Any], edges: list[tuple[str, str]], keep: set[str],
                      ) -> list[tuple[str, str]]:
    """Remove pass-through nodes not in ``keep``, wiring each predecessor to each successor."""
    for path in [p for p, n in nodes.items() if type(n).__name__ in PASS_THROUGH and p not in keep]:
        preds = [a for a, b in edges if b == path]
        succs = [b for a, b in edges if a == path]
        if path in preds:
            raise ValueError(f"node {path!r} ({type(nodes[path]).__name__}) feeds itself")
        edges = [e for e in edges if path not in e] + [(a, b) for a in preds for b in succs]
        del nodes[path]
    return edges


# ---------------------------------------------------------------- order


@dataclass
class Plan:
    """Execution order and the recurrent (previous-step) edges of a graph."""

    order: list[str]
    forward: list[tuple[str, str]]
    recurrent: list[tuple[str, str]]


def plan(names: list[str], edges: list[tuple[str, str]], source: str) -> Plan:
    """Depth-first from ``source`` (edges in order): back edges are recurrent, the rest a DAG in topological order."""
    succ: dict[str, list[int]] = {n: [] for n in names}
    for i, (a, _) in enumerate(edges):
        succ[a].append(i)
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    finished: list[str] = []
    recurrent: set[int] = set()
    stack: list[tuple[str, int]] = [(source, 0)]
    state[source] = 1
    while stack:
        node, k = stack.pop()
        if k < len(succ[node]):
            stack.append((node, k + 1))
            i = succ[node][k]
            dst = edges[i][1]
            if state.get(dst) == 1:
                recurrent.add(i)
            elif dst not in state:
                state[dst] = 1
                stack.append((dst, 0))
        else:
            state[node] = 2
            finished.append(node)
    unreachable = [n for n in names if n not in state]
    if unreachable:
        raise ValueError(f"nodes {unreachable} are not reachable from the input node {source!r}")
    return Plan(list(reversed(finished)), [e for i, e in enumerate(edges) if i not in recurrent],
                [e for i, e in enumerate(edges) if i in recurrent])
