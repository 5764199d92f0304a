"""Event-driven execution of a converted graph: only the spikes that occur are propagated.

For a synaptic node reading a binary tensor ``b`` (one sample and step: ``b ∈ {0,1}^{C×H×W}``):

    linear:  y = bias + Σ_{i : b_i = 1} W[:, i]                 (one weight column per event)
    conv:    y[:, oy, ox] = bias (+ bias_map) + Σ_{(c, y, x) : b = 1} Σ_{taps (i, j)} W[:, c, i, j]
             where oy·s − p + i·d = y and ox·s − p + j·d = x (the output the tap reaches)

Events are gathered once (``nonzero``). Conv: every (event, tap) pair landing inside the
output names one output position and one weight row ``W[:, c, i, j]``; linear: every event names
one sample and one weight row ``W[:, i]``. ``method="csr"`` (default) holds these pairs in a
sparse matrix with values 1 and multiplies it by the weight table (a sparse product that only
sums the selected rows); ``method="scatter"`` gathers the rows and scatter-adds them
(``index_add_``). Both sum exactly the same rows. The runtime counts
the accumulations it performs: ``C_out`` per (event, tap) pair that lands inside the output
(a linear layer: ``C_out`` per event) — the definition of SOPs used by
:mod:`spikeforge.energy`, so the counts equal the verifier's. A layer whose input is not binary
(the analog first layer of a non-bitplane model) is computed densely and counted as
``MACs = out_elements · C_in · kH · kW`` (``in · out`` for linear) per step and sample.

Pools before a synaptic node are folded into its weights (:func:`spikeforge.reparam.synapse.folded`),
so each pre-pool spike is delivered directly. The threshold units, sum pools and weighted adds run
as the dense executor runs them; their events are counted as
:func:`spikeforge.reparam.ops.unit_accumulations` defines (one accumulation per spike entering a
unit or an add, one per spike and pooling window), in ``RuntimeReport.unit_events``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..reparam.graph import SPIKING_OPS, ConvertedGraph, Node
from ..reparam.ops import concat_inputs, crop_input, input_op, run_elementwise, split_steps, unit_accumulations
from ..reparam.synapse import FoldedSynapse, folded

F64 = torch.float64


@dataclass
class LayerCount:
    """Operations one synaptic node performed over a whole call (all samples and steps)."""

    name: str
    accumulations: int = 0  # event-driven adds of weight values (binary input)
    macs: int = 0  # dense multiply-accumulates (analog input)
    dense_macs: int = 0  # what a dense implementation of this layer would multiply-accumulate
    events: int = 0  # input spikes processed
    inputs: int = 0  # input elements (events + silent ones)

    @property
    def rate(self) -> float:
        return self.events / self.inputs if self.inputs else 0.0


@dataclass
class RuntimeReport:
    """Per-layer counts of one :meth:`EventRuntime.run`."""

    samples: int
    time_steps: int
    layers: list[LayerCount] = field(default_factory=list)
    unit_events: dict[str, int] = field(default_factory=dict)  # per non-synaptic node (units, adds, pools)

    @property
    def synaptic_accumulations(self) -> int:
        return sum(c.accumulations for c in self.layers)

    @property
    def accumulations(self) -> int:
        """Every accumulation: synaptic layers plus the units' internal events."""
        return self.synaptic_accumulations + sum(self.unit_events.values())

    @property
    def macs(self) -> int:
        return sum(c.macs for c in self.layers)


def _is_binary(x: torch.Tensor) -> bool:
    return bool(((x == 0) | (x == 1)).all())


