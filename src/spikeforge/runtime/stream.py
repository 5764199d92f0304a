"""Streaming: a converted graph run one time step per call, the neuron state kept between calls.

Memory is bounded by one step of the graph plus one membrane per neuron node, whatever the
stream's length. The step function is the whole-run neuron loop
(:func:`spikeforge.reparam.ops.neuron_op`) cut open: both call the same one-step update
(:func:`spikeforge.reparam.ops.neuron_update`), so a stream of ``T`` single steps gives exactly
the spikes of one ``T``-step :meth:`EventRuntime.run`:

    h_t = a·v_{t−1} + b·x_t (+ c);  s_t = Θ(h_t − θ);  v_t = h_t − θ·s_t (soft)  or  h_t·(1 − s_t) + v_r·s_t
    v_0 = v_r (hard reset) or 0 (soft)

Every other node (synaptic layers, threshold units, pools, adds) is stateless per step.
"""

from __future__ import annotations

from typing import Any

import torch

from ..reparam.graph import ConvertedGraph, Node
from ..reparam.ops import neuron_init, neuron_update
from .events import EventRuntime
from .report import RuntimeReport


def neuron_step(x: torch.Tensor, v: torch.Tensor, attrs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """One step ``(x_t, v_{t−1}) → (s_t, v_t)``, spikes in ``x``'s dtype: exactly the step of
    :func:`neuron_op` (both call :func:`spikeforge.reparam.ops.neuron_update`)."""
    s, v = neuron_update(x, v, attrs)
    return s.to(x.dtype), v


class StreamingRuntime:
    """``step(x_t [B, ...]) → y_t [B, classes]``; ``reset()`` starts a new stream.

    Built on an :class:`EventRuntime` (or a graph, run with the default one). ``report``
    accumulates the counts of every step since the last reset (``time_steps`` = steps).
    """

    def __init__(self, runtime: EventRuntime | ConvertedGraph) -> None:
        self.runtime = runtime if isinstance(runtime, EventRuntime) else EventRuntime(runtime)
        self.state: dict[str, torch.Tensor] = {}
        self.report = RuntimeReport(samples=0, time_steps=0)

    def reset(self) -> None:
        self.state = {}
        self.report = RuntimeReport(samples=0, time_steps=0)

    def _neuron(self, node: Node, h: torch.Tensor) -> torch.Tensor:
        x = h[0]
        v = self.state.get(node.name)
        if v is None:
            v = neuron_init(x, node.attrs)
        elif v.shape != x.shape:
            raise ValueError(f"{node.name}: a step of shape {tuple(x.shape)} continues a stream of shape "
                             f"{tuple(v.shape)}; call reset() to start a new stream")
        s, self.state[node.name] = neuron_update(x, v, node.attrs)
        return s[None]  # bool spikes, as the whole-run runtime's neurons give them

    @torch.no_grad()
    def step(self, x_t: torch.Tensor) -> torch.Tensor:
        """Advance every neuron one step on the input ``x_t`` (one step of the model input)."""
        step_report = RuntimeReport(samples=int(x_t.shape[0]), time_steps=1)
        y = self.runtime.walk(x_t[None], self._neuron, step_report)
        if not self.report.time_steps:
            self.report.samples = step_report.samples
        self.report.merge(step_report, same_samples=True)
        return y[0]

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """Feed ``x [T, B, ...]`` step by step (continuing the stream); the outputs ``[T, B, ...]``."""
        return torch.stack([self.step(xt) for xt in x])
