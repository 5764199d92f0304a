"""Verification that a converted model equals its hybrid, reads only binary inputs, and what it costs.

Both models run in float64 on identical encoded inputs (a stochastic encoding's spike draws are
made once and fed to both). Checks and measurements, over every batch:

- ``max_abs_logit_diff = max |y_hybrid − y_converted|`` over all ``[T, B, classes]`` outputs
  (required ≤ :data:`LOGIT_TOLERANCE`) and ``argmax_agreement``: the share of samples whose
  time-averaged logits have the same argmax (required 1.0);
- ``site_mismatches``: per hybrid site, the number of output elements (spikes, or SpikingReLU
  levels ``q``, read back from the site's threshold units as ``Σ c_k z_k``) that differ from the
  converted graph's — 0 unless a float64 reassociation moved a membrane across a threshold (or
  a level across a rounding boundary);
- ``certificate`` (:mod:`.certificate`): the margin of every decision against a rigorous bound on
  the hybrid − converted difference; ``certified`` means equal on this data by proof, not by luck;
- ``binary_inputs``: every synaptic layer's input holds only 0 and 1 — false with an analog first
  layer (``analog_input_layers`` names the layers reading the analog model input);
  ``first_non_binary`` names the first non-binary layer, ``binary_hidden_inputs`` ignores the
  analog-input layers; ``neuron_only``: no nonlinearity other than neurons and threshold units
  (``non_neuron_nodes`` lists the others, e.g. a max pool of a membrane);
- operations and energy (:mod:`spikeforge.energy`, E_AC = 0.9 pJ, E_MAC = 4.6 pJ, Horowitz 2014)
  of the same architecture as ANN (dense MACs of one step), pure SNN (every site spiking, same
  weights: a proxy, its accuracy is reported but it was never trained as such), hybrid (layers
  after a SpikingReLU are dense MACs) and converted (only accumulates, except an analog first
  layer; the threshold units' internal events — lateral synapses, spikes into adds, sum pools —
  are accumulations too, ``unit_sops``, as :func:`spikeforge.reparam.ops.unit_accumulations` counts
  them, the same count as the event runtime's).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..energy import EnergyModel, OpsCounter, OpsReport
from ..hybrid.spiking_relu import SpikingReLU
from ..models import neuron_sites, replace_module
from ..neurons import NeuronConfig, SpikingNeuron
from .certificate import Certificate, covers
from .executor import ConvertedModel
from .graph import SPIKING_OPS, ConvertedGraph, Node
from .ops import unit_accumulations

LOGIT_TOLERANCE = 1e-9
F64 = torch.float64
REFERENCE_BACKEND = "reference"
LEVEL_DTYPE = torch.int32  # SpikingReLU levels stored for the comparison


def prepare_hybrid(model: nn.Module) -> nn.Module:
    """A float64, eval-mode copy whose neurons run the reference loop (the defining numerics)."""
    m = copy.deepcopy(model).to(F64).eval()
    for mod in m.modules():
        if isinstance(mod, SpikingNeuron):
            mod.backend = REFERENCE_BACKEND
    return m


def pure_snn(hybrid: nn.Module, neuron: NeuronConfig) -> nn.Module:
    """The same architecture and weights with every SpikingReLU site replaced by ``neuron``."""
    m = copy.deepcopy(hybrid)
    cfg = copy.deepcopy(neuron)
    cfg.backend = REFERENCE_BACKEND
    for name, site in neuron_sites(m).items():
        if isinstance(site, SpikingReLU):
            replace_module(m, name, cfg.build().to(device=site.step.device, dtype=F64))
    return m.to(F64).eval()


class BinaryInputMonitor:
    """Forward hooks on every synaptic layer of a :class:`ConvertedModel`: are inputs only 0/1?"""

    def __init__(self, model: ConvertedModel) -> None:
        self.model = model
        self.binary: dict[str, bool] = {}
        self._handles: list[Any] = []

    def __enter__(self) -> BinaryInputMonitor:
        for path, node_name in self.model.layer_names.items():
            layer = self.model.get_submodule(path)
            self._handles.append(layer.register_forward_hook(self._hook(node_name)))
        return self

    def _hook(self, name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...], torch.Tensor], None]:
        def hook(_m: nn.Module, inputs: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
            x = inputs[0]
            ok = bool(((x == 0) | (x == 1)).all())
            self.binary[name] = self.binary.get(name, True) and ok
        return hook

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def offending(self, graph: ConvertedGraph, hidden_only: bool = False) -> list[str]:
        """Layers (graph order) that saw a non-binary input; ``hidden_only``: not those reading the model input."""
        return [n.name for n in graph.synaptic() if not self.binary.get(n.name, True)
                and not (hidden_only and n.attrs.get("analog_input"))]


def check_binary_inputs(graph: ConvertedGraph, x: torch.Tensor, hidden_only: bool = True) -> list[str]:
    """Run ``graph`` densely on ``x`` and return the synaptic layers that saw a non-binary input."""
    model = ConvertedModel(graph)
    with torch.no_grad(), BinaryInputMonitor(model) as mon:
        model(x)
    return mon.offending(graph, hidden_only)


@dataclass
class Batch:
    """One verification batch: the hybrid's input, the converted model's input, labels (or None)."""

    hybrid_input: torch.Tensor
    converted_input: torch.Tensor
    labels: torch.Tensor | None = None


@dataclass
class _Tally:
    max_diff: float = 0.0
    agree: int = 0
    total: int = 0
    labelled: int = 0
    correct: dict[str, int] = field(default_factory=lambda: {"hybrid": 0, "converted": 0, "snn": 0})
    mismatches: dict[str, int] = field(default_factory=dict)
    spikes: dict[str, int] = field(default_factory=dict)  # per spiking node (neurons, units): spikes emitted
    unit_events: dict[str, int] = field(default_factory=dict)  # per non-synaptic node: accumulations


def _site_outputs(model: nn.Module) -> tuple[dict[str, torch.Tensor], list[Any]]:
    """Hooks storing each site's output compactly: spikes as bool, SpikingReLU levels ``y/s`` as int."""
    out: dict[str, torch.Tensor] = {}

    def hook(name: str, m: nn.Module) -> Callable[[nn.Module, object, torch.Tensor], None]:
        def store(_m: nn.Module, _i: object, y: torch.Tensor) -> None:
            if isinstance(m, SpikingReLU):
                step = m.step.detach().abs().clamp(min=torch.finfo(m.step.dtype).tiny).to(y.dtype)
                out[name] = torch.round(y.detach() / step).to(LEVEL_DTYPE)
            else:
                out[name] = y.detach() != 0
        return store

    handles = [m.register_forward_hook(hook(n, m)) for n, m in neuron_sites(model).items()]
    return out, handles


