"""Reading NIR nodes: shape inference, attributes and tensors of each primitive (one table, :data:`READERS`).

A reader gets the node, its batch-free input shape and the graph's semantics and returns a
:class:`Read`: output shape, JSON-able attributes (hyper-parameters and uniform neuron
coefficients) and tensors (weights, per-neuron coefficients). Neuron coefficients follow
:mod:`.semantics` (forward Euler unless the profile says otherwise):

    LIF / LI    a = 1 − dt/τ,  b = dt·R/τ,  c = dt·v_leak/τ      ("exp": a = e^{−dt/τ}, b = R, c = (1−a)·v_leak)
    IF / I      a = 1,         b = dt·R  ("sum": R),  c = 0
    Threshold   a = 0,         b = 1,     c = 0
    CubaLI(F)   current: a_s from τ_syn as above, b_s = dt·w_in/τ_syn ("jump": w_in, "decayed": a_s·w_in);
                membrane from τ_mem, R, v_leak

With ``resistance = "dt"`` (Rockpool) ``R = τ·e^{−dt/τ}/dt`` gives each neuron node's dt
(:func:`dt_from_resistance`) and no gain: ``b = 1`` for LIF and CubaLIF membranes, ``b = a`` for LI.

computed in float64 from the stored arrays. A membrane starts at rest: ``v_leak`` for leaky
neurons, ``v_reset`` for IF, 0 for integrators and currents.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .semantics import Semantics

Shape = tuple[int, ...]
F64 = np.float64


@dataclass
class Read:
    out_shape: Shape
    attrs: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)


class NodeError(ValueError):
    """A node that cannot be imported; the message names it."""


def arr(node: Any, attr: str) -> np.ndarray:
    v = getattr(node, attr)
    return np.asarray(v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v)


def ints(v: Any, n: int, what: str) -> tuple[int, ...]:
    """An int or a length-n sequence as a tuple of n ints."""
    a = np.atleast_1d(np.asarray(v)).astype(np.int64).reshape(-1)
    if a.size == 1:
        a = np.repeat(a, n)
    if a.size != n:
        raise NodeError(f"{what} must have {n} values, got {a.tolist()}")
    return tuple(int(x) for x in a)


def per_element(node: Any, attr: str, shape: Shape, where: str) -> np.ndarray:
    """Parameter ``attr`` broadcast to the node's shape, float64."""
    a = arr(node, attr).astype(F64)
    try:
        return np.broadcast_to(a, shape).copy()
    except ValueError:
        raise NodeError(f"node {where!r}: {attr} has shape {list(a.shape)}, which does not fit the node's "
                        f"input shape {list(shape)}") from None


