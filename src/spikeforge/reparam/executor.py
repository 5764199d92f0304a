"""Dense execution of a converted graph as an ``nn.Module`` (the reference the runtime must equal).

Every synaptic node becomes a submodule holding a time-distributed :class:`spikeforge.layers.Conv2d`
or :class:`spikeforge.layers.Linear` with the node's folded weights, so the usual tools
(:func:`spikeforge.energy.count_ops`, forward hooks) instrument the converted model exactly as
they do any model: their input is the tensor the synaptic layer really reads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
from torch import nn

from .. import layers as L
from .graph import ConvertedGraph, Node
from .ops import concat_inputs, crop_input, input_op, run_elementwise
from .synapse import folded

F64 = torch.float64
NodeCallback = Callable[[Node, list[torch.Tensor], torch.Tensor], None]


def module_key(node_name: str) -> str:
    """Submodule name of a node (``nn.Module`` names cannot contain dots)."""
    return node_name.replace(".", "_")


@torch.no_grad()
def load_parameters(layer: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    cast(torch.Tensor, layer.weight).copy_(weight)
    if bias is not None:
        cast(torch.Tensor, layer.bias).copy_(bias)


def _pair(v: Sequence[int]) -> tuple[int, int]:
    """A 2-d geometry attribute (kernel, stride, padding, dilation) as the ``(h, w)`` pair a conv takes."""
    return int(v[0]), int(v[1])


class SynapticConv(nn.Module):
    """``conv2d(crop(cat(inputs)), W) + bias [+ bias_map]`` with the pools folded into ``W``."""

    def __init__(self, node: Node) -> None:
        super().__init__()
        f = folded(node)
        w = f.weight.to(F64)
        self.layer = L.Conv2d(w.shape[1], w.shape[0], _pair(w.shape[2:]), stride=_pair(f.stride),
                              padding=_pair(f.padding), dilation=_pair(f.dilation),
                              bias=f.bias is not None, dtype=F64, device=w.device)
        load_parameters(self.layer, w, f.bias)
        self.crop: list[int] | None = f.crop
        self.register_buffer("bias_map", f.bias_map)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        y = cast(torch.Tensor, self.layer(crop_input(concat_inputs(xs, flatten=False), self.crop)))
        bias_map = cast(torch.Tensor | None, self.bias_map)
        return y if bias_map is None else y + bias_map


class SynapticLinear(nn.Module):
    """``cat(flatten(inputs)) · Wᵀ + bias`` with the pools folded into ``W``."""

    def __init__(self, node: Node) -> None:
        super().__init__()
        f = folded(node)
        w = f.weight.to(F64)
        self.layer = L.Linear(w.shape[1], w.shape[0], bias=f.bias is not None, dtype=F64, device=w.device)
        load_parameters(self.layer, w, f.bias)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return cast(torch.Tensor, self.layer(concat_inputs(xs, flatten=True)))


class ConvertedModel(nn.Module):
    """Dense float64 interpreter of a :class:`ConvertedGraph`: ``[T, B, ...] -> [T, B, classes]``."""

    def __init__(self, graph: ConvertedGraph) -> None:
        super().__init__()
        self.graph = graph
        self.synapses = nn.ModuleDict()
        self.layer_names: dict[str, str] = {}  # module path -> node name
        for n in graph.nodes:
            if n.op in ("conv", "linear"):
                key = module_key(n.name)
                self.synapses[key] = SynapticConv(n) if n.op == "conv" else SynapticLinear(n)
                self.layer_names[f"synapses.{key}.layer"] = n.name

    def synapse(self, node: Node) -> nn.Module:
        return self.synapses[module_key(node.name)]

    def forward(self, x: torch.Tensor, on_node: NodeCallback | None = None) -> torch.Tensor:
        """Run the graph; ``on_node(node, inputs, output)`` sees every node as it is computed.

        Each intermediate tensor is released after its last reader, so memory holds only the
        live part of the graph.
        """
        values: dict[str, torch.Tensor] = {}
        last = self.graph.last_uses()
        for i, n in enumerate(self.graph.nodes):
            values[n.name] = self.run_node(n, x, values)
            if on_node is not None:
                on_node(n, [values[j] for j in n.inputs], values[n.name])
            for name in n.inputs:
                if last[name] == i:
                    values.pop(name, None)
        return values[self.graph.nodes[-1].name]

    def run_node(self, n: Node, x: torch.Tensor, values: dict[str, torch.Tensor]) -> torch.Tensor:
        if n.op == "input":
            return input_op(x, n.attrs, F64)
        xs = [values[i] for i in n.inputs]
        if n.op in ("conv", "linear"):
            return cast(torch.Tensor, self.synapse(n)(xs))
        return run_elementwise(n.op, xs, n.attrs)


def graph_summary(graph: ConvertedGraph) -> list[dict[str, Any]]:
    """One row per node: name, op, inputs and tensor shapes."""
    return [{"name": n.name, "op": n.op, "inputs": list(n.inputs),
             "tensors": {k: list(v.shape) for k, v in n.tensors.items()}} for n in graph.nodes]
