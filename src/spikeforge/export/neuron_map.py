"""Map spikeforge's discrete neurons onto NIR's continuous-time LIF / IF nodes.

spikeforge (:mod:`spikeforge.neurons.functional`) steps every neuron as

    h[t] = a · v[t−1] + b · x[t] + c,      s[t] = 1[h[t] ≥ θ],      v[t] = v_reset if s[t] else h[t]

(hard reset; ``a = decay``, ``b = input_gain``, ``c = bias``). NIR defines ODEs (Pedersen et al.,
Nature Communications 2024, https://github.com/neuromorphs/nir)

    LIF:  τ · dv/dt = (v_leak − v) + R · I        IF:  dv/dt = R · I
    z = 1[v > v_threshold],  then v ← v_reset where z = 1

which consumers discretise with forward Euler at a time step ``dt``:

    LIF:  v[t] = (1 − dt/τ) · v[t−1] + (dt/τ) · v_leak + (dt/τ) · R · I[t]
    IF:   v[t] = v[t−1] + dt · R · I[t]

Matching the coefficients term by term gives the export:

    LIF (a ≠ 1):  τ = dt / (1 − a),   R = b · τ / dt,   v_leak = c · τ / dt   (needs a < 1)
    IF  (a = 1):  R = b / dt                                               (needs c = 0)

and ``v_threshold = θ``, ``v_reset = v_reset``. spikeforge fires at ``h ≥ θ``, NIR at ``v > θ``: the
graph writer (:mod:`.nir_graph`) stores ``nextafter(θ, −∞)``, the same comparison for floats of the
exported precision. A soft reset (``v ← h − θ``, ``v_reset = None``) has no NIR equivalent: such
neurons are refused (``docs/export.md``).

A sequence starts from ``v_reset`` in spikeforge (recorded as ``v_init`` in the node metadata);
NIR leaves the initial state to the consumer (0 or ``v_leak`` in practice, both equal to
``v_reset`` for LIF/IF neurons built with the default ``v_reset = 0``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..neurons import NeuronParams

DEFAULT_DT = 1.0
IF_DECAY = 1.0  # a = 1: no leak, the neuron is an integrate-and-fire
NO_BIAS = 0.0


@dataclass(frozen=True)
class NirNeuron:
    """One site's NIR neuron: ``kind`` is ``"LIF"`` or ``"IF"``; ``tau``/``v_leak`` unused for IF."""

    kind: str
    r: float
    v_threshold: float
    v_reset: float
    tau: float = 0.0
    v_leak: float = 0.0
    v_init: float = 0.0


def coefficients(p: NeuronParams) -> tuple[float, float, float]:
    """``(a, b, c)`` as plain floats (PLIF's learnable τ is read at its current value)."""
    return float(p.decay), float(p.input_gain), float(p.bias)


def nir_neuron(site: str, p: NeuronParams, dt: float = DEFAULT_DT) -> NirNeuron:
    """The NIR LIF/IF parameters reproducing ``p`` under forward Euler with step ``dt``.

    Raises ``ValueError`` naming ``site`` for a soft reset, a growing membrane (``a > 1``) or an
    IF neuron with a constant drive ``c ≠ 0``.
    """
    if not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a finite number > 0, got {dt}")
    if p.v_reset is None:
        raise ValueError(f"neuron site {site!r} uses a soft reset (v ← v − θ), which NIR cannot express "
                         "(NIR neurons reset to v_reset); train with a hard reset "
                         "(recipe: [model.neuron] reset = \"hard\") to export it")
    a, b, c = coefficients(p)
    common = dict(v_threshold=float(p.threshold), v_reset=float(p.v_reset), v_init=float(p.v_init))
    if a == IF_DECAY:
        if c != NO_BIAS:
            raise ValueError(f"neuron site {site!r} is an integrate-and-fire with a constant drive c = {c:g}; "
                             "NIR's IF (dv/dt = R·I) has no such term")
        return NirNeuron("IF", r=b / dt, **common)
    if a > IF_DECAY:
        raise ValueError(f"neuron site {site!r} has decay a = {a:g} > 1 (a growing membrane); "
                         "no LIF time constant τ = dt/(1 − a) > 0 reproduces it")
    tau = dt / (1.0 - a)
    return NirNeuron("LIF", r=b * tau / dt, tau=tau, v_leak=c * tau / dt, **common)