class _Observer:
    """Per converted node (``ConvertedModel.forward(on_node=...)``): compare sites, count unit events, certify."""

    def __init__(self, graph: ConvertedGraph, tally: _Tally, certificate: Certificate | None) -> None:
        self.graph, self.tally, self.certificate = graph, tally, certificate
        self.ops = {n.name: n.op for n in graph.nodes}
        self.hybrid: dict[str, torch.Tensor] = {}
        self.levels: dict[tuple[str, str], torch.Tensor] = {}

    def __call__(self, node: Node, xs: list[torch.Tensor], y: torch.Tensor) -> None:
        t = self.tally
        if node.op in SPIKING_OPS:
            t.spikes[node.name] = t.spikes.get(node.name, 0) + int((y != 0).sum())
        acc = unit_accumulations(node.op, xs, y, [self.ops[i] in SPIKING_OPS for i in node.inputs])
        if acc or node.op in ("threshold", "sumpool"):
            t.unit_events[node.name] = t.unit_events.get(node.name, 0) + acc
        if node.op == "neuron" and node.name in self.hybrid:
            self._count(node.name, (y != 0) != self.hybrid[node.name])
        elif node.op == "quantize" and node.name in self.hybrid:  # format 1 graphs
            self._count(node.name, y.to(LEVEL_DTYPE) != self.hybrid[node.name])
        elif node.op == "threshold" and node.attrs.get("role") == "level" and node.attrs["site"] in self.hybrid:
            key = (node.attrs["site"], node.attrs["code"])
            self.levels[key] = self.levels.get(key, 0) + int(node.attrs["digit"]) * y.to(LEVEL_DTYPE)
        if self.certificate is not None:
            self.certificate.on_node(node, xs, y)

    def _count(self, site: str, diff: torch.Tensor) -> None:
        self.tally.mismatches[site] = self.tally.mismatches.get(site, 0) + int(diff.sum())

    def end_batch(self) -> None:
        for (site, _code), q in self.levels.items():
            self._count(site, q != self.hybrid[site])
        self.levels.clear()
        self.hybrid.clear()