def event_linear(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None,
                 w_t: torch.Tensor | None = None, method: str = "csr") -> tuple[torch.Tensor, int]:
    """``x [N, F]`` binary → ``(x·Wᵀ + bias, accumulations)`` by summing the active inputs' weights.

    ``w_t`` is ``Wᵀ`` contiguous (``[F, O]``: one weight row per input), computed if not given.
    ``method``: ``"scatter"`` gathers the rows of the events and scatter-adds them per sample;
    ``"csr"`` stores the events as a compressed sparse row matrix (indices of the active inputs
    per sample, values 1) and lets the sparse-dense product sum the same rows. Both add exactly
    ``nnz(x)·O`` weights.
    """
    w_t = w.t().contiguous() if w_t is None else w_t
    if method == "csr":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
            out = x.to_sparse_csr() @ w_t
        nnz = int((x != 0).sum())
    elif method == "scatter":
        n_idx, f_idx = x.nonzero(as_tuple=True)
        out = torch.zeros(x.shape[0], w.shape[0], dtype=w.dtype, device=w.device)
        out.index_add_(0, n_idx, w_t[f_idx])
        nnz = int(f_idx.numel())
    else:
        raise ValueError(f"event_linear method must be 'csr' or 'scatter', got {method!r}")
    if bias is not None:
        out = out + bias
    return out, nnz * w.shape[0]


