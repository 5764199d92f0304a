"""Neurons of imported NIR graphs, stepped with spikeforge's functional core.

Every NIR neuron becomes the charge equation of :mod:`spikeforge.neurons.functional`

    h[t] = a · v[t−1] + b · x[t] + c

with ``(a, b, c)`` from the node's parameters and the graph's :class:`~.semantics.Semantics`, then

- :class:`NirNeuron` (``IF``, ``LIF``, ``Threshold``): fire ``s = 1[h ≥ θ']`` (``θ' = θ`` for
  ``fire = "ge"``; the next number above θ in the computing dtype for ``"gt"``, i.e. ``h > θ``),
  reset to ``v_reset`` or subtract θ; ``spikes = "multi"`` emits ``⌊h/θ⌋`` spikes for ``h > 0``
  (at most ``max_spikes``) and subtracts that many θ. It is a spikeforge
  :class:`~spikeforge.neurons.SpikingNeuron` site: named after its node, with surrogate gradients,
  firing-rate metrics and, when its parameters are uniform, the neuron backends (``fused``) and NIR
  export via :meth:`NirNeuron.params`;
- :class:`Integrator` (``I``, ``LI``): no threshold, the output is the membrane ``v[t] = h[t]``;
- :class:`CubaNeuron` (``CubaLI``, ``CubaLIF``): a synaptic current ``I[t] = a_s·I[t−1] + b_s·x[t]``
  feeding an integrator or a spiking neuron at the same step.

Parameters equal across all neurons are Python floats (the fast path, and what the exporter and
compaction understand); others are buffers shaped like the layer (``<site>.threshold`` …).
Stateful modules take an optional :class:`Carry`: ``None`` starts from rest (every model call does);
a graph that steps through time one step per call passes the same carry each step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..neurons import NeuronParams, SpikingNeuron, resolve_backend
from ..neurons.functional import charge
from ..neurons.surrogate import Atan, Surrogate

Value = float | torch.Tensor
NEURON_COEFS = ("decay", "gain", "bias", "threshold", "v_reset", "rest")
INTEGRATOR_COEFS = ("decay", "gain", "bias", "rest")


@dataclass
class Carry:
    """State carried from one call to the next (``value is None``: at rest)."""

    value: Any = None


class Coefficients(nn.Module):
    """Named coefficients: a float each, or (``None``) a buffer shaped ``shape`` filled by the state dict."""

    def __init__(self, shape: tuple[int, ...], values: dict[str, float | None], names: tuple[str, ...]) -> None:
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        self.scalars: dict[str, float] = {}
        for name in names:
            v = values[name]
            if v is None:
                self.register_buffer(name, torch.zeros(self.shape))
            else:
                self.scalars[name] = float(v)

    def get(self, name: str) -> Value:
        return self.scalars[name] if name in self.scalars else getattr(self, name)

    def per_neuron(self) -> list[str]:
        return [n for n, _ in self.named_buffers()]

    def extra_repr(self) -> str:
        parts = [f"{k}={v:.6g}" for k, v in self.scalars.items()] + [f"{k}=per-neuron" for k in self.per_neuron()]
        return ", ".join(parts)


def above(theta: Value, like: torch.Tensor) -> Value:
    """The smallest number of ``like``'s dtype greater than ``theta`` (so ``h ≥ above(θ)`` ⇔ ``h > θ``)."""
    t = torch.as_tensor(theta, dtype=like.dtype, device=like.device)
    nxt = torch.nextafter(t, torch.tensor(math.inf, dtype=like.dtype, device=like.device))
    return float(nxt) if not isinstance(theta, torch.Tensor) else nxt


class _MultiSpike(torch.autograd.Function):
    """``⌊h/θ⌋`` spikes where ``h > 0`` (Sinabs' ``MultiSpike``), at most ``cap`` (Rockpool's
    ``max_spikes_per_dt``; None: no cap); surrogate ``σ'(h − θ)`` backward."""

    @staticmethod
    def forward(ctx: Any, h: torch.Tensor, theta: Value, surrogate: Surrogate, cap: float | None) -> torch.Tensor:
        ctx.save_for_backward(h)
        ctx.theta, ctx.surrogate = theta, surrogate
        count = (h > 0).to(h.dtype) * torch.div(h, theta, rounding_mode="floor")
        return count if cap is None else count.clamp(max=cap)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        (h,) = ctx.saved_tensors
        return g * ctx.surrogate.derivative(h - ctx.theta), None, None, None


def carried(run: Callable[[torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor]],
            x_seq: torch.Tensor, carry: Carry | None) -> torch.Tensor:
    """``run(x_seq, v0)`` from the carried state (rest when there is none), its last state carried on."""
    out, v = run(x_seq, None if carry is None else carry.value)
    if carry is not None:
        carry.value = v
    return out


