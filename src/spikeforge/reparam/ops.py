"""Non-synaptic node operations of a converted graph (shared by the dense and event executors).

Equations (per time step ``t``, elementwise; see :mod:`spikeforge.reparam.graph`):

    neuron    h_t = a·v_{t−1} + b·x_t + c;  s_t = Θ(h_t − θ);  v_t = h_t − θ·s_t (soft)
              or v_t = h_t·(1 − s_t) + v_r·s_t (hard);  v_0 = v_r (hard) or 0 (soft)
    threshold u_t = Σ_i w_i·x_{i,t} (in input order);  z_t = [u_t > θ]   (stateless)
    sumpool   y = Σ over each window (zero padding), per channel
    add       y = Σ_i scale_i·x_i (a lone input with scale 1 passes through unchanged)
    input     analog: x;  pixels: integer pixels p (checked);  bitplane (format 1): the 8 planes of p
    quantize  q_t = clamp(round(x_t / s), 0, L)            (format 1)
    planes    n → [b_0 | b_1 | …] on the channel axis      (format 1, see planes.py)

The neuron and quantize arithmetic mirrors :mod:`spikeforge.neurons.functional` and
:class:`spikeforge.hybrid.spiking_relu.SpikingReLU` operation by operation, so in float64 the
converted model reproduces the hybrid's spikes from (almost) identical membrane inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from .graph import PIXEL_BITS
from .planes import to_planes


def split_steps(y: torch.Tensor, lead: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """``[T·B, ...] → [T, B, ...]`` (the inverse of ``flatten(0, 1)``)."""
    return y.reshape(*lead, *y.shape[1:])


def neuron_update(xt: torch.Tensor, v: torch.Tensor, attrs: dict[str, Any],
                  out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One step ``(x_t, v_{t−1}) → (s_t, v_t)``; ``s_t`` bool (written into ``out`` if given).

    The module docstring's equation in four passes (six for a hard reset): ``h = a·v + b·x (+ c)`` (a factor of 1 is
    skipped: ``1·v`` is ``v`` bit for bit), ``d = h − θ``, ``s = d ≥ 0``, and the reset as a
    select: soft ``v = s ? d : h`` (bit for bit ``h − θ·s``), hard ``v = s ? h·0 + v_r : h`` (equal to
    ``h·(1 − s) + v_r·s``, infinite ``h`` included, up to the sign of a zero membrane).
    """
    a, b, c = attrs["decay"], attrs["input_gain"], attrs["bias"]
    theta, v_reset = attrs["threshold"], attrs["v_reset"]
    h = (v if a == 1.0 else a * v) + (xt if b == 1.0 else b * xt)
    if c != 0.0:
        h += c
    d = h - theta
    s = torch.ge(d, 0, out=out) if out is not None else d >= 0
    # hard: ``h·0 + v_r`` where it fired, not ``v_r``: an infinite membrane stays NaN, as in the product form
    v = torch.where(s, d, h) if v_reset is None else torch.where(s, h.mul(0.0).add_(v_reset), h)
    return s, v


def neuron_init(x: torch.Tensor, attrs: dict[str, Any]) -> torch.Tensor:
    """``v_0``: the reset potential (hard reset) or 0 (soft reset), shaped like one step's input."""
    v_reset = attrs["v_reset"]
    return torch.full_like(x, 0.0 if v_reset is None else v_reset)


def neuron_op(x: torch.Tensor, attrs: dict[str, Any], spike_dtype: torch.dtype | None = None) -> torch.Tensor:
    """All ``T`` steps of ``x [T, ...]`` → spikes ``[T, ...]`` in ``spike_dtype`` (default ``x``'s;
    the event runtime asks for bool: one byte per spike, and its events are found without a compare)."""
    out = torch.empty_like(x, dtype=spike_dtype or x.dtype)
    v = neuron_init(x[0], attrs)
    as_bool = out.dtype == torch.bool
    for t in range(x.shape[0]):
        s, v = neuron_update(x[t], v, attrs, out[t] if as_bool else None)
        if not as_bool:
            out[t] = s
    return out


def threshold_op(xs: list[torch.Tensor], attrs: dict[str, Any], spike_dtype: torch.dtype | None = None) -> torch.Tensor:
    """``[u > θ]`` in ``spike_dtype`` (default the inputs'; the event runtime asks for bool)."""
    u = add_op(xs, {"scales": attrs["weights"]})
    threshold = float(attrs["threshold"])
    s = u > threshold
    return s if spike_dtype == torch.bool else s.to(spike_dtype or xs[0].dtype)


