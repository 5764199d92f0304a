"""Executing a general imported graph: branches, merges, residual connections and recurrent edges.

:class:`GraphNet` holds one child module per node (named like the node, so sites are ``lif1``, not
``nodes.lif1``) and runs them in the plan's topological order:

- without recurrent edges, each node runs once on the whole ``[T, B, ...]`` sequence (the same
  module calls as a chain model: fused neuron backends, one batched conv per layer);
- with recurrent edges, the graph steps through time: at step t every node runs on ``[1, B, ...]``
  with its state carried over (:class:`~.neuron.Carry`), and a recurrent edge delivers its
  source's output of step ``t − 1`` (zeros at ``t = 0``).

A node's input is the sum of its incoming edges (in edge order). Every call starts from rest.
"""

from __future__ import annotations

import inspect
from typing import Any, Protocol, TypeVar

import torch
from torch import nn

from .neuron import Carry
from .spec import GraphSpec, Plan, plan

STATEFUL_PARAM = "carry"
V = TypeVar("V")


class UnwalkableGraphError(ValueError):
    """The graph has no forward order a model walker can follow (a recurrent edge)."""


class Walker(Protocol[V]):
    """What :meth:`GraphNet.walk_with` needs of a model walker (``spikeforge.reparam.walk.ModelWalker``):
    visit a module, announce a value read twice, sum values."""

    def walk(self, m: nn.Module, val: V, path: str = "") -> V: ...

    def fork(self, val: V, path: str) -> None: ...

    def add(self, vals: list[V], path: str) -> V: ...


def takes_carry(m: nn.Module) -> bool:
    """Modules whose ``forward`` accepts a :class:`Carry` (neurons, integrators, delays)."""
    return STATEFUL_PARAM in inspect.signature(m.forward).parameters


class GraphNet(nn.Module):
    """A NIR graph as a spikeforge model: ``[T, B, *input_shape] -> [T, B, *output_shape]``."""

    def __init__(self, spec: GraphSpec, modules: dict[str, nn.Module]) -> None:
        super().__init__()
        self._spec = spec
        for name, m in modules.items():
            self.add_module(name, m)
        self._plan: Plan = plan([n.name for n in spec.nodes], list(spec.edges), spec.input)
        self._preds: dict[str, list[str]] = {n.name: [] for n in spec.nodes}
        self._rpreds: dict[str, list[str]] = {n.name: [] for n in spec.nodes}
        for a, b in self._plan.forward:
            self._preds[b].append(a)
        for a, b in self._plan.recurrent:
            self._rpreds[b].append(a)

    @property
    def graph_spec(self) -> GraphSpec:
        return self._spec

    def node_module(self, name: str) -> nn.Module | None:
        return self._modules.get(name)

    def call(self, name: str, x: torch.Tensor, carries: dict[str, Carry] | None) -> torch.Tensor:
        m = self.node_module(name)
        if m is None:  # Input / Output
            return x
        if carries is not None and takes_carry(m):  # checked per call: a site may have been replaced
            return m(x, carries.setdefault(name, Carry()))
        return m(x)

    def merged(self, name: str, values: dict[str, torch.Tensor],
               previous: dict[str, torch.Tensor] | None) -> torch.Tensor:
        terms = [values[p] for p in self._preds[name]]
        if previous is not None:
            terms += [previous[p] for p in self._rpreds[name]]
        if not terms:
            raise RuntimeError(f"node {name!r} has no input")  # plan() guarantees one for reachable nodes
        out = terms[0]
        for t in terms[1:]:
            out = out + t
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 3:
            raise ValueError(f"expected a time-first input [T, B, ...], got shape {tuple(x.shape)}")
        expect = tuple(self._spec.input_shape)
        if tuple(x.shape[2:]) != expect:
            raise ValueError(f"input shape {tuple(x.shape[2:])} does not match the graph's input {list(expect)}")
        if not self._plan.recurrent:
            values: dict[str, torch.Tensor] = {}
            for name in self._plan.order:
                inp = x if name == self._spec.input else self.merged(name, values, None)
                values[name] = self.call(name, inp, None)
            return values[self._spec.output]
        return self.stepped(x)

    def stepped(self, x: torch.Tensor) -> torch.Tensor:
        """One time step at a time, recurrent edges reading the previous step."""
        carries: dict[str, Carry] = {}
        batch = x.shape[1]
        previous = {a: torch.zeros((1, batch, *self._spec.node(a).out_shape), dtype=x.dtype, device=x.device)
                    for a, _ in self._plan.recurrent}
        outputs = []
        for t in range(x.shape[0]):
            values: dict[str, torch.Tensor] = {}
            for name in self._plan.order:
                inp = x[t:t + 1] if name == self._spec.input else self.merged(name, values, previous)
                values[name] = self.call(name, inp, carries)
            previous = {a: values[a] for a in previous}
            outputs.append(values[self._spec.output])
        return torch.cat(outputs)

    def walk_with(self, walker: Walker[Any], val: Any, path: str = "") -> Any:
        """Visit the nodes in topological order with a model walker: a node's value is the walker's sum of
        its inputs (:meth:`Walker.add` for merges), a value read by several nodes is announced with
        :meth:`Walker.fork`. Recurrent edges have no such order and are refused naming one."""
        if self._plan.recurrent:
            a, b = self._plan.recurrent[0]
            raise UnwalkableGraphError(f"{path or 'model'}: recurrent edge {a!r} -> {b!r} (reads the previous "
                                       "time step); only graphs without recurrent edges can be walked")
        readers: dict[str, int] = {}
        for a, _ in self._plan.forward:
            readers[a] = readers.get(a, 0) + 1
        values: dict[str, Any] = {}
        for name in self._plan.order:
            where = f"{path}.{name}" if path else name
            if name == self._spec.input:
                inp = val
            else:
                terms = [values[p] for p in self._preds[name]]
                inp = terms[0] if len(terms) == 1 else walker.add(terms, where)
            m = self.node_module(name)
            values[name] = inp if m is None else walker.walk(m, inp, where)
            if readers.get(name, 0) > 1:
                walker.fork(values[name], where)
        return values[self._spec.output]
