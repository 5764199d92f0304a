"""Non-synaptic node operations of a converted graph (shared by the dense and event executors).

Equations (per time step ``t``, elementwise; see :mod:`spikeforge.reparam.graph`):

    neuron    h_t = a·v_{t−1} + b·x_t + c;  s_t = Θ(h_t − θ);  v_t = h_t − θ·s_t (soft)
              or v_t = h_t·(1 − s_t) + v_r·s_t (hard);  v_0 = v_r (hard) or 0 (soft)
    quantize  q_t = clamp(round(x_t / s), 0, L)
    planes    n → [b_0 | b_1 | …] on the channel axis (bitplane or unary, see planes.py)
    add       y = Σ_i scale_i·x_i (a lone input with scale 1 passes through unchanged)
    input     analog: x;  bitplane: the 8 bit planes of integer pixels

The neuron and quantize arithmetic mirrors :mod:`spikeforge.neurons.functional` and
:class:`spikeforge.hybrid.spiking_relu.SpikingReLU` operation by operation, so in float64 the
converted model reproduces the hybrid's spikes from (almost) identical membrane inputs.
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F

from .graph import PIXEL_BITS
from .planes import to_planes


def neuron_op(x: torch.Tensor, attrs: dict[str, Any]) -> torch.Tensor:
    a, b, c = attrs["decay"], attrs["input_gain"], attrs["bias"]
    theta, v_reset = attrs["threshold"], attrs["v_reset"]
    v = torch.full_like(x[0], 0.0 if v_reset is None else v_reset)
    out = []
    for xt in x:
        h = a * v + b * xt
        if c != 0.0:
            h = h + c
        s = (h - theta >= 0).to(x.dtype)
        v = h - theta * s if v_reset is None else h * (1.0 - s) + v_reset * s
        out.append(s)
    return torch.stack(out)


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
    return cast(torch.Tensor, y.unflatten(0, x.shape[:2]))  # type: ignore[no-untyped-call]


def input_op(x: torch.Tensor, attrs: dict[str, Any], dtype: torch.dtype) -> torch.Tensor:
    if attrs["encoding"] == "bitplane":
        pix = x.to(torch.int64)
        if bool((pix != x).any()) or int(pix.min()) < 0 or int(pix.max()) >= 2**PIXEL_BITS:
            raise ValueError("a bitplane-encoded model takes integer pixels in 0..255")
        return to_planes(pix, 2**PIXEL_BITS - 1, "bitplane").to(dtype)
    return x.to(dtype)


def run_elementwise(op: str, xs: list[torch.Tensor], attrs: dict[str, Any]) -> torch.Tensor:
    """Dispatch one non-synaptic, non-input node."""
    if op == "neuron":
        return neuron_op(xs[0], attrs)
    if op == "quantize":
        return quantize_op(xs[0], attrs)
    if op == "planes":
        return planes_op(xs[0], attrs)
    if op in ("add", "output"):
        return add_op(xs, attrs)
    if op == "maxpool":
        return maxpool_op(xs[0], attrs)
    raise ValueError(f"not an elementwise op: {op!r}")


def concat_inputs(xs: list[torch.Tensor], flatten: bool) -> torch.Tensor:
    """A synaptic node's input: its inputs concatenated on the channel axis (flattened for linear)."""
    if flatten:
        xs = [x.flatten(2) for x in xs]
    return xs[0] if len(xs) == 1 else torch.cat(xs, dim=2)


def crop_input(x: torch.Tensor, crop: list[int] | None) -> torch.Tensor:
    if not crop:
        return x
    return x[..., : crop[0], : crop[1]]
