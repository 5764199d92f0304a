"""Thin ``nn.Module`` wrappers around the functional core.

``forward(x_seq)`` takes a whole ``[T, B, ...]`` sequence and starts from rest, so there is no
hidden state to reset between batches. For online use, ``init_state`` and ``step`` expose the
single-step dynamics with explicit state.

Every module that produces a layer's activations is a :class:`Site`; models address sites by
their stable module names (e.g. ``layer2.0.sn1``), which is how policies find them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .backends import resolve_backend
from .functional import NeuronParams, if_params, initial_state, lif_beta_params, lif_params, neuron_step
from .surrogate import Surrogate, make_surrogate


class Site(nn.Module):
    """Marker base for activation sites (spiking neurons, and the hybrid's ReLU units)."""

    spiking: bool = True


class SpikingNeuron(Site):
    """Base spiking neuron; subclasses provide :meth:`params`."""

    def __init__(self, backend: str = "auto") -> None:
        super().__init__()
        self.backend = backend

    def params(self) -> NeuronParams:
        raise NotImplementedError

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        fn = resolve_backend(self.backend, x_seq.device)
        spikes, _ = fn(x_seq, self.params(), None)
        return spikes

    def init_state(self, x: torch.Tensor) -> torch.Tensor:
        return initial_state(x, self.params())

    def step(self, x: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return neuron_step(x, v, self.params())


class IFNode(SpikingNeuron):
    """Integrate-and-fire."""

    def __init__(self, threshold: float = 1.0, v_reset: float | None = None, detach_reset: bool = False,
                 surrogate: Surrogate | None = None, backend: str = "auto") -> None:
        super().__init__(backend)
        self._p = if_params(threshold, v_reset, detach_reset, surrogate)

    def params(self) -> NeuronParams:
        return self._p

    def extra_repr(self) -> str:
        return f"threshold={self._p.threshold}, v_reset={self._p.v_reset}"


class LIFNode(SpikingNeuron):
    """Leaky integrate-and-fire, either with time constant ``tau`` or decay factor ``beta``."""

    def __init__(self, tau: float = 2.0, decay_input: bool = True, beta: float | None = None,
                 threshold: float = 1.0, v_reset: float | None = None, detach_reset: bool = False,
                 surrogate: Surrogate | None = None, backend: str = "auto") -> None:
        super().__init__(backend)
        if beta is not None:
            self._p = lif_beta_params(beta, threshold, v_reset, detach_reset, surrogate)
        else:
            self._p = lif_params(tau, decay_input, threshold, v_reset, detach_reset, surrogate)

    def params(self) -> NeuronParams:
        return self._p

    def extra_repr(self) -> str:
        p = self._p
        return f"decay={p.decay:.4g}, input_gain={p.input_gain:.4g}, threshold={p.threshold}, v_reset={p.v_reset}"


class PLIFNode(SpikingNeuron):
    """Parametric LIF: τ = 1 + exp(−w) is learned (w initialised so τ = ``init_tau``)."""

    def __init__(self, init_tau: float = 2.0, decay_input: bool = True, threshold: float = 1.0,
                 v_reset: float | None = None, detach_reset: bool = False,
                 surrogate: Surrogate | None = None, backend: str = "auto") -> None:
        super().__init__(backend)
        if init_tau <= 1.0:
            raise ValueError(f"PLIF init_tau must be > 1, got {init_tau}")
        self.w = nn.Parameter(torch.tensor(-math.log(init_tau - 1.0)))
        self.decay_input = decay_input
        self.threshold = threshold
        self.v_reset = v_reset
        self.detach_reset = detach_reset
        self.surrogate = surrogate

    @property
    def tau(self) -> torch.Tensor:
        return 1.0 + torch.exp(-self.w)

    def params(self) -> NeuronParams:
        return lif_params(self.tau, self.decay_input, self.threshold, self.v_reset, self.detach_reset,
                          self.surrogate)


@dataclass
class NeuronConfig:
    """Recipe-level description of the neuron used at every site of a model."""

    kind: str = "lif"  # "if" | "lif" | "plif"
    tau: float = 2.0
    beta: float = 0.0  # > 0 selects the decay-factor form v = β v + x (LIF only)
    decay_input: bool = True
    threshold: float = 1.0
    reset: str = "hard"  # "hard" | "soft"
    v_reset: float = 0.0
    detach_reset: bool = False
    surrogate: str = "atan"
    surrogate_params: dict[str, float] = field(default_factory=dict)
    backend: str = "auto"

    def build(self) -> SpikingNeuron:
        if self.reset not in ("hard", "soft"):
            raise ValueError(f"neuron.reset must be 'hard' or 'soft', got {self.reset!r}")
        v_reset = self.v_reset if self.reset == "hard" else None
        sg = make_surrogate(self.surrogate, **self.surrogate_params)
        common: dict[str, Any] = dict(threshold=self.threshold, v_reset=v_reset, detach_reset=self.detach_reset,
                      surrogate=sg, backend=self.backend)
        if self.kind == "if":
            return IFNode(**common)
        if self.kind == "lif":
            return LIFNode(tau=self.tau, decay_input=self.decay_input,
                           beta=self.beta if self.beta > 0 else None, **common)
        if self.kind == "plif":
            return PLIFNode(init_tau=self.tau, decay_input=self.decay_input, **common)
        raise ValueError(f"neuron.kind must be 'if', 'lif' or 'plif', got {self.kind!r}")
