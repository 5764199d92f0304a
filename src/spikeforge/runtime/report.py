"""What the event runtime did, per synaptic layer: events, accumulations, dense MACs, time, method.

One :class:`LayerCount` per synaptic node, summed over every call (samples, steps, batches);
:class:`RuntimeReport` holds them with the non-synaptic nodes' events. Counting follows
:mod:`spikeforge.energy` (the verifier's SOPs): ``C_out`` accumulations per (input event, tap
reaching an output) whatever method computed the layer — a dense fallback is still *counted* as
the events it summed, so the counts never depend on the method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MS_PER_S = 1e3


@dataclass
class LayerCount:
    """Operations one synaptic node performed over a whole call (all samples and steps)."""

    name: str
    accumulations: int = 0  # event-driven adds of weight values (binary input)
    macs: int = 0  # dense multiply-accumulates (analog input)
    dense_macs: int = 0  # what a dense implementation of this layer would multiply-accumulate
    events: int = 0  # input spikes processed
    inputs: int = 0  # input elements (events + silent ones)
    seconds: float = 0.0  # wall time spent in this layer
    methods: dict[str, int] = field(default_factory=dict)  # calls per method (sparse / dense / int / analog)

    @property
    def rate(self) -> float:
        return self.events / self.inputs if self.inputs else 0.0

    @property
    def method(self) -> str:
        """The method(s) used, ``+``-joined when calls differed (e.g. by the density of each batch)."""
        return "+".join(sorted(self.methods)) or "none"

    def used(self, method: str) -> None:
        self.methods[method] = self.methods.get(method, 0) + 1

    def merge(self, other: LayerCount) -> None:
        self.accumulations += other.accumulations
        self.macs += other.macs
        self.dense_macs += other.dense_macs
        self.events += other.events
        self.inputs += other.inputs
        self.seconds += other.seconds
        for m, k in other.methods.items():
            self.methods[m] = self.methods.get(m, 0) + k

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LayerCount:
        """The inverse of :meth:`to_dict` (derived fields ignored)."""
        return cls(d["name"], d["accumulations"], d["macs"], d["dense_macs"], d["events"], d["inputs"],
                   d["seconds"], dict(d["methods"]))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "method": self.method, "events": self.events, "inputs": self.inputs,
                "rate": self.rate, "accumulations": self.accumulations, "macs": self.macs,
                "dense_macs": self.dense_macs, "seconds": self.seconds, "methods": dict(self.methods)}


@dataclass
class RuntimeReport:
    """Per-layer counts of one or more :meth:`EventRuntime.run` calls (merged with :meth:`merge`)."""

    samples: int
    time_steps: int
    layers: list[LayerCount] = field(default_factory=list)
    unit_events: dict[str, int] = field(default_factory=dict)  # per non-synaptic node (units, adds, pools)

    @property
    def synaptic_accumulations(self) -> int:
        return sum(c.accumulations for c in self.layers)

    @property
    def accumulations(self) -> int:
        """Every accumulation: synaptic layers plus the units' internal events."""
        return self.synaptic_accumulations + sum(self.unit_events.values())

    @property
    def macs(self) -> int:
        return sum(c.macs for c in self.layers)

    @property
    def dense_macs(self) -> int:
        return sum(c.dense_macs for c in self.layers)

    @property
    def seconds(self) -> float:
        """Wall time in the synaptic layers (the units' time is not included)."""
        return sum(c.seconds for c in self.layers)

    def layer(self, name: str) -> LayerCount:
        """The count of node ``name``, created (in call order) on first use."""
        for c in self.layers:
            if c.name == name:
                return c
        self.layers.append(LayerCount(name))
        return self.layers[-1]

    def add_unit_events(self, name: str, n: int) -> None:
        self.unit_events[name] = self.unit_events.get(name, 0) + n

    def merge(self, other: RuntimeReport, same_samples: bool = False) -> None:
        """Add ``other``'s counts: another batch (samples add up) or, ``same_samples``, more steps."""
        if same_samples:
            self.time_steps += other.time_steps
        else:
            self.samples += other.samples
        for c in other.layers:
            self.layer(c.name).merge(c)
        for name, n in other.unit_events.items():
            self.add_unit_events(name, n)

    def to_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "time_steps": self.time_steps, "accumulations": self.accumulations,
                "synaptic_accumulations": self.synaptic_accumulations, "macs": self.macs,
                "dense_macs": self.dense_macs, "seconds": self.seconds,
                "layers": [c.to_dict() for c in self.layers], "unit_events": dict(self.unit_events)}


def format_layers(report: RuntimeReport | list[LayerCount]) -> list[str]:
    """A markdown table: one row per synaptic layer."""
    layers = report.layers if isinstance(report, RuntimeReport) else report
    lines = ["| layer | method | input rate | events | accumulations | dense MACs | time (ms) |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for c in layers:
        ops = f"{c.accumulations:,}" if not c.macs else f"{c.macs:,} MACs"
        lines.append(f"| {c.name} | {c.method} | {c.rate:.4f} | {c.events:,} | {ops} | {c.dense_macs:,} | "
                     f"{c.seconds * MS_PER_S:.2f} |")
    return lines
