"""Event-driven execution of a converted graph: only the spikes that occur are propagated.

For a synaptic node reading a binary tensor ``b`` (one sample and step: ``b ∈ {0,1}^{C×H×W}``):

    linear:  y = bias + Σ_{i : b_i = 1} W[:, i]                 (one weight column per event)
    conv:    y[:, oy, ox] = bias (+ bias_map) + Σ_{(c, y, x) : b = 1} Σ_{taps (i, j)} W[:, c, i, j]
             where oy·s − p + i·d = y and ox·s − p + j·d = x (the output the tap reaches)

Events are gathered once (``nonzero``), and each tap of the kernel is one vectorised
scatter-add (``index_add_``) of weight rows at the outputs the events reach. The runtime counts
the accumulations it performs: ``C_out`` per (event, tap) pair that lands inside the output
(a linear layer: ``C_out`` per event) — the definition of SOPs used by
:mod:`spikeforge.energy`, so the counts equal the verifier's. A layer whose input is not binary
(the analog first layer of a non-bitplane model) is computed densely and counted as
``MACs = out_elements · C_in · kH · kW`` (``in · out`` for linear) per step and sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..reparam.graph import ConvertedGraph, Node
from ..reparam.ops import concat_inputs, crop_input, input_op, run_elementwise

F64 = torch.float64


@dataclass
class LayerCount:
    """Operations one synaptic node performed over a whole call (all samples and steps)."""

    name: str
    accumulations: int = 0  # event-driven adds of weight values (binary input)
    macs: int = 0  # dense multiply-accumulates (analog input)
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

    @property
    def accumulations(self) -> int:
        return sum(c.accumulations for c in self.layers)

    @property
    def macs(self) -> int:
        return sum(c.macs for c in self.layers)


def _is_binary(x: torch.Tensor) -> bool:
    return bool(((x == 0) | (x == 1)).all())


def event_linear(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, int]:
    """``x [N, F]`` binary → ``(x·Wᵀ + bias, accumulations)`` by summing active columns."""
    n_idx, f_idx = x.nonzero(as_tuple=True)
    out = torch.zeros(x.shape[0], w.shape[0], dtype=w.dtype, device=w.device)
    out.index_add_(0, n_idx, w.t()[f_idx])
    if bias is not None:
        out = out + bias
    return out, int(f_idx.numel()) * w.shape[0]


def event_conv(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None, bias_map: torch.Tensor | None,
               stride: list[int], padding: list[int], dilation: list[int]) -> tuple[torch.Tensor, int]:
    """``x [N, C, H, W]`` binary → ``(conv2d(x, W) + bias [+ bias_map], accumulations)``."""
    n, _, h, wd = x.shape
    o, _, kh, kw = w.shape
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    b_idx, c_idx, y_idx, x_idx = x.nonzero(as_tuple=True)
    out = torch.zeros(n * ho * wo, o, dtype=w.dtype, device=w.device)
    count = 0
    for i in range(kh):
        ny = y_idx + padding[0] - i * dilation[0]
        oy = torch.div(ny, stride[0], rounding_mode="floor")
        vy = (ny % stride[0] == 0) & (oy >= 0) & (oy < ho)
        for j in range(kw):
            nx = x_idx + padding[1] - j * dilation[1]
            ox = torch.div(nx, stride[1], rounding_mode="floor")
            valid = vy & (nx % stride[1] == 0) & (ox >= 0) & (ox < wo)
            if not bool(valid.any()):
                continue
            rows = (b_idx[valid] * ho + oy[valid]) * wo + ox[valid]
            out.index_add_(0, rows, w[:, :, i, j].t()[c_idx[valid]])
            count += int(valid.sum()) * o
    y = out.reshape(n, ho, wo, o).permute(0, 3, 1, 2)
    if bias is not None:
        y = y + bias.reshape(1, -1, 1, 1)
    if bias_map is not None:
        y = y + bias_map
    return y.contiguous(), count


class EventRuntime:
    """Runs a :class:`ConvertedGraph` event by event, in float64, on the graph tensors' device."""

    def __init__(self, graph: ConvertedGraph, device: str | torch.device | None = None) -> None:
        self.graph = graph
        self.device = torch.device(device) if device is not None else None

    def _t(self, node: Node, key: str) -> torch.Tensor | None:
        t = node.tensors.get(key)
        if t is None:
            return None
        return t.to(self.device or t.device, F64)

    def synaptic(self, node: Node, xs: list[torch.Tensor], count: LayerCount) -> torch.Tensor:
        t, b = xs[0].shape[:2]
        x = concat_inputs(xs, flatten=node.op == "linear")
        if node.op == "conv":
            x = crop_input(x, node.attrs.get("crop"))
        flat = x.flatten(0, 1)
        w = self._t(node, "weight")
        assert w is not None
        bias, bias_map = self._t(node, "bias"), self._t(node, "bias_map")
        count.inputs += flat.numel()
        count.events += int((flat != 0).sum())
        a = node.attrs
        if not _is_binary(flat):  # analog input: dense, multiply-accumulate
            if node.op == "linear":
                y = F.linear(flat, w, bias)
                count.macs += y.numel() * w.shape[1]
            else:
                y = F.conv2d(flat, w, bias, a["stride"], a["padding"], a["dilation"])
                y = y if bias_map is None else y + bias_map
                count.macs += y.numel() * w[0].numel()
            return y.unflatten(0, (t, b))
        if node.op == "linear":
            y, acc = event_linear(flat, w, bias)
        else:
            y, acc = event_conv(flat, w, bias, bias_map, a["stride"], a["padding"], a["dilation"])
        count.accumulations += acc
        return y.unflatten(0, (t, b))

    @torch.no_grad()
    def run(self, x: torch.Tensor) -> tuple[torch.Tensor, RuntimeReport]:
        """``x [T, B, ...]`` (analog input, or integer pixels for a bitplane graph) → (output, counts)."""
        if self.device is not None:
            x = x.to(self.device)
        report = RuntimeReport(samples=int(x.shape[1]), time_steps=int(x.shape[0]))
        values: dict[str, torch.Tensor] = {}
        for n in self.graph.nodes:
            if n.op == "input":
                values[n.name] = input_op(x, n.attrs, F64)
                continue
            xs = [values[i] for i in n.inputs]
            if n.op in ("conv", "linear"):
                count = LayerCount(n.name)
                values[n.name] = self.synaptic(n, xs, count)
                report.layers.append(count)
            else:
                values[n.name] = run_elementwise(n.op, xs, n.attrs)
        return values[self.graph.nodes[-1].name], report


def run_events(graph: ConvertedGraph, x: torch.Tensor) -> tuple[torch.Tensor, RuntimeReport]:
    """Convenience: ``EventRuntime(graph).run(x)``."""
    return EventRuntime(graph).run(x)
