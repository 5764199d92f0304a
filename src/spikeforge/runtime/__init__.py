"""Event-driven runtime for converted (all-spiking) models: see :mod:`spikeforge.runtime.events`."""

from .events import EventRuntime, LayerCount, RuntimeReport, event_conv, event_linear, run_events

__all__ = ["EventRuntime", "LayerCount", "RuntimeReport", "event_conv", "event_linear", "run_events"]