class NirNeuron(SpikingNeuron):
    """A spiking NIR neuron (IF / LIF / Threshold) on the functional core (see the module docstring)."""

    def __init__(self, shape: tuple[int, ...], values: dict[str, float | None], fire: str = "gt", reset: str = "value",
                 spikes: str = "single", surrogate: Surrogate | None = None, backend: str = "auto",
                 max_spikes: float | None = None) -> None:
        super().__init__(backend)
        self.coefs = Coefficients(shape, values, NEURON_COEFS)
        self.fire, self.reset, self.spikes, self.max_spikes = fire, reset, spikes, max_spikes
        self.surrogate = surrogate or Atan()

    def coef(self, name: str) -> Value:
        return self.coefs.get(name)

    def firing_threshold(self, like: torch.Tensor) -> Value:
        theta = self.coef("threshold")
        return theta if self.fire == "ge" else above(theta, like)

    def fast_path(self) -> bool:
        """Uniform coefficients, one spike per step, a reset the core expresses exactly."""
        subtract_exact = self.reset == "value" or self.fire == "ge"
        return not self.coefs.per_neuron() and self.spikes == "single" and subtract_exact

    def params(self, dtype: torch.dtype = torch.float32) -> NeuronParams:
        """The core's :class:`NeuronParams` (uniform single-spike neurons only; threshold as compared)."""
        per = self.coefs.per_neuron()
        if per or self.spikes != "single":
            what = f"per-neuron {per}" if per else "multiple spikes per step"
            raise ValueError(f"this imported neuron has {what}; spikeforge's NeuronParams hold one value each "
                             "and one spike per step")
        c = self.coefs.scalars
        theta = self.firing_threshold(torch.empty((), dtype=dtype))
        v_reset = c["v_reset"] if self.reset == "value" else None
        return NeuronParams(c["decay"], c["gain"], c["bias"], float(theta), v_reset, False, self.surrogate)

    def rest(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x) + self.coef("rest")

    def init_state(self, x: torch.Tensor) -> torch.Tensor:
        return self.rest(x)

    def step(self, x: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.fire_and_reset(self.charge(x, v))

    def charge(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return charge(x, v, NeuronParams(self.coef("decay"), self.coef("gain"), self.coef("bias")))

    def fire_and_reset(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        theta = self.coef("threshold")
        if self.spikes == "multi":
            s = _MultiSpike.apply(h, theta, self.surrogate, self.max_spikes)
        else:
            s = self.surrogate(h - self.firing_threshold(h))
        if self.reset == "subtract":
            return s, h - theta * s
        return s, h * (1.0 - s) + self.coef("v_reset") * s

    def run(self, x_seq: torch.Tensor, v0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(spikes [T, ...], v_T)`` from ``v0`` (rest when None)."""
        v = self.rest(x_seq[0]) if v0 is None else v0
        if self.fast_path():
            return resolve_backend(self.backend, x_seq.device)(x_seq, self.params(x_seq.dtype), v)
        spikes = []
        for x in x_seq:
            s, v = self.step(x, v)
            spikes.append(s)
        return torch.stack(spikes), v

    def forward(self, x_seq: torch.Tensor, carry: Carry | None = None) -> torch.Tensor:
        return carried(self.run, x_seq, carry)

    def extra_repr(self) -> str:
        cap = "" if self.max_spikes is None else f", max_spikes={self.max_spikes:g}"
        return f"fire={self.fire}, reset={self.reset}, spikes={self.spikes}{cap}"


class Integrator(nn.Module):
    """``I`` / ``LI``: the membrane ``v[t] = a·v[t−1] + b·x[t] + c`` is the output (no threshold)."""

    def __init__(self, shape: tuple[int, ...], values: dict[str, float | None]) -> None:
        super().__init__()
        self.coefs = Coefficients(shape, values, INTEGRATOR_COEFS)

    def run(self, x_seq: torch.Tensor, v0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        p = NeuronParams(self.coefs.get("decay"), self.coefs.get("gain"), self.coefs.get("bias"))
        v = torch.zeros_like(x_seq[0]) + self.coefs.get("rest") if v0 is None else v0
        out = []
        for x in x_seq:
            v = charge(x, v, p)
            out.append(v)
        return torch.stack(out), v

    def forward(self, x_seq: torch.Tensor, carry: Carry | None = None) -> torch.Tensor:
        return carried(self.run, x_seq, carry)


class CubaNeuron(nn.Module):
    """``CubaLI`` / ``CubaLIF``: a synaptic current ``I`` (an :class:`Integrator`, child ``current``) into a
    membrane (child ``membrane``) that reads ``I[t]`` of the same step: an :class:`Integrator` for
    ``CubaLI`` (output v) or a :class:`NirNeuron` for ``CubaLIF`` (output spikes; the site is
    ``<node>.membrane``). Not a plain IF/LIF neuron, so the NIR exporter refuses it by name."""

    def __init__(self, current: Integrator, membrane: NirNeuron | Integrator) -> None:
        super().__init__()
        self.current = current
        self.membrane = membrane

    def forward(self, x_seq: torch.Tensor, carry: Carry | None = None) -> torch.Tensor:
        i0, v_carry = (None, Carry()) if carry is None or carry.value is None else carry.value
        i_seq, i_t = self.current.run(x_seq, i0)
        out = self.membrane(i_seq, v_carry)
        if carry is not None:
            carry.value = (i_t, v_carry)
        return out