def _conv_targets(x: torch.Tensor, kh: int, kw: int, stride: list[int], padding: list[int],
                  dilation: list[int], ho: int, wo: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For every (event, tap) pair landing inside the output: its output row and weight row.

    Output row ``(n·Ho + oy)·Wo + ox``; weight row ``(i·kW + j)·C + c`` of ``W`` laid out as
    ``[kH·kW·C, O]``. A tap ``(i, j)`` of an event at ``(y, x)`` reaches ``oy = (y + p − i·d)/s``
    when that is an integer in ``[0, Ho)`` (same for x).
    """
    c = x.shape[1]
    b_idx, c_idx, y_idx, x_idx = x.nonzero(as_tuple=True)
    dev = x.device
    ti = torch.arange(kh, device=dev).repeat_interleave(kw)[:, None]  # [K, 1]
    tj = torch.arange(kw, device=dev).repeat(kh)[:, None]
    ny = y_idx[None] + padding[0] - ti * dilation[0]  # [K, E]
    nx = x_idx[None] + padding[1] - tj * dilation[1]
    oy = torch.div(ny, stride[0], rounding_mode="floor")
    ox = torch.div(nx, stride[1], rounding_mode="floor")
    valid = (ny % stride[0] == 0) & (nx % stride[1] == 0) & (oy >= 0) & (oy < ho) & (ox >= 0) & (ox < wo)
    rows = ((b_idx[None] * ho + oy) * wo + ox)[valid]
    cols = ((ti * kw + tj) * c + c_idx[None])[valid]
    return rows, cols


def event_conv(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None, bias_map: torch.Tensor | None,
               stride: list[int], padding: list[int], dilation: list[int],
               taps: torch.Tensor | None = None, method: str = "csr") -> tuple[torch.Tensor, int]:
    """``x [N, C, H, W]`` binary → ``(conv2d(x, W) + bias [+ bias_map], accumulations)``.

    ``taps`` is ``W`` as ``[kH, kW, C, O]`` contiguous (one weight row per tap and input
    channel), computed if not given. Every (event, tap) pair that lands inside the output adds
    one weight row (``O`` values) to one output position. ``method``: ``"scatter"`` scatter-adds
    the rows (``index_add_``); ``"csr"`` puts the pairs in a sparse matrix ``S`` (output position ×
    weight row, values 1; distinct events never share an entry) and computes ``S·W``, the same sums.
    """
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    taps = w.permute(2, 3, 1, 0).contiguous() if taps is None else taps
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    rows, cols = _conv_targets(x, kh, kw, stride, padding, dilation, ho, wo)
    table = taps.reshape(kh * kw * c, o)
    if method == "csr":
        ones = torch.ones(rows.numel(), dtype=w.dtype, device=w.device)
        pairs = torch.sparse_coo_tensor(torch.stack([rows, cols]), ones, (n * ho * wo, kh * kw * c),
                                        check_invariants=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
            out = pairs.coalesce().to_sparse_csr() @ table
    elif method == "scatter":
        out = torch.zeros(n * ho * wo, o, dtype=w.dtype, device=w.device)
        out.index_add_(0, rows, table[cols])
    else:
        raise ValueError(f"event_conv method must be 'csr' or 'scatter', got {method!r}")
    y = out.reshape(n, ho, wo, o).permute(0, 3, 1, 2)
    if bias is not None:
        y = y + bias.reshape(1, -1, 1, 1)
    if bias_map is not None:
        y = y + bias_map
    return y.contiguous(), int(rows.numel()) * o


class EventRuntime:
    """Runs a :class:`ConvertedGraph` event by event, in float64, on the graph tensors' device."""

    def __init__(self, graph: ConvertedGraph, device: str | torch.device | None = None,
                 method: str = "csr") -> None:
        self.graph = graph
        self.method = method
        self.device = torch.device(device) if device is not None else None
        self._rows: dict[str, torch.Tensor] = {}  # per synaptic node: weights laid out one row per input
        self._folded: dict[str, FoldedSynapse] = {}

    def _weight_rows(self, node: Node, w: torch.Tensor) -> torch.Tensor:
        if node.name not in self._rows:
            self._rows[node.name] = (w.t() if node.op == "linear" else w.permute(2, 3, 1, 0)).contiguous()
        return self._rows[node.name]

    def _fold(self, node: Node, device: torch.device) -> FoldedSynapse:
        if node.name not in self._folded:
            self._folded[node.name] = folded(node).to(self.device or device, F64)
        return self._folded[node.name]

    def synaptic(self, node: Node, xs: list[torch.Tensor], count: LayerCount) -> torch.Tensor:
        t, b = xs[0].shape[:2]
        f = self._fold(node, xs[0].device)
        x = concat_inputs(xs, flatten=node.op == "linear")
        if node.op == "conv":
            x = crop_input(x, f.crop)
        flat = x.flatten(0, 1)
        w, bias, bias_map = f.weight, f.bias, f.bias_map
        assert w is not None
        count.inputs += flat.numel()
        count.events += int((flat != 0).sum())
        if not _is_binary(flat):  # analog input: dense, multiply-accumulate
            if node.op == "linear":
                y = F.linear(flat, w, bias)
            else:
                y = F.conv2d(flat, w, bias, f.stride, f.padding, f.dilation)
                y = y if bias_map is None else y + bias_map
            count.macs += y.numel() * w[0].numel()
            count.dense_macs += y.numel() * w[0].numel()
            return split_steps(y, (t, b))
        rows = self._weight_rows(node, w)
        if node.op == "linear":
            y, acc = event_linear(flat, w, bias, rows, self.method)
        else:
            y, acc = event_conv(flat, w, bias, bias_map, f.stride, f.padding, f.dilation, rows, self.method)
        count.accumulations += acc
        count.dense_macs += y.numel() * w[0].numel()
        return split_steps(y, (t, b))

    @torch.no_grad()
    def run(self, x: torch.Tensor) -> tuple[torch.Tensor, RuntimeReport]:
        """``x [T, B, ...]`` (analog input, or integer pixels for a bitplane graph) → (output, counts)."""
        device = self.device or next((t.device for n in self.graph.nodes for t in n.tensors.values()), x.device)
        x = x.to(device)
        report = RuntimeReport(samples=int(x.shape[1]), time_steps=int(x.shape[0]))
        values: dict[str, torch.Tensor] = {}
        last = self.graph.last_uses()
        ops = {n.name: n.op for n in self.graph.nodes}
        for k, n in enumerate(self.graph.nodes):
            if n.op == "input":
                values[n.name] = input_op(x, n.attrs, F64)
                continue
            xs = [values[i] for i in n.inputs]
            if n.op in ("conv", "linear"):
                count = LayerCount(n.name)
                values[n.name] = self.synaptic(n, xs, count)
                report.layers.append(count)
            else:
                values[n.name] = y = run_elementwise(n.op, xs, n.attrs)
                acc = unit_accumulations(n.op, xs, y, [ops[i] in SPIKING_OPS for i in n.inputs])
                if acc or n.op in ("threshold", "sumpool"):
                    report.unit_events[n.name] = report.unit_events.get(n.name, 0) + acc
            for name in n.inputs:
                if last[name] == k:
                    values.pop(name, None)
        return values[self.graph.nodes[-1].name], report


def run_events(graph: ConvertedGraph, x: torch.Tensor) -> tuple[torch.Tensor, RuntimeReport]:
    """Convenience: ``EventRuntime(graph).run(x)``."""
    return EventRuntime(graph).run(x)