def sumpool_op(x: torch.Tensor, attrs: dict[str, Any]) -> torch.Tensor:
    y = F.avg_pool2d(x.flatten(0, 1), attrs["kernel_size"], attrs["stride"], attrs["padding"], attrs["ceil_mode"],
                     count_include_pad=True, divisor_override=1)
    return split_steps(y, x.shape[:2])


def quantize_op(x: torch.Tensor, attrs: dict[str, Any]) -> torch.Tensor:
    return torch.round(x / attrs["step"]).clamp_(0, attrs["levels"])


def planes_op(x: torch.Tensor, attrs: dict[str, Any]) -> torch.Tensor:
    return to_planes(x, int(attrs["max_level"]), str(attrs["coding"]))


def add_op(xs: list[torch.Tensor], attrs: dict[str, Any]) -> torch.Tensor:
    scales = attrs["scales"]
    if len(xs) == 1 and scales[0] == 1.0:
        return xs[0]
    y = xs[0] if scales[0] == 1.0 else scales[0] * xs[0]
    for x, s in zip(xs[1:], scales[1:], strict=True):
        y = y + (x if s == 1.0 else s * x)
    return y


def maxpool_op(x: torch.Tensor, attrs: dict[str, Any]) -> torch.Tensor:
    y = F.max_pool2d(x.flatten(0, 1), attrs["kernel_size"], attrs["stride"], attrs["padding"],
                     attrs["dilation"], attrs["ceil_mode"])
    return split_steps(y, x.shape[:2])


def input_op(x: torch.Tensor, attrs: dict[str, Any], dtype: torch.dtype) -> torch.Tensor:
    if attrs["encoding"] in ("bitplane", "pixels"):
        pix = x.to(torch.int64)
        if bool((pix != x).any()) or int(pix.min()) < 0 or int(pix.max()) >= 2**PIXEL_BITS:
            raise ValueError("a bitplane-encoded model takes integer pixels in 0..255")
        if attrs["encoding"] == "pixels":
            return x.to(dtype)
        return to_planes(pix, 2**PIXEL_BITS - 1, "bitplane").to(dtype)
    return x.to(dtype)


def _first(fn: Callable[[torch.Tensor, dict[str, Any]], torch.Tensor]) -> ElementwiseOp:
    return lambda xs, attrs: fn(xs[0], attrs)


ElementwiseOp = Callable[[list[torch.Tensor], dict[str, Any]], torch.Tensor]
ELEMENTWISE: dict[str, ElementwiseOp] = {
    "neuron": _first(neuron_op), "threshold": threshold_op, "sumpool": _first(sumpool_op),
    "add": add_op, "output": add_op, "maxpool": _first(maxpool_op),
    "quantize": _first(quantize_op), "planes": _first(planes_op),
}


def run_elementwise(op: str, xs: list[torch.Tensor], attrs: dict[str, Any]) -> torch.Tensor:
    """Dispatch one non-synaptic, non-input node."""
    if op not in ELEMENTWISE:
        raise ValueError(f"not an elementwise op: {op!r}")
    return ELEMENTWISE[op](xs, attrs)


EDGE_OPS = ("add", "output", "threshold")  # weighted sums: a spike input costs one accumulation per unit


def unit_accumulations(op: str, xs: list[torch.Tensor], y: torch.Tensor, spiking: list[bool]) -> int:
    """Accumulations a non-synaptic node performs on spike inputs (the units' internal events).

    ``add``/``output``/``threshold``: one per input spike of a spiking input (``spiking[i]``) — a
    weighted edge into one unit; ``sumpool``: one per (spike, window containing it), i.e. the sum of
    its output. Real-valued inputs (a synaptic layer's output, a membrane) are the units' input
    current, already paid for by the layer that computed it.
    """
    if op in EDGE_OPS:
        return sum(int((x != 0).sum()) for x, s in zip(xs, spiking, strict=True) if s)
    if op == "sumpool":
        return int(y.sum().round())
    return 0


def concat_inputs(xs: list[torch.Tensor], flatten: bool) -> torch.Tensor:
    """A synaptic node's input: its inputs concatenated on the channel axis (flattened for linear)."""
    if flatten:
        xs = [x.flatten(2) for x in xs]
    return xs[0] if len(xs) == 1 else torch.cat(xs, dim=2)


def crop_input(x: torch.Tensor, crop: list[int] | None) -> torch.Tensor:
    if not crop:
        return x
    return x[..., : crop[0], : crop[1]]
