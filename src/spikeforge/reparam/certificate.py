"""Exact by certificate: margins of every decision against a rigorous bound on hybrid − converted.

The hybrid and the converted graph compute the same real-valued function (every conversion step
is an algebraic identity), but in float64 with different operation orders and folded weights.
Walking the converted graph node by node (:meth:`Certificate.on_node`), this module propagates,
per element, a bound ``D`` on ``|hybrid value − converted value|`` and checks every *decision*:

- a neuron fires at ``h ≥ θ``: both sides decide alike if ``D_h = 0`` (identical inputs and the same
  operations, so identical ``h``) or ``|h − θ| > D_h``;
- a SpikingReLU site's level ``q = clamp(round_he(x/s), 0, L)`` against its threshold units: alike if
  ``D_x = 0`` and the units read the hybrid's ``x`` through calibrated thresholds (:mod:`.units`; bit
  planes also need ``s`` a power of two and exact lateral subtractions, checked with TwoSum), or if
  ``x`` is farther from every rounding boundary ``(k+½)·s`` than ``D_x + 2γ_{P+3}(|x| + (L+1)s)``
  (the division, the laterals and the thresholds' own rounding).

Bounds (``γ_n`` from :mod:`.floats`; ``A`` = the magnitude of the summed terms, ``|W|·|x| + bias_abs``):

    synaptic   D = 0 if both sides are exact (powers-of-two folds, short enough weights, sums within
               2^53 quanta), else 2·γ_{2n+K}·A        (n: fan-in; K folding operations)
    neuron     D_h = |a|·D_v + |b|·D_x (+ 2γ_3·(|a v| + |b x| + |c|) once the inputs differ);
               after the (certified) decision D_v = 0 on a spike (hard reset), D_h otherwise
    add        D = Σ|s_i|·D_i (+ 2γ_{n+1}·Σ|s_i x_i| unless all scales are 1 and the inputs equal)
    units      spikes: D = 0 once their decision is certified

A second bound, ``D32``, covers a *float32* consumer of the converted graph (what NIR peers run):
the same rules at ``u = 2^−24`` on one side only. Certified decisions make the spikes equal, the
output bound ``logit_bound`` then bounds ``|Δlogit|``. If a decision is not certified the bounds
downstream assume it agreed (the verifier still counts the actual flips).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from .floats import MANTISSA_BITS, U32, gamma, is_power_of_two, log2_quantum, significant_bits, two_sum_error
from .graph import SYNAPTIC_OPS, ConvertedGraph, Node
from .ops import concat_inputs, crop_input, split_steps
from .synapse import folded, pools_of
from .units import code

NEAR = 1e-9  # decisions this close to their boundary are counted as "near"
FOLD_OPS = 8  # roundings a folded weight may carry (BN scale, plane factor, pool division, ...)
NEURON_OPS = 3  # a·v, b·x, + c
LEVEL_OPS = 3  # the division x/s, the threshold's representation, one lateral rounding per unit


@dataclass
class Bound:
    d: torch.Tensor  # |hybrid − converted| (float64 both)
    d32: torch.Tensor  # |converted in float32 − converted in float64|
    a: torch.Tensor  # magnitude of the terms that made the value


@dataclass
class Tally:
    decisions: int = 0
    exact: int = 0  # decided by identical arithmetic (D = 0)
    uncertified: int = 0
    uncertified32: int = 0
    near: int = 0
    margin: float = float("inf")
    max_bound: float = 0.0
    logit_bound: float = 0.0
    logit_bound32: float = 0.0
    sites: dict[str, int] = field(default_factory=dict)  # uncertified decisions per site

    def record(self, site: str, dist: torch.Tensor, bound: torch.Tensor, exact: torch.Tensor,
               bound32: torch.Tensor) -> None:
        ok = exact | (dist > bound)
        self.decisions += dist.numel()
        self.exact += int(exact.sum())
        bad = int((~ok).sum())
        self.uncertified += bad
        self.uncertified32 += int((dist <= bound32).sum())
        if bad:
            self.sites[site] = self.sites.get(site, 0) + bad
        self.near += int((dist <= NEAR).sum())
        if dist.numel():
            self.margin = min(self.margin, float(dist.min()))
            self.max_bound = max(self.max_bound, float(torch.where(exact, 0.0, bound).max()))


def _zeros(like: torch.Tensor) -> Bound:
    z = torch.zeros_like(like)
    return Bound(z, z, like.abs())


class Certificate:
    """Consumes ``(node, inputs, output)`` in execution order (``ConvertedModel.forward(on_node=...)``)."""

    def __init__(self, graph: ConvertedGraph) -> None:
        self.graph = graph
        self.tally = Tally()
        self.bounds: dict[str, Bound] = {}
        self.last = graph.last_uses()
        self.index = {n.name: i for i, n in enumerate(graph.nodes)}
        self.ops = {n.name: n for n in graph.nodes}
        self.sites: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
        self.handlers = {"input": self._input, "conv": self._synapse, "linear": self._synapse,
                         "neuron": self._neuron, "threshold": self._threshold, "sumpool": self._spikes,
                         "add": self._add, "output": self._output, "maxpool": self._maxpool}

    def on_node(self, node: Node, xs: list[torch.Tensor], y: torch.Tensor) -> None:
        handler = self.handlers.get(node.op)
        if handler is None:
            raise ValueError(f"{node.name}: the certificate does not cover op {node.op!r} (format 1 graph)")
        self.bounds[node.name] = handler(node, xs, y)
        i = self.index[node.name]
        for name in node.inputs:
            if self.last[name] == i:
                self.bounds.pop(name, None)

    def _in(self, node: Node) -> list[Bound]:
        return [self.bounds[i] for i in node.inputs]

    # -- ops ------------------------------------------------------------------------------------
    def _input(self, node: Node, xs: list[torch.Tensor], y: torch.Tensor) -> Bound:
        b = _zeros(y)
        return Bound(b.d, U32 * y.abs() if node.attrs["encoding"] == "analog" else b.d, b.a)

    def _spikes(self, node: Node, xs: list[torch.Tensor], y: torch.Tensor) -> Bound:
        return _zeros(y)

    def _synapse(self, node: Node, xs: list[torch.Tensor], y: torch.Tensor) -> Bound:
        f = folded(node)
        x = concat_inputs(xs, flatten=node.op == "linear")
        w_abs = f.weight.abs().to(y)
        if node.op == "conv":
            x = crop_input(x, f.crop)
            mag = F.conv2d(x.abs().flatten(0, 1), w_abs, None, f.stride, f.padding, f.dilation)
            mag = split_steps(mag, x.shape[:2])
        else:
            mag = F.linear(x.abs(), w_abs)
        bias_abs = node.tensors.get("bias_abs")
        if bias_abs is None:
            bias_abs = node.tensors["bias"].abs() if "bias" in node.tensors else torch.zeros(mag.shape[2])
        bias_abs = bias_abs.to(mag)
        mag = mag + (bias_abs.reshape(-1, *([1] * (mag.dim() - 3))) if bias_abs.dim() == 1 else bias_abs)
        n = 2 * f.weight[0].numel() + FOLD_OPS
        d = torch.zeros_like(mag) if self._exact_synapse(node, f.weight, x, mag) else 2 * gamma(n) * mag
        return Bound(d, gamma(n + 1, U32) * mag, mag)

    def _exact_synapse(self, node: Node, w: torch.Tensor, x: torch.Tensor, mag: torch.Tensor) -> bool:
        """Both sides compute this layer without any rounding (then it is the same value)."""
        if not node.attrs.get("exact_fold") or any(not is_power_of_two(1.0 / (p.kernel[0] * p.kernel[1]))
                                                    for p in pools_of(node)):
            return False
        level_bits = max([int(self.ops[i].attrs.get("levels", 1)).bit_length() for i in node.inputs], default=0)
        binary = bool(((x == 0) | (x == 1)).all())
        in_bits, in_q = (1, 0) if binary else (significant_bits(x), log2_quantum(x))
        q_w = log2_quantum(w)
        if q_w is None or in_q is None:
            return True  # all-zero weights or inputs: every sum is the bias alone
        w_bits = significant_bits(w)
        products = min(w_bits, in_bits) == 1 or w_bits + in_bits <= MANTISSA_BITS  # odd p-bit × q-bit: ≤ p+q bits
        bias = node.tensors.get("bias")
        q_b = None if bias is None else log2_quantum(bias)
        q = q_w + in_q if q_b is None else min(q_w + in_q, q_b)
        single = int((w != 0).flatten(1).sum(1).max()) <= 1 and (bias is None or not bool(bias.any()))
        return (products and w_bits + level_bits <= MANTISSA_BITS  # the hybrid's W·(s·q) too
                and (single or float(mag.max()) < 2.0 ** (MANTISSA_BITS + q)))

    def _neuron(self, node: Node, xs: list[torch.Tensor], y: torch.Tensor) -> Bound:
        a, b, c = node.attrs["decay"], node.attrs["input_gain"], node.attrs["bias"]
        theta, v_reset = node.attrs["threshold"], node.attrs["v_reset"]
        x, bx = xs[0], self._in(node)[0]
        v = torch.full_like(x[0], 0.0 if v_reset is None else v_reset)
        dv, dv32 = torch.zeros_like(v), torch.zeros_like(v)
        for t in range(x.shape[0]):
            h = a * v + b * x[t]
            if c != 0.0:
                h = h + c
            mag = abs(a) * v.abs() + abs(b) * x[t].abs() + abs(c)
            differ = (dv > 0) | (bx.d[t] > 0)
            dh = abs(a) * dv + abs(b) * bx.d[t] + torch.where(differ, 2 * gamma(NEURON_OPS) * mag, 0.0)
            dh32 = abs(a) * dv32 + abs(b) * bx.d32[t] + gamma(NEURON_OPS + 1, U32) * (mag + abs(theta))
            dist = (h - theta).abs()
            self.tally.record(node.name, dist, dh, dh == 0, dh32)
            s = h - theta >= 0
            if v_reset is None:
                v = h - theta * s.to(h.dtype)
                dv, dv32 = dh, dh32
            else:
                v = torch.where(s, torch.full_like(h, v_reset), h)
                dv, dv32 = torch.where(s, 0.0, dh), torch.where(s, 0.0, dh32)
        return _zeros(y)

    def _threshold(self, node: Node, xs: list[torch.Tensor], y: torch.Tensor) -> Bound:
        a = node.attrs
        if a.get("role") != "level":  # integer inputs (counts, pixels, OR pools): exact integers
            half = torch.full_like(y, 0.5)  # integers sit ½ away from the threshold
            self.tally.record(node.name, half, torch.zeros_like(y), torch.ones_like(y, dtype=torch.bool),
                              torch.zeros_like(y))
            return _zeros(y)
        key = (a["site"], a["code"])
        s, levels = float(a["quantum"]), int(a["levels"])
        bx = self._in(node)[0]
        if key not in self.sites:  # the site's first unit reads x alone
            self.sites[key] = self._level_state(xs[0], bx, s, levels, a["code"])
        state = self.sites[key]
        if len(node.inputs) > 1:  # a lower bit-plane unit: its lateral subtraction must be exact
            total, err = xs[0], torch.zeros_like(xs[0])
            for xi, wi in zip(xs[1:], a["weights"][1:], strict=True):
                term = wi * xi
                new = total + term
                err = err + two_sum_error(total, term, new).abs()
                total = new
            state["exact"] = state["exact"] & (err == 0) & bool(is_power_of_two(s))
        state["left"] = state["left"] - 1
        if int(state["left"]) == 0:
            self.tally.record(a["site"], state["dist"], state["bound"], state["exact"], state["bound32"])
            del self.sites[key]
        return _zeros(y)

    def _level_state(self, x: torch.Tensor, bx: Bound, s: float, levels: int, coding: str) -> dict[str, torch.Tensor]:
        units = code(levels, coding)
        k = torch.clamp(torch.round(x / s - 0.5), 0, levels - 1)
        dist = (x - (k + 0.5) * s).abs()
        rounding = x.abs() + (levels + 1) * s
        n = len(units) + LEVEL_OPS
        return {"dist": dist, "exact": bx.d == 0, "bound": bx.d + 2 * gamma(n) * rounding,
                "bound32": bx.d32 + gamma(n, U32) * rounding, "left": torch.tensor(len(units))}

    def _add(self, node: Node, xs: list[torch.Tensor], y: torch.Tensor) -> Bound:
        scales: list[float] = list(node.attrs["scales"])
        bs = self._in(node)
        d = sum((abs(sc) * b.d for sc, b in zip(scales, bs, strict=True)), torch.zeros_like(y))
        d32 = sum((abs(sc) * b.d32 for sc, b in zip(scales, bs, strict=True)), torch.zeros_like(y))
        mag = sum((abs(sc) * x.abs() for sc, x in zip(scales, xs, strict=True)), torch.zeros_like(y))
        n = len(xs) + 1
        same = all(sc == 1.0 for sc in scales)
        rounding = torch.where((d > 0) | (not same), 2 * gamma(n) * mag, 0.0)
        return Bound(d + rounding, d32 + gamma(n, U32) * mag, mag)

    def _output(self, node: Node, xs: list[torch.Tensor], y: torch.Tensor) -> Bound:
        b = self._add(node, xs, y)
        self.tally.logit_bound = max(self.tally.logit_bound, float(b.d.max()))
        self.tally.logit_bound32 = max(self.tally.logit_bound32, float(b.d32.max()))
        return b

    def _maxpool(self, node: Node, xs: list[torch.Tensor], y: torch.Tensor) -> Bound:
        a = node.attrs
        b = self._in(node)[0]

        def pool(t: torch.Tensor) -> torch.Tensor:
            p = F.max_pool2d(t.flatten(0, 1), a["kernel_size"], a["stride"], a["padding"], a["dilation"],
                             a["ceil_mode"])
            return split_steps(p, t.shape[:2])
        return Bound(pool(b.d), pool(b.d32), y.abs())

    def result(self, flips: int) -> dict[str, Any]:
        t = self.tally
        certified = t.uncertified == 0
        if t.decisions == t.exact and t.logit_bound == 0.0:
            guarantee = "exact-arithmetic"
        elif certified:
            guarantee = "certified"
        else:
            guarantee = "observed" if flips == 0 else "failed"
        return {"certified": certified, "guarantee": guarantee, "decisions": t.decisions,
                "exact_decisions": t.exact, "uncertified_decisions": t.uncertified,
                "uncertified_sites": dict(t.sites), "margin": t.margin if t.decisions else None,
                "near_boundary": t.near, "near_boundary_tolerance": NEAR, "max_bound": t.max_bound,
                "logit_bound": t.logit_bound, "float32_certified": t.uncertified32 == 0,
                "float32_uncertified_decisions": t.uncertified32, "float32_logit_bound": t.logit_bound32}


def covers(graph: ConvertedGraph) -> bool:
    """Whether the certificate applies (format 2 graphs: no quantize/planes nodes)."""
    return not any(n.op in ("quantize", "planes") for n in graph.nodes) and all(
        n.op in SYNAPTIC_OPS or n.op in ("input", "neuron", "threshold", "sumpool", "add", "output", "maxpool")
        for n in graph.nodes) and graph.input.attrs.get("encoding") != "bitplane"
