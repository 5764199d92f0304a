"""Event-driven runtime for converted (all-spiking) models: see :mod:`spikeforge.runtime.events`."""

from .events import EventRuntime, RuntimeConfig, integer_weights, run_events
from .kernels import conv_geometry, event_conv, event_linear
from .report import LayerCount, RuntimeReport, format_layers
from .stream import StreamingRuntime, neuron_step

__all__ = ["EventRuntime", "LayerCount", "RuntimeConfig", "RuntimeReport", "StreamingRuntime", "conv_geometry",
           "event_conv", "event_linear", "format_layers", "integer_weights", "neuron_step", "run_events"]