def tensor(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(np.asarray(a), dtype=torch.get_default_dtype())


def uniform_value(a: np.ndarray) -> float | None:
    """The single value of ``a`` in the model's dtype (float32), or None when the elements differ there."""
    flat = np.asarray(a).reshape(-1).astype(model_dtype())
    return float(flat[0]) if flat.size and np.all(flat == flat[0]) else None


def model_dtype() -> np.dtype:
    return np.dtype(str(torch.get_default_dtype()).removeprefix("torch."))


def coefficients(values: dict[str, np.ndarray], where: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Uniform arrays → floats (attrs ``coefs``); others → tensors named ``coefs.<name>``."""
    coefs: dict[str, Any] = {}
    tensors: dict[str, torch.Tensor] = {}
    for name, a in values.items():
        if not np.all(np.isfinite(a)):
            raise NodeError(f"node {where!r}: {name} has non-finite values")
        coefs[name] = uniform_value(a)
        if coefs[name] is None:
            tensors[f"coefs.{name}"] = tensor(a)
    return coefs, tensors


DT_TOLERANCE = 1e-5  # relative spread allowed between the dt values that float32 R = τ·e^{−dt/τ}/dt gives
NEWTON_STEPS = 60  # Newton steps for u·e^u = 1/R (monotone from the start below; converged long before)


def dt_from_resistance(tau: np.ndarray, r: np.ndarray) -> np.ndarray:
    """The ``dt`` with ``R = τ·e^{−dt/τ}/dt`` (Rockpool's record of its time step), element-wise.

    With ``u = dt/τ``: ``u·e^u = 1/R``, i.e. ``g(u) = u + ln u + ln R = 0``; ``g`` is increasing and
    concave and ``g(1/(1 + R)) < 0``, so Newton's method from there rises monotonically to the root.
    """
    u = 1.0 / (1.0 + r)
    log_r = np.log(r)
    for _ in range(NEWTON_STEPS):
        u = u - (u + np.log(u) + log_r) / (1.0 + 1.0 / u)
    return u * tau


def node_time_step(node: Any, tau_attr: str, shape: Shape, sem: Semantics, where: str) -> float:
    """``dt`` for a neuron node: the semantics' (``resistance = "value"``), or solved from the node's
    ``R`` and ``tau_attr`` (``"dt"``), which a given ``dt`` must match."""
    if sem.resistance == "value":
        return sem.time_step(where)
    tau = per_element(node, tau_attr, shape, where) * sem.tau_scale
    r = per_element(node, "r", shape, where)
    if not (np.all(tau > 0) and np.all(r > 0)):
        raise NodeError(f"node {where!r}: {tau_attr} and r must be > 0 to read the time step from "
                        "R = τ·e^(−dt/τ)/dt (resistance = 'dt')")
    dts = dt_from_resistance(tau, r)
    dt = float(np.median(dts))
    if np.max(np.abs(dts - dt)) > DT_TOLERANCE * dt:
        raise NodeError(f"node {where!r}: R = τ·e^(−dt/τ)/dt gives different time steps across its neurons "
                        f"({dts.min():.6g} to {dts.max():.6g})")
    if sem.dt is None:
        return dt
    if abs(sem.dt - dt) > DT_TOLERANCE * dt:
        raise NodeError(f"node {where!r}: its R = τ·e^(−dt/τ)/dt records dt = {dt:.6g}, not the given dt = "
                        f"{sem.dt:g}")
    return sem.dt


def leak(node: Any, tau_attr: str, shape: Shape, sem: Semantics, where: str, dt: float,
         ) -> tuple[np.ndarray, np.ndarray]:
    """Decay ``a`` and the factor ``k`` multiplying ``R·I`` and ``v_leak`` (see the module docstring)."""
    tau = per_element(node, tau_attr, shape, where) * sem.tau_scale
    if not np.all(tau > 0):
        raise NodeError(f"node {where!r}: {tau_attr} must be > 0 (got min {tau.min():g})")
    if sem.decay == "euler":
        k = dt / tau
        return 1.0 - k, k
    a = np.exp(-dt / tau)
    return a, np.ones_like(a)


def membrane(node: Any, shape: Shape, sem: Semantics, where: str, tau_attr: str = "tau",
             synapse: bool = False) -> dict[str, np.ndarray]:
    """Coefficients of a leaky membrane; ``synapse``: an LI node (Rockpool's synapse under ``resistance = "dt"``)."""
    a, k = leak(node, tau_attr, shape, sem, where, node_time_step(node, tau_attr, shape, sem, where))
    v_leak = per_element(node, "v_leak", shape, where)
    c = k * v_leak if sem.decay == "euler" else (1.0 - a) * v_leak
    if sem.resistance == "dt":
        gain = a if synapse else np.ones(shape)
    else:
        gain = k * per_element(node, "r", shape, where)
    return {"decay": a, "gain": gain, "bias": c, "rest": v_leak}


def integration(node: Any, shape: Shape, sem: Semantics, where: str) -> dict[str, np.ndarray]:
    r = per_element(node, "r", shape, where)
    gain = r * sem.time_step(where) if sem.integrate == "euler" else r
    return {"decay": np.ones(shape), "gain": gain, "bias": np.zeros(shape)}


def firing(node: Any, shape: Shape, sem: Semantics, where: str, threshold_attr: str = "v_threshold",
           ) -> dict[str, np.ndarray]:
    theta = per_element(node, threshold_attr, shape, where)
    has_reset = getattr(node, "v_reset", None) is not None
    v_reset = per_element(node, "v_reset", shape, where) if has_reset else np.zeros(shape)
    if sem.reset == "subtract" or sem.spikes == "multi":
        v_reset = np.zeros(shape)  # unused: the membrane subtracts θ
    return {"threshold": theta, "v_reset": v_reset}


def neuron_read(shape: Shape, values: dict[str, np.ndarray], sem: Semantics, where: str, kind: str,
                prefix: str = "") -> Read:
    coefs, tensors = coefficients(values, where)
    attrs = {"kind": kind, "coefs": coefs, "fire": sem.fire, "reset": sem.reset, "spikes": sem.spikes,
             "max_spikes": sem.max_spikes}
    return Read(shape, attrs, {f"{prefix}{k}": v for k, v in tensors.items()})


# ---------------------------------------------------------------- neurons


def read_lif(node: Any, shape: Shape, sem: Semantics, where: str) -> Read:
    values = membrane(node, shape, sem, where) | firing(node, shape, sem, where)
    return neuron_read(shape, values, sem, where, "spiking")


def read_if(node: Any, shape: Shape, sem: Semantics, where: str) -> Read:
    fire = firing(node, shape, sem, where)
    values = integration(node, shape, sem, where) | fire | {"rest": fire["v_reset"]}
    return neuron_read(shape, values, sem, where, "spiking")


def read_li(node: Any, shape: Shape, sem: Semantics, where: str) -> Read:
    return neuron_read(shape, membrane(node, shape, sem, where, synapse=True), sem, where, "integrator")


def read_i(node: Any, shape: Shape, sem: Semantics, where: str) -> Read:
    return neuron_read(shape, integration(node, shape, sem, where) | {"rest": np.zeros(shape)}, sem, where,
                       "integrator")


def read_threshold(node: Any, shape: Shape, sem: Semantics, where: str) -> Read:
    zeros = np.zeros(shape)
    values = {"decay": zeros, "gain": np.ones(shape), "bias": zeros, "rest": zeros,
              "threshold": per_element(node, "threshold", shape, where), "v_reset": zeros}
    return neuron_read(shape, values, sem, where, "spiking")


def read_cuba(node: Any, shape: Shape, sem: Semantics, where: str) -> Read:
    a_s, k_s = leak(node, "tau_syn", shape, sem, where, node_time_step(node, "tau_mem", shape, sem, where))
    w_in = per_element(node, "w_in", shape, where)
    gain = {"euler": k_s * w_in, "jump": w_in, "decayed": a_s * w_in}[sem.current]
    current = {"decay": a_s, "gain": gain, "bias": np.zeros(shape), "rest": np.zeros(shape)}
    mem = membrane(node, shape, sem, where, tau_attr="tau_mem")
    spiking = type(node).__name__ == "CubaLIF"
    if spiking:
        mem |= firing(node, shape, sem, where)
    cur = neuron_read(shape, current, sem, where, "integrator", "current.")
    memb = neuron_read(shape, mem, sem, where, "spiking" if spiking else "integrator", "membrane.")
    return Read(shape, {"current": cur.attrs, "membrane": memb.attrs}, cur.tensors | memb.tensors)


# ---------------------------------------------------------------- synapses and shape-only nodes


def conv_out(side: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (side + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def read_conv(node: Any, shape: Shape, sem: Semantics, where: str) -> Read:
    w = arr(node, "weight")
    dims = w.ndim - 2
    if dims not in (1, 2) or len(shape) != dims + 1:
        raise NodeError(f"node {where!r}: a {dims}-d convolution with weight {list(w.shape)} cannot take "
                        f"input shape {list(shape)}")
    groups = int(np.asarray(node.groups))
    if shape[0] != w.shape[1] * groups:
        raise NodeError(f"node {where!r}: weight {list(w.shape)} with groups={groups} expects "
                        f"{w.shape[1] * groups} input channels, gets shape {list(shape)}")
    stride = ints(node.stride, dims, f"node {where!r} stride")
    dilation = ints(node.dilation, dims, f"node {where!r} dilation")
    pad_raw = node.padding.decode() if isinstance(node.padding, bytes) else node.padding
    if isinstance(pad_raw, str | np.str_):
        pad_str = str(pad_raw)
        padding: Any = pad_str
        sides = shape[1:] if pad_str == "same" else tuple(
            conv_out(s, k, st, 0, d) for s, k, st, d in zip(shape[1:], w.shape[2:], stride, dilation, strict=True))
    else:
        pad = ints(pad_raw, dims, f"node {where!r} padding")
        padding = list(pad)
        sides = tuple(conv_out(s, k, st, p, d)
                      for s, k, st, p, d in zip(shape[1:], w.shape[2:], stride, pad, dilation, strict=True))
    if min(sides) < 1:
        raise NodeError(f"node {where!r}: input shape {list(shape)} is smaller than the kernel {list(w.shape[2:])}")
    b = arr(node, "bias") if getattr(node, "bias", None) is not None else np.zeros(w.shape[0])
    b = np.broadcast_to(b, (w.shape[0],))
    attrs = {"in_channels": int(shape[0]), "out_channels": int(w.shape[0]), "kernel": list(w.shape[2:]),
             "stride": list(stride), "padding": padding, "dilation": list(dilation), "groups": groups}
    return Read((int(w.shape[0]), *sides), attrs, {"weight": tensor(w), "bias": tensor(b)})


def read_affine(node: Any, shape: Shape, sem: Semantics, where: str) -> Read:
    w = arr(node, "weight")
    if w.ndim != 2:
        raise NodeError(f"node {where!r}: weight of shape {list(w.shape)}; spikeforge imports 2-d weights")
    if not shape or shape[-1] != w.shape[1]:
        raise NodeError(f"node {where!r}: weight {list(w.shape)} expects {w.shape[1]} input features, gets "
                        f"shape {list(shape)}")
    tensors = {"weight": tensor(w)}
    has_bias = type(node).__name__ == "Affine"
    if has_bias:
        tensors["bias"] = tensor(np.broadcast_to(arr(node, "bias"), (w.shape[0],)))
    attrs = {"in_features": int(w.shape[1]), "out_features": int(w.shape[0]), "bias": has_bias}
    return Read((*shape[:-1], int(w.shape[0])), attrs, tensors)


def read_scale(node: Any, shape: Shape, sem: Semantics, where: str) -> Read:
    s = per_element(node, "scale", shape, where)
    value = uniform_value(s)
    return Read(shape, {"value": value}, {} if value is not None else {"scale": tensor(s)})


def read_pool(node: Any, shape: Shape, sem: Semantics, where: str) -> Read:
    if len(shape) != 3:
        raise NodeError(f"node {where!r}: 2-d pooling needs a [C, H, W] input, gets shape {list(shape)}")
    kernel = ints(node.kernel_size, 2, f"node {where!r} kernel_size")
    stride = ints(node.stride, 2, f"node {where!r} stride")
    padding = ints(node.padding, 2, f"node {where!r} padding")
    sides = tuple(conv_out(s, k, st, p, 1) for s, k, st, p in zip(shape[1:], kernel, stride, padding, strict=True))
    if min(sides) < 1:
        raise NodeError(f"node {where!r}: input shape {list(shape)} is smaller than the window {list(kernel)}")
    return Read((shape[0], *sides), {"kernel": list(kernel), "stride": list(stride), "padding": list(padding)})


def read_flatten(node: Any, shape: Shape, sem: Semantics, where: str) -> Read:
    n = len(shape)
    start, end = int(np.asarray(node.start_dim)), int(np.asarray(node.end_dim))
    s, e = (start + n if start < 0 else start), (end + n if end < 0 else end)
    if not 0 <= s <= e < n:
        raise NodeError(f"node {where!r}: Flatten(start_dim={start}, end_dim={end}) does not fit input shape "
                        f"{list(shape)}")
    out = (*shape[:s], int(np.prod(shape[s:e + 1])), *shape[e + 1:])
    return Read(out, {"start_dim": s, "end_dim": e, "all": s == 0 and e == n - 1})


DELAY_TOLERANCE = 1e-6  # delays must be whole time steps up to this relative error


def read_delay(node: Any, shape: Shape, sem: Semantics, where: str) -> Read:
    steps = per_element(node, "delay", shape, where) / sem.time_step(where)
    whole = np.round(steps)
    if np.any(whole < 0) or np.any(np.abs(steps - whole) > DELAY_TOLERANCE * np.maximum(1.0, whole)):
        raise NodeError(f"node {where!r}: delays must be non-negative whole multiples of dt = {sem.dt:g} "
                        f"(got {np.unique(steps)[:5].tolist()} steps)")
    value = uniform_value(whole)
    attrs = {"value": None if value is None else int(value), "max": int(whole.max()) if whole.size else 0}
    return Read(shape, attrs, {} if value is not None else {"steps": torch.tensor(whole, dtype=torch.long)})


def read_output(node: Any, shape: Shape, sem: Semantics, where: str) -> Read:
    declared = node.output_type.get("output") if isinstance(node.output_type, dict) else None
    if declared is not None and np.asarray(declared).size and tuple(int(x) for x in np.asarray(declared)) != shape:
        raise NodeError(f"output node {where!r} declares shape {np.asarray(declared).tolist()} but receives "
                        f"{list(shape)}")
    return Read(shape)


Reader = Callable[[Any, Shape, Semantics, str], Read]

READERS: dict[str, Reader] = {
    "Affine": read_affine, "Linear": read_affine, "Scale": read_scale,
    "Conv1d": read_conv, "Conv2d": read_conv,
    "AvgPool2d": read_pool, "SumPool2d": read_pool, "Flatten": read_flatten,
    "I": read_i, "LI": read_li, "IF": read_if, "LIF": read_lif, "CubaLI": read_cuba, "CubaLIF": read_cuba,
    "Threshold": read_threshold, "Delay": read_delay,
    "Input": lambda node, shape, sem, where: Read(shape),
    "Output": read_output,
}


def input_shape(node: Any, where: str) -> Shape:
    shape = node.input_type.get("input") if isinstance(node.input_type, dict) else None
    if shape is None:
        raise NodeError(f"input node {where!r} declares no shape")
    out = tuple(int(x) for x in np.atleast_1d(np.asarray(shape)))
    if not out or min(out) < 1:
        raise NodeError(f"input node {where!r} has an invalid shape {list(out)}")
    return out