def _keep_pool_outputs(models: list[nn.Module], keep: list[torch.Tensor]) -> list[Any]:
    """Hold every pooling output until the batch ends.

    :class:`spikeforge.energy.OpsCounter` recognises pooled tensors by storage address; keeping
    them alive stops a later tensor of the same forward pass from reusing a freed address and
    being mistaken for a pooled one.
    """
    pools = (nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.MaxPool2d)
    return [m.register_forward_hook(lambda _m, _i, y: keep.append(y))
            for model in models for m in model.modules() if isinstance(m, pools)]


def _energy_entry(rep: OpsReport, view: str = "") -> dict[str, float]:
    if view == "event":
        return {"sops": rep.event_sops, "macs": rep.event_macs, "energy_pj": rep.event_energy_pj}
    return {"sops": rep.sops, "macs": rep.macs, "energy_pj": rep.energy_pj}


@torch.no_grad()
def verify_models(hybrid: nn.Module, graph: ConvertedGraph, batches: Iterable[Batch],
                  snn: nn.Module | None = None, energy: EnergyModel | None = None) -> dict[str, Any]:
    """Run the hybrid, the converted graph (and optionally the pure-SNN proxy) on ``batches``."""
    hybrid = prepare_hybrid(hybrid)
    device = next((t.device for t in hybrid.parameters()), torch.device("cpu"))
    converted = ConvertedModel(graph).to(device)
    tally = _Tally()
    certificate = Certificate(graph) if covers(graph) else None
    observer = _Observer(graph, tally, certificate)
    site_out, handles = _site_outputs(hybrid)
    observer.hybrid = site_out
    alive: list[torch.Tensor] = []
    handles += _keep_pool_outputs([hybrid] + ([snn] if snn is not None else []), alive)
    counters = [OpsCounter(hybrid, energy), OpsCounter(converted, energy)]
    if snn is not None:
        counters.append(OpsCounter(snn, energy))
    mon = BinaryInputMonitor(converted)
    try:
        for c in counters:
            c.__enter__()
        mon.__enter__()
        for batch in batches:
            xh, xc = batch.hybrid_input.to(device, F64), batch.converted_input.to(device, F64)
            yh = hybrid(xh)
            yc = converted(xc, observer)
            observer.end_batch()
            tally.max_diff = max(tally.max_diff, float((yh - yc).abs().max()))
            ph, pc = yh.mean(0).argmax(-1), yc.mean(0).argmax(-1)
            tally.agree += int((ph == pc).sum())
            tally.total += int(ph.numel())
            if batch.labels is not None:
                y = batch.labels.to(device)
                tally.labelled += int(y.numel())
                tally.correct["hybrid"] += int((ph == y).sum())
                tally.correct["converted"] += int((pc == y).sum())
                if snn is not None:
                    tally.correct["snn"] += int((snn(xh).mean(0).argmax(-1) == y).sum())
            elif snn is not None:
                snn(xh)
            alive.clear()
    finally:
        mon.__exit__()
        for c in counters:
            c.__exit__()
        for h in handles:
            h.remove()
    return _result(graph, converted, tally, counters, mon, certificate)


