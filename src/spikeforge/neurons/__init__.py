"""Spiking neurons: functional core, surrogate gradients, backends and modules."""

from .backends import BACKENDS, available_backends, resolve_backend
from .compiled import compile_report
from .functional import (
    NeuronParams,
    fire_and_reset,
    if_params,
    if_step,
    lif_beta_params,
    lif_params,
    lif_step,
    neuron_sequence,
    neuron_step,
    state_dtype,
)
from .modules import IFNode, LIFNode, NeuronConfig, PLIFNode, Site, SpikingNeuron
from .surrogate import SURROGATES, Atan, Rectangle, Sigmoid, Surrogate, Triangle, make_surrogate

__all__ = [
    "BACKENDS", "available_backends", "resolve_backend", "NeuronParams", "fire_and_reset", "if_params",
    "if_step", "lif_beta_params", "lif_params", "lif_step", "neuron_sequence", "neuron_step", "IFNode",
    "LIFNode", "NeuronConfig", "PLIFNode", "Site", "SpikingNeuron", "SURROGATES", "Atan", "Rectangle",
    "Sigmoid", "Surrogate", "Triangle", "make_surrogate", "compile_report", "state_dtype",
]
