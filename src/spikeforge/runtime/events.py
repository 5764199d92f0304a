"""Event-driven execution of a converted graph: only the spikes that occur are propagated.

The graph runs node by node, every node over all ``T`` steps at once: a neuron node runs its
``T`` steps (sequential, :func:`spikeforge.reparam.ops.neuron_op`), after which the next
synaptic node knows its input for all steps and handles the ``T·B`` rows in one call of a kernel
of :mod:`spikeforge.runtime.kernels`. Per synaptic node and call the runtime picks the method:

    integer   weights, bias (and bias map) integer-valued and Σ|W| + |bias| < 2⁶³ per output:
              accumulate in int64 (``scatter``), exact, no float reassociation; the sum is
              converted to float64 once (exact below 2⁵³)
    sparse    input density ρ = events / inputs ≤ crossover(op), outputs reached per event ≥ min_sparse_fanout,
              dense product ≥ min_sparse_macs and (conv) input channels ≥ min_sparse_channels:
              ``csr`` (sparse events × weight table)
    dense     otherwise: ``F.linear`` / ``F.conv2d`` on the binary input (the accumulations are
              still counted from the events)
    analog    a non-binary input (the analog first layer): dense, counted as MACs

The crossovers (:class:`RuntimeConfig`) are where the sparse product and the dense float64
product took the same time on the development machine (``bench/event_runtime.py`` measures
them); they change only the speed, never the result or the counts.

Counting (equal to the verifier's, :mod:`spikeforge.energy`): ``C_out`` accumulations per
(event, tap) pair landing inside the output (linear: per event); an analog layer costs
``out_elements · C_in · kH · kW`` MACs. Pools before a synaptic node are folded into its weights
(:func:`spikeforge.reparam.synapse.folded`); the threshold units, sum pools and weighted adds run
as the dense executor runs them, their events counted as
:func:`spikeforge.reparam.ops.unit_accumulations` defines, in ``RuntimeReport.unit_events``.
:class:`spikeforge.runtime.stream.StreamingRuntime` runs one step at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..reparam.graph import SPIKING_OPS, ConvertedGraph, Node
from ..reparam.ops import (
    concat_inputs,
    crop_input,
    input_op,
    neuron_op,
    run_elementwise,
    split_steps,
    unit_accumulations,
)
from ..reparam.synapse import FoldedSynapse, folded
from .kernels import ConvGeometry, conv_geometry, event_conv, event_linear, weight_tiles
from .report import LayerCount, RuntimeReport

F64 = torch.float64
INT_ACC_LIMIT = 2**62  # an int64 accumulator holds Σ|W| + |bias| below this with room to spare
METHOD_INT, METHOD_SPARSE, METHOD_DENSE, METHOD_ANALOG = "int", "sparse", "dense", "analog"
NeuronFn = Callable[[Node, torch.Tensor], torch.Tensor]  # (node, membrane input [T, B, ...]) -> spikes


@dataclass
class RuntimeConfig:
    """How the runtime chooses a method per synaptic node and call (see the module docstring).

    ``method``: ``"auto"`` (integer, else sparse/dense by density), or force ``"csr"``,
    ``"scatter"`` or ``"dense"`` for every binary layer (float64).
    """

    method: str = "auto"
    linear_crossover: float = 0.10  # sparse up to this input density (measured: 784…7840 → 300…2048, T·B = 128)
    conv_crossover: float = 0.15  # measured: 3×3 and folded 4×4/2 convs, 15…128 channels, T·B = 32…128
    min_sparse_fanout: int = 256  # outputs reached per event (O, conv: O·kH·kW/(sH·sW)); fewer: the sparse
    # method's passes over the input (copy, compare, nonzero) cost more than the dense product saves
    min_sparse_channels: int = 8  # conv: fewer input channels, building the sparse im2col costs more than conv2d
    min_sparse_macs: int = 1 << 25  # a call whose dense product is smaller runs dense (fixed costs dominate)
    linear_tile_density: float = 0.03  # linear: above this density the product runs in column tiles of Wᵀ
    integer: bool = True  # int64 accumulation when the weights are integers


@dataclass
class _Layer:
    """A synaptic node prepared for execution (cached per node)."""

    syn: FoldedSynapse
    rows: torch.Tensor  # float64 weight table: Wᵀ [F, O] or [kH, kW, C, O]
    integer: bool
    int_rows: torch.Tensor | None = None
    int_bias: torch.Tensor | None = None
    int_bias_map: torch.Tensor | None = None
    geom: ConvGeometry | None = None
    tiles: list[torch.Tensor] | None = None  # linear: column tiles of Wᵀ for the sparse product


def is_binary(x: torch.Tensor) -> bool:
    return bool(((x == 0) | (x == 1)).all())


def _integral(t: torch.Tensor | None) -> bool:
    return t is None or bool(torch.isfinite(t).all() and torch.equal(t, t.round()))


def integer_weights(syn: FoldedSynapse) -> bool:
    """Whether every weight and bias is an integer and no output's Σ|W| + |bias| can overflow int64."""
    if not (_integral(syn.weight) and _integral(syn.bias) and _integral(syn.bias_map)):
        return False
    bound = syn.weight.abs().flatten(1).sum(1)
    if syn.bias is not None:
        bound = bound + syn.bias.abs()
    if syn.bias_map is not None:
        bound = bound + syn.bias_map.abs().flatten(1).amax(1)
    return bool((bound < INT_ACC_LIMIT).all())