def _unit_summary(graph: ConvertedGraph, tally: _Tally, samples: int) -> dict[str, Any]:
    """Per-sample spikes and accumulations of the non-synaptic nodes, and per site the units' cost."""
    per_site: dict[str, dict[str, float]] = {}
    for n in graph.nodes:
        if n.op != "threshold":
            continue
        entry = per_site.setdefault(n.attrs.get("site", n.name), {"units": 0, "spikes": 0.0, "sops": 0.0})
        entry["units"] += 1
        entry["spikes"] += tally.spikes.get(n.name, 0) / samples
        entry["sops"] += tally.unit_events.get(n.name, 0) / samples
    return {"unit_sops": sum(tally.unit_events.values()) / samples, "spikes": sum(tally.spikes.values()) / samples,
            "unit_sites": per_site}


def _result(graph: ConvertedGraph, converted: ConvertedModel, tally: _Tally, counters: list[OpsCounter],
            mon: BinaryInputMonitor, certificate: Certificate | None) -> dict[str, Any]:
    if not tally.total:
        raise ValueError("verification saw no samples")
    rep_h, rep_c = counters[0].report(), counters[1].report()
    offending, hidden = mon.offending(graph), mon.offending(graph, hidden_only=True)
    units = _unit_summary(graph, tally, tally.total)
    sops = rep_c.sops + units["unit_sops"]
    e = rep_c.energy
    converted_energy = {"sops": sops, "macs": rep_c.macs, "energy_pj": sops * e.e_ac_pj + rep_c.macs * e.e_mac_pj}
    energy = {"ann": {"sops": 0.0, "macs": rep_h.ann_macs, "energy_pj": rep_h.ann_energy_pj},
              "hybrid": _energy_entry(rep_h), "hybrid_event_view": _energy_entry(rep_h, "event"),
              "converted": converted_energy}
    flips = int(sum(tally.mismatches.values()))
    out: dict[str, Any] = {
        "samples": tally.total, "time_steps": rep_c.time_steps,
        "max_abs_logit_diff": tally.max_diff, "argmax_agreement": tally.agree / tally.total,
        "site_mismatches": tally.mismatches, "spike_flips": flips,
        "binary_inputs": not offending, "first_non_binary": offending[0] if offending else None,
        "binary_hidden_inputs": not hidden,
        "analog_input_layers": [n.name for n in graph.synaptic() if n.attrs.get("analog_input")
                                and not mon.binary.get(n.name, True)],
        "neuron_only": not graph.non_neuron(), "non_neuron_nodes": graph.non_neuron(),
        "sops": sops, "synaptic_sops": rep_c.sops, "macs": rep_c.macs, "energy_pj": converted_energy["energy_pj"],
        "energy": energy, **units,
        "energy_model": {"e_ac_pj": e.e_ac_pj, "e_mac_pj": e.e_mac_pj},
        "certificate": certificate.result(flips) if certificate is not None else None,
    }
    per_layer = {"hybrid": rep_h.to_dict()["layers"]}
    if len(counters) > 2:
        rep_s = counters[2].report()
        energy["snn"] = _energy_entry(rep_s)
        per_layer["snn"] = rep_s.to_dict()["layers"]
    if tally.labelled:
        out["accuracy"] = tally.correct["converted"] / tally.labelled
        out["hybrid_accuracy"] = tally.correct["hybrid"] / tally.labelled
        if len(counters) > 2:
            out["snn_accuracy"] = tally.correct["snn"] / tally.labelled
    names = converted.layer_names
    out["layers"] = [{"name": names.get(lay.name, lay.name), "kind": lay.kind, "rate": lay.rate,
                      "binary": lay.binary, "macs_per_step": lay.macs, "sops": lay.sops,
                      "energy_pj": lay.energy_pj} for lay in rep_c.layers]
    out["reference_layers"] = per_layer  # energy.py's per-layer counts of the hybrid and the SNN proxy
    out["exact"] = out["max_abs_logit_diff"] <= LOGIT_TOLERANCE and out["argmax_agreement"] == 1.0
    return out
