"""An independent NIR simulator written from the NIR specification (numpy, float64), for the export tests.

Primitives (https://github.com/neuromorphs/NIR, ``nir/ir/*.py`` docstrings and docs/source/primitives.md),
integrated with forward Euler at a step ``dt``, one time step at a time, nodes in topological order:

    Affine     y = W x + b                   Conv2d    cross-correlation, zero padding, stride, dilation
    Scale      y = s ⊙ x                     Flatten   start_dim = 0 (no batch dimension in NIR)
    AvgPool2d  window mean, zero padding     SumPool2d window sum, zero padding
    LIF        τ v̇ = (v_leak − v) + R I:  v ← (1 − dt/τ)·v + (dt/τ)·(v_leak + R I)
    IF         v̇ = R I:                   v ← v + dt·R I
    then       z = [v > v_threshold],  v ← v_reset where z
    Threshold  z = [I > threshold]

A node with several incoming edges receives their sum. NIR leaves a neuron's initial state to the
consumer: LIF starts at its metadata's ``v_init`` (spikeforge records it) or else at ``v_leak``; IF at 0.
"""

from __future__ import annotations

import nir
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def np_conv2d(x: np.ndarray, node: nir.Conv2d) -> np.ndarray:
    """``[B, C, H, W]`` cross-correlation with zero padding, stride and dilation (groups = 1)."""
    assert node.groups == 1
    (ph, pw), (sh, sw), (dh, dw) = node.padding, node.stride, node.dilation
    w = node.weight
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    span = ((w.shape[2] - 1) * dh + 1, (w.shape[3] - 1) * dw + 1)
    win = sliding_window_view(xp, span, axis=(2, 3))[:, :, ::sh, ::sw, ::dh, ::dw]
    return np.einsum("bchwij,ocij->bohw", win, w) + node.bias[None, :, None, None]


def np_pool(x: np.ndarray, node: nir.AvgPool2d | nir.SumPool2d) -> np.ndarray:
    (kh, kw), (sh, sw), (ph, pw) = node.kernel_size, node.stride, node.padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    total = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw].sum(axis=(-2, -1))
    return total / (kh * kw) if isinstance(node, nir.AvgPool2d) else total


class NirSimulator:
    """Runs a NIR graph on ``[T, B, ...]`` inputs and records every node's output."""

    def __init__(self, graph: nir.NIRGraph, dt: float = 1.0) -> None:
        self.graph, self.dt = graph, dt
        self.preds = {k: [a for a, b in graph.edges if b == k] for k in graph.nodes}
        self.order: list[str] = []
        while len(self.order) < len(graph.nodes):
            ready = [k for k in graph.nodes if k not in self.order and all(p in self.order for p in self.preds[k])]
            assert ready, "the graph has a cycle"
            self.order += ready
        self.margin = np.inf  # smallest |v − v_threshold| of any neuron or unit

    def fire(self, node: object, v: np.ndarray, threshold: np.ndarray) -> np.ndarray:
        self.margin = min(self.margin, float(np.abs(v - threshold).min()))
        return (v > threshold).astype(np.float64)

    def neuron(self, name: str, node: object, i: np.ndarray, state: dict[str, np.ndarray]) -> np.ndarray:
        if isinstance(node, nir.Threshold):
            return self.fire(node, i, node.threshold)
        if isinstance(node, nir.LIF):
            init = node.metadata.get("v_init") if node.metadata else None
            v = state.get(name, np.broadcast_to(node.v_leak if init is None else init, i.shape))
            a = 1.0 - self.dt / node.tau
            v = a * v + (self.dt / node.tau) * (node.v_leak + node.r * i)
        else:
            v = state.get(name, np.zeros_like(i)) + self.dt * node.r * i
        z = self.fire(node, v, node.v_threshold)
        state[name] = np.where(z > 0, node.v_reset, v)
        return z

    def step(self, name: str, x: np.ndarray, state: dict[str, np.ndarray]) -> np.ndarray:
        node = self.graph.nodes[name]
        if isinstance(node, nir.Input | nir.Output):
            return x
        if isinstance(node, nir.Conv2d):
            return np_conv2d(x, node)
        if isinstance(node, nir.AvgPool2d | nir.SumPool2d):
            return np_pool(x, node)
        if isinstance(node, nir.Flatten):
            assert node.start_dim == 0 and node.end_dim == -1
            return x.reshape(x.shape[0], -1)
        if isinstance(node, nir.Affine):
            return x @ node.weight.T + node.bias
        if isinstance(node, nir.Scale):
            return x * node.scale
        if isinstance(node, nir.LIF | nir.IF | nir.Threshold):
            return self.neuron(name, node, x, state)
        raise AssertionError(f"simulator: unsupported node {type(node).__name__}")

    def run(self, x_seq: np.ndarray) -> dict[str, np.ndarray]:
        """Every node's output ``[T, B, ...]`` for the input ``x_seq [T, B, ...]`` (starting from rest)."""
        state: dict[str, np.ndarray] = {}
        rec: dict[str, list[np.ndarray]] = {k: [] for k in self.order}
        for x in x_seq:
            out: dict[str, np.ndarray] = {}
            for k in self.order:
                inp = x if not self.preds[k] else sum(out[p] for p in self.preds[k])
                out[k] = self.step(k, inp, state)
                rec[k].append(out[k])
        return {k: np.stack(v) for k, v in rec.items()}
