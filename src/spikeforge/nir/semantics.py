"""How an imported NIR graph is discretised: the time step and the choices NIR leaves open.

NIR nodes are continuous-time equations (``τ·dv/dt = (v_leak − v) + R·I``, spike when
``v > v_threshold``, then ``v ← v_reset``). Every simulator discretises them, and the libraries that
write NIR do it differently — the graph does not record how (NIR's documentation: "backends are free
to implement [the primitives] as they want"). :class:`Semantics` names each choice, and
:data:`PROFILES` holds the choices of the libraries whose NIR writers we read (sources in
``docs/export.md`` section "Import"):

- ``dt``: the time step; NIR files store none (spikeforge's own graphs record it in their metadata).
- ``decay``: ``"euler"`` — forward Euler, ``a = 1 − dt/τ``, input gain ``dt·R/τ``, constant
  ``dt·v_leak/τ`` (NIR's reference reading; snnTorch, Norse's box cells); ``"exp"`` — the exact
  decay ``a = exp(−dt/τ)`` with input gain ``R`` and constant ``(1 − a)·v_leak`` (Sinabs).
- ``integrate``: integrators (``I``, ``IF``) add ``dt·R·I`` (``"euler"``, the spec's forward
  Euler) or ``R·I`` (``"sum"``: Norse's ``IAFCell``, Sinabs' ``IAF``).
- ``current``: the synaptic current of ``CubaLI``/``CubaLIF`` takes ``dt·w_in/τ_syn · x``
  (``"euler"``), jumps by ``w_in · x`` (``"jump"``: Norse's ``LIFCell``) or jumps and then decays,
  ``I ← a_s·(I + w_in·x)`` (``"decayed"``: Rockpool's ``LIFTorch``); the membrane always reads the
  current of the same step (the spec's composition "LI; Linear; LIF").
- ``fire``: spike at ``v > θ`` (``"gt"``, NIR and most libraries) or ``v ≥ θ`` (``"ge"``, spikeforge,
  Sinabs). spikeforge's neurons compare ``h ≥ θ'``; ``"gt"`` uses ``θ'`` = the next representable
  number above ``θ`` in the computing dtype, which is exactly ``h > θ``.
- ``reset``: ``"value"`` — ``v ← v_reset`` (NIR); ``"subtract"`` — ``v ← v − θ`` (Sinabs' IAF/LIF).
- ``spikes``: ``"single"`` (one spike per step) or ``"multi"`` (``⌊v/θ⌋`` spikes per step for
  ``v > 0``, each subtracting θ: Sinabs' default ``MultiSpike``); ``max_spikes`` caps that count
  (Rockpool's ``max_spikes_per_dt``, default ``2**16``; None: no cap).
- ``resistance``: ``"value"`` — ``R`` is the resistance of the NIR equations; ``"dt"`` — ``R`` is how
  Rockpool records its time step, ``R = τ·e^{−dt/τ}/dt`` (``rockpool/nn/modules/torch/nir.py``):
  each neuron node's dt is solved from its ``R`` and ``τ`` (a given ``dt`` must agree with it), and
  inputs enter as Rockpool's modules add them — a ``LIF``/``CubaLIF`` membrane unscaled
  (``v ← a·v + x``), an ``LI`` (Rockpool's exponential synapse) before its decay (``v ← a·(v + x)``).
- ``tau_scale``: stored time constants are multiplied by this before use. Norse 1.1.0 writes
  ``τ = dt/τ_inv = dt·τ`` (``norse/torch/utils/export_nir.py``), so its profile reads ``τ/dt``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

DECAYS = ("euler", "exp")
INTEGRATES = ("euler", "sum")
CURRENTS = ("euler", "jump", "decayed")
FIRES = ("gt", "ge")
RESETS = ("value", "subtract")
SPIKES = ("single", "multi")
RESISTANCES = ("value", "dt")
GENERIC = "nir"
NORSE_DT = 1e-3  # Norse's default time step (norse.torch.to_nir(..., dt=0.001))
ROCKPOOL_MAX_SPIKES = 2.0**16  # Rockpool's default max_spikes_per_dt (LIFTorch, LIFNeuronTorch); not written to NIR


@dataclass(frozen=True)
class Semantics:
    """The discretisation of one imported graph (see the module docstring for each field)."""

    dt: float | None = None
    decay: str = "euler"
    integrate: str = "euler"
    current: str = "euler"
    fire: str = "gt"
    reset: str = "value"
    spikes: str = "single"
    tau_scale: float = 1.0
    resistance: str = "value"
    max_spikes: float | None = None
    profile: str = GENERIC

    def __post_init__(self) -> None:
        for name, allowed in (("decay", DECAYS), ("integrate", INTEGRATES), ("current", CURRENTS),
                              ("fire", FIRES), ("reset", RESETS), ("spikes", SPIKES),
                              ("resistance", RESISTANCES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"NIR import: {name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.dt is not None and not (math.isfinite(self.dt) and self.dt > 0):
            raise ValueError(f"NIR import: dt must be a finite number > 0, got {self.dt}")
        if not (math.isfinite(self.tau_scale) and self.tau_scale > 0):
            raise ValueError(f"NIR import: tau_scale must be a finite number > 0, got {self.tau_scale}")
        if self.max_spikes is not None and not (math.isfinite(self.max_spikes) and self.max_spikes >= 1):
            raise ValueError(f"NIR import: max_spikes must be a finite number >= 1 or None, got {self.max_spikes}")
        if self.spikes == "multi" and self.reset != "subtract":
            raise ValueError("NIR import: spikes = 'multi' needs reset = 'subtract' (each spike subtracts θ)")

    def time_step(self, where: str) -> float:
        """``dt``, or a ``ValueError`` saying how to give it (``where`` names the node that needs it)."""
        if self.dt is None:
            raise ValueError(f"node {where!r} depends on the time step, which this NIR graph does not record; "
                             f"pass dt (--dt) or a producer profile (--profile {'|'.join(PROFILES)})")
        return self.dt

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Semantics:
        names = {f.name for f in dataclasses.fields(Semantics)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"NIR semantics: unknown fields {unknown}; expected {sorted(names)}")
        return Semantics(**d)


# Producer profiles: what each library's NIR writer means (docs/export.md, "Import", has the sources).
PROFILES: dict[str, Semantics] = {
    GENERIC: Semantics(),
    "spikeforge": Semantics(fire="ge", profile="spikeforge"),
    "snntorch": Semantics(dt=1e-4, profile="snntorch"),
    "norse": Semantics(dt=NORSE_DT, integrate="sum", current="jump", tau_scale=1 / NORSE_DT, profile="norse"),
    "sinabs": Semantics(dt=1.0, decay="exp", integrate="sum", fire="ge", reset="subtract", spikes="multi",
                        profile="sinabs"),
    "rockpool": Semantics(decay="exp", current="decayed", fire="ge", reset="subtract", spikes="multi",
                          resistance="dt", max_spikes=ROCKPOOL_MAX_SPIKES, profile="rockpool"),
}

SPIKEFORGE_PRODUCER = "spikeforge"


def resolve(metadata: dict[str, Any] | None, profile: str | None = None, **overrides: Any) -> Semantics:
    """The semantics for a graph: ``profile`` (default: ``spikeforge`` for graphs spikeforge wrote, with
    their recorded ``dt``; otherwise the generic NIR reading), then ``overrides`` that are not None."""
    meta = metadata or {}
    if profile is None:
        profile = SPIKEFORGE_PRODUCER if str(meta.get("producer", "")) == SPIKEFORGE_PRODUCER else GENERIC
    if profile not in PROFILES:
        raise ValueError(f"unknown NIR producer profile {profile!r}; expected one of {sorted(PROFILES)}")
    base = PROFILES[profile]
    if profile == SPIKEFORGE_PRODUCER and base.dt is None and "dt" in meta:
        base = dataclasses.replace(base, dt=float(meta["dt"]))
    given = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(base, **given) if given else base
