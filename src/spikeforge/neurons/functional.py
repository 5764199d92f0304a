"""Pure functional core of the spiking neurons.

Every neuron here is one linear charge equation, a threshold and a reset:

    charge:  h_t = a · v_{t−1} + b · x_t + c
    fire:    s_t = Θ(h_t − θ)                       (surrogate gradient in backward)
    reset:   soft  v_t = h_t − θ · s̃_t
             hard  v_t = h_t · (1 − s̃_t) + v_reset · s̃_t
             with s̃_t = s_t, or s̃_t = detach(s_t) when ``detach_reset``.

The models map onto (a, b, c) as follows, with v_r = v_reset for hard reset and 0 for soft:

    IF                          a = 1,        b = 1,    c = 0
    LIF(τ, decay_input=True)    a = 1 − 1/τ,  b = 1/τ,  c = v_r/τ     (dv/dt = (−(v − v_r) + x)/τ)
    LIF(τ, decay_input=False)   a = 1 − 1/τ,  b = 1,    c = v_r/τ     (dv/dt = −(v − v_r)/τ + x)
    LIF(β)                      a = β,        b = 1,    c = (1 − β)·v_r

LIF(β) with hard reset to 0 is SD-SNN's ``v = β · v · (1 − s) + x`` (β = 0.2, θ = 0.5 there).
PLIF is LIF(τ) with a learnable τ, so ``a`` and ``b`` may be 0-d tensors that carry gradients.

Functions take and return explicit state: ``neuron_step(x, v, p) -> (s, v)``;
``neuron_sequence(x_seq, p, v0) -> (s_seq, v_T)`` runs a whole ``[T, ...]`` sequence.

Precision: the membrane (``h``, ``v``), the threshold test and the surrogate derivative are
computed in :func:`state_dtype` of the input — float32 for 16-bit inputs (bf16/fp16 under
autocast), the input dtype otherwise — so a spike never depends on a membrane rounded to 8
mantissa bits. Spikes are returned in the input dtype, which holds 0 and 1 exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .surrogate import Atan, Surrogate

Scalar = float | torch.Tensor
LOW_PRECISION = (torch.bfloat16, torch.float16)  # inputs whose membrane is kept in float32


def state_dtype(dtype: torch.dtype) -> torch.dtype:
    """dtype of the membrane for inputs of ``dtype``: float32 for 16-bit floats, else ``dtype``."""
    return torch.float32 if dtype in LOW_PRECISION else dtype


@dataclass(frozen=True)
class NeuronParams:
    """Coefficients of the charge equation plus threshold and reset behaviour."""

    decay: Scalar = 1.0  # a
    input_gain: Scalar = 1.0  # b
    bias: Scalar = 0.0  # c
    threshold: float = 1.0  # θ
    v_reset: float | None = None  # None: soft reset (subtract θ); a float: hard reset to it
    detach_reset: bool = False
    surrogate: Surrogate = field(default_factory=Atan)

    @property
    def v_init(self) -> float:
        """Resting potential a sequence starts from."""
        return 0.0 if self.v_reset is None else self.v_reset


def if_params(threshold: float = 1.0, v_reset: float | None = None, detach_reset: bool = False,
              surrogate: Surrogate | None = None) -> NeuronParams:
    """Integrate-and-fire: ``h = v + x``."""
    return NeuronParams(1.0, 1.0, 0.0, threshold, v_reset, detach_reset, surrogate or Atan())


def lif_params(tau: Scalar = 2.0, decay_input: bool = True, threshold: float = 1.0,
               v_reset: float | None = None, detach_reset: bool = False,
               surrogate: Surrogate | None = None) -> NeuronParams:
    """Leaky integrate-and-fire with time constant τ (τ may be a learnable tensor: PLIF)."""
    v_r = 0.0 if v_reset is None else v_reset
    inv = 1.0 / tau
    return NeuronParams(1.0 - inv, inv if decay_input else 1.0, v_r * inv, threshold, v_reset,
                        detach_reset, surrogate or Atan())


def lif_beta_params(beta: float = 0.2, threshold: float = 0.5, v_reset: float | None = 0.0,
                    detach_reset: bool = False, surrogate: Surrogate | None = None) -> NeuronParams:
    """Leaky integrate-and-fire with decay factor β: ``h = β v + x`` (SD-SNN's form by default)."""
    v_r = 0.0 if v_reset is None else v_reset
    return NeuronParams(beta, 1.0, (1.0 - beta) * v_r, threshold, v_reset, detach_reset,
                        surrogate or Atan())


def charge(x: torch.Tensor, v: torch.Tensor, p: NeuronParams) -> torch.Tensor:
    """``h = a · v + b · x + c``."""
    h = p.decay * v + p.input_gain * x
    if isinstance(p.bias, torch.Tensor) or p.bias != 0.0:
        h = h + p.bias
    return h


def fire_and_reset(h: torch.Tensor, p: NeuronParams) -> tuple[torch.Tensor, torch.Tensor]:
    """Spike where ``h ≥ θ`` and reset; returns ``(s, v)``."""
    s = p.surrogate(h - p.threshold)
    s_r = s.detach() if p.detach_reset else s
    if p.v_reset is None:
        v = h - p.threshold * s_r
    else:
        v = h * (1.0 - s_r) + p.v_reset * s_r
    return s, v


def neuron_step(x: torch.Tensor, v: torch.Tensor, p: NeuronParams) -> tuple[torch.Tensor, torch.Tensor]:
    """One time step: ``(x_t, v_{t−1}) -> (s_t, v_t)``; the membrane in ``state_dtype(x.dtype)``."""
    s, v = fire_and_reset(charge(x.to(state_dtype(x.dtype)), v, p), p)
    return s.to(x.dtype), v


def initial_state(x: torch.Tensor, p: NeuronParams) -> torch.Tensor:
    """Membrane at rest, shaped like one time step of ``x`` (in ``state_dtype(x.dtype)``)."""
    return torch.full_like(x, p.v_init, dtype=state_dtype(x.dtype))


def neuron_sequence(x_seq: torch.Tensor, p: NeuronParams,
                    v0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference multi-step loop over ``x_seq [T, ...]``; returns ``(spikes [T, ...], v_T)``."""
    v = initial_state(x_seq[0], p) if v0 is None else v0
    spikes = []
    for x in x_seq:
        s, v = neuron_step(x, v, p)
        spikes.append(s)
    return torch.stack(spikes), v


# Names used in the papers' code, all the same equation with different coefficients.
if_step = neuron_step
lif_step = neuron_step