def _as_int(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.to(torch.int64)


class EventRuntime:
    """Runs a :class:`ConvertedGraph` event by event, in float64, on the graph tensors' device."""

    def __init__(self, graph: ConvertedGraph, device: str | torch.device | None = None,
                 method: str = "auto", config: RuntimeConfig | None = None) -> None:
        self.graph = graph
        self.config = config if config is not None else RuntimeConfig(method=method)
        self.device = torch.device(device) if device is not None else None
        self._layers: dict[str, _Layer] = {}
        self._ops = {n.name: n.op for n in graph.nodes}

    @property
    def method(self) -> str:
        return self.config.method

    def target_device(self, x: torch.Tensor) -> torch.device:
        return self.device or next((t.device for n in self.graph.nodes for t in n.tensors.values()), x.device)

    def _layer(self, node: Node, device: torch.device) -> _Layer:
        if node.name not in self._layers:
            syn = folded(node).to(self.device or device, F64)
            w = syn.weight
            rows = (w.t() if node.op == "linear" else w.permute(2, 3, 1, 0)).contiguous()
            lay = _Layer(syn, rows, self.config.integer and integer_weights(syn))
            if lay.integer:
                lay.int_rows, lay.int_bias, lay.int_bias_map = _as_int(rows), _as_int(syn.bias), _as_int(syn.bias_map)
            self._layers[node.name] = lay
        return self._layers[node.name]

    def choose(self, node: Node, lay: _Layer, density: float, dense_macs: int) -> str:
        """The method for one call: ``int``, ``sparse`` or ``dense`` (binary input)."""
        cfg = self.config
        if cfg.method != "auto":
            return cfg.method
        if lay.integer:
            return METHOD_INT
        crossover = cfg.linear_crossover if node.op == "linear" else cfg.conv_crossover
        w = lay.syn.weight
        fanout, fan_in = int(w.shape[0]), int(w.shape[1])
        if node.op == "conv":
            fanout = fanout * int(w.shape[2]) * int(w.shape[3]) // (lay.syn.stride[0] * lay.syn.stride[1])
        wide = node.op == "linear" or fan_in >= cfg.min_sparse_channels
        big = dense_macs >= cfg.min_sparse_macs
        return METHOD_SPARSE if density <= crossover and fanout >= cfg.min_sparse_fanout and wide and big \
            else METHOD_DENSE

    def synaptic(self, node: Node, xs: list[torch.Tensor], count: LayerCount) -> torch.Tensor:
        """One synaptic node over all rows ``[T, B, ...]`` of its inputs; adds to ``count``."""
        t, b = xs[0].shape[:2]
        lay = self._layer(node, xs[0].device)
        f = lay.syn
        x = concat_inputs(xs, flatten=node.op == "linear")
        if node.op == "conv":
            x = crop_input(x, f.crop)
        flat = x.flatten(0, 1)
        events = int(flat.count_nonzero())
        count.inputs += flat.numel()
        count.events += events
        per_out = int(f.weight[0].numel())
        spikes_only = all(self._ops[i] in SPIKING_OPS for i in node.inputs)  # binary by construction
        if not (spikes_only or is_binary(flat)):  # analog input: dense, multiply-accumulate
            y = F.linear(flat, f.weight, f.bias) if node.op == "linear" else \
                F.conv2d(flat, f.weight, f.bias, f.stride, f.padding, f.dilation)
            y = y if f.bias_map is None else y + f.bias_map
            count.macs += y.numel() * per_out
            count.dense_macs += y.numel() * per_out
            count.used(METHOD_ANALOG)
            return split_steps(y, (t, b))
        density = events / max(flat.numel(), 1)
        method = self.choose(node, lay, density, self._dense_macs(node, lay, flat))
        y, acc = self._run_binary(node, lay, flat, method, events, density)
        count.accumulations += acc
        count.dense_macs += y.numel() * per_out
        count.used(method)
        return split_steps(y, (t, b))

    @staticmethod
    def _dense_macs(node: Node, lay: _Layer, flat: torch.Tensor) -> int:
        """Multiply-accumulates of the dense product of this call (conv: per input position, an estimate)."""
        w = lay.syn.weight
        per_row = int(w.numel()) if node.op == "linear" else int(w.numel()) * int(flat[0, 0].numel())
        return int(flat.shape[0]) * per_row

    def _run_binary(self, node: Node, lay: _Layer, flat: torch.Tensor, method: str,
                    events: int, density: float) -> tuple[torch.Tensor, int]:
        f = lay.syn
        kernel = {METHOD_SPARSE: "csr", METHOD_INT: "scatter"}.get(method, method)
        integer = method == METHOD_INT
        rows = lay.int_rows if integer else lay.rows
        bias = lay.int_bias if integer else f.bias
        assert rows is not None
        if node.op == "linear":
            tiles = None
            if kernel == "csr" and density > self.config.linear_tile_density:
                lay.tiles = weight_tiles(rows) if lay.tiles is None else lay.tiles
                tiles = lay.tiles
            y, acc = event_linear(flat, f.weight, bias, rows, kernel, events, tiles)
        else:
            hw = (int(flat.shape[2]), int(flat.shape[3]))
            if lay.geom is None or lay.geom.in_hw != hw:
                lay.geom = conv_geometry(hw, (int(f.weight.shape[2]), int(f.weight.shape[3])), f.stride,
                                         f.padding, f.dilation, flat.device)
            y, acc = event_conv(flat, f.weight, bias, lay.int_bias_map if integer else f.bias_map, f.stride,
                                f.padding, f.dilation, rows, kernel, lay.geom)
        return (y.to(F64) if integer else y), acc

    def walk(self, x: torch.Tensor, neuron: NeuronFn, report: RuntimeReport) -> torch.Tensor:
        """Run every node on ``x [T, B, ...]``; ``neuron`` computes the neuron nodes (whole run or one step)."""
        device = self.target_device(x)
        sync = torch.cuda.synchronize if device.type == "cuda" else None
        values: dict[str, torch.Tensor] = {}
        last = self.graph.last_uses()
        for k, n in enumerate(self.graph.nodes):
            if n.op == "input":
                values[n.name] = input_op(x.to(device), n.attrs, F64)
                continue
            xs = [values[i] for i in n.inputs]
            if n.op in ("conv", "linear"):
                count = report.layer(n.name)
                t0 = time.perf_counter()
                values[n.name] = self.synaptic(n, xs, count)
                if sync is not None:
                    sync(device)
                count.seconds += time.perf_counter() - t0
            else:
                values[n.name] = y = neuron(n, xs[0]) if n.op == "neuron" else run_elementwise(n.op, xs, n.attrs)
                acc = unit_accumulations(n.op, xs, y, [self._ops[i] in SPIKING_OPS for i in n.inputs])
                if acc or n.op in ("threshold", "sumpool"):
                    report.add_unit_events(n.name, acc)
            for name in n.inputs:
                if last[name] == k:
                    values.pop(name, None)
        return values[self.graph.nodes[-1].name]

    @torch.no_grad()
    def run(self, x: torch.Tensor) -> tuple[torch.Tensor, RuntimeReport]:
        """``x [T, B, ...]`` (analog input, or integer pixels for a bitplane graph) → (output, counts)."""
        report = RuntimeReport(samples=int(x.shape[1]), time_steps=int(x.shape[0]))
        out = self.walk(x, lambda n, h: neuron_op(h, n.attrs), report)
        return out, report


def run_events(graph: ConvertedGraph, x: torch.Tensor) -> tuple[torch.Tensor, RuntimeReport]:
    """Convenience: ``EventRuntime(graph).run(x)``."""
    return EventRuntime(graph).run(x)
