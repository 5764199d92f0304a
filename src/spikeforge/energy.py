"""Synaptic-operation counting and the energy model, on any ``nn.Module`` model.

Forward hooks on every ``nn.Conv2d`` / ``nn.Linear`` (the time-distributed layers subclass them)
measure, per layer and per sample (averaged over the batch):

- ``macs``: dense multiply-accumulates for one sample and one time step,
  conv: ``out_elements · (C_in/groups) · kH · kW``, linear: ``in · out`` (per output vector);
- ``rate``: the fraction of non-zero input elements;
- ``binary``: whether every input element is 0 or 1;
- ``spikes``: whether the input is a count of binary spikes ``x = n/c`` with ``n ∈ ℕ``: binary
  spikes (``c = 1``), sums of spikes (SEW residuals, event-count frames: ``c = 1``) or their
  average pools (``c`` = the pooling window, tracked from the pool's input by forward hooks on
  ``nn.AvgPool2d`` / ``nn.AdaptiveAvgPool2d``; pooling commutes with the next linear map, so an
  event-driven implementation delivers each pre-pool spike to the pooled position's targets;
  a pooled tensor and its views are recognised by ``(data_ptr, numel)``, and the counter keeps
  it alive until the next forward pass so no other tensor can reuse its address);
- ``sops``: the accumulates an event-driven implementation performs, summed over the T steps,
  ``Σ_i n_i · fan-out(i)`` with ``n_i`` the spike count of input element ``i`` (for inputs that
  are not spike counts: ``Σ_{non-zero i} fan-out(i)``, events carrying values). For a conv
  ``Σ_i w_i · fan-out(i)`` is computed exactly, with the layer's stride, padding (zero or
  otherwise), dilation and groups, as the sum of ``conv2d(w, ones)`` (``w`` summed over the
  (output, tap) pairs reading it) times ``C_out/groups``; for a linear layer it is
  ``Σ_i w_i · out``;
- ``planes`` / ``plane_sops``: when the input is a non-negative integer multiple of one quantum
  ``u`` (``x = u·n``, ``n ∈ {0..2^P−1}``, e.g. a SpikingReLU output ``s·q``), the accumulates
  after decomposing ``n = Σ_k 2^k b_k`` into ``P`` binary planes (each plane a spike tensor):
  ``Σ_k Σ_{b_k = 1} fan-out = Σ popcount(n) · fan-out``. ``u`` is the smallest positive input
  value; the input counts as integer when every ``x/u`` is within ``integer_tolerance`` of an
  integer and needs at most ``max_planes`` planes. Planes are taken *before* an average pool
  (which the exact reparameterization folds into the next layer): a pooled input carries
  ``window · avgpool(popcount(n_pre))``, the plane events of the pre-pool integer that reach
  each pooled position. Binary inputs have ``planes = 1``; analog inputs (negative or
  non-integer values, e.g. direct-encoded pixels) ``planes = 0``.

Convention for the totals (module-level, the usual one in the SNN literature):

- a layer whose input is binary spikes (or spike counts, see ``spikes``) is event-driven: its
  ``sops`` cost ``E_AC`` each;
- any other layer (analog *or* multi-level input, e.g. the direct-encoded first layer or the
  layer after a SpikingReLU, whose ``s·q`` is not a spike count) is dense: its ``macs · T`` cost
  ``E_MAC`` each;
- ``energy_pj = sops·E_AC + macs·E_MAC``; ``ann_macs`` is the same architecture as an ANN (dense
  MACs of one time step, every layer) and ``ann_energy_pj = ann_macs · E_MAC``.

A second, event-driven view is reported alongside (what an exactly reparameterized hybrid costs,
see :mod:`spikeforge.reparam`): binary and integer inputs are counted as ``plane_sops`` at
``E_AC`` (``event_sops``), only analog inputs as dense MACs (``event_macs``), giving
``event_energy_pj``. For a pure SNN of binary spikes and average pools ``event_sops == sops``.
The hybrid site policy budgets ``event_sops``.

Energy per operation (``EnergyModel``): E_AC = 0.9 pJ (32-bit float add), E_MAC = 4.6 pJ
(32-bit float multiply 3.7 pJ + add 0.9 pJ), 45 nm CMOS, M. Horowitz, "Computing's energy
problem (and what we can do about it)", ISSCC 2014.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from .models.sites import neuron_sites, synaptic_layers


@dataclass(frozen=True)
class EnergyModel:
    """Energy per operation in picojoules (Horowitz, ISSCC 2014, 45 nm, 32-bit float)."""

    e_ac_pj: float = 0.9
    e_mac_pj: float = 4.6


@dataclass(frozen=True)
class CountConfig:
    """How layer inputs are classified as binary / integer multi-level / analog."""

    integer_tolerance: float = 1e-3  # |x/u − round(x/u)| allowed for an integer multi-level input
    max_planes: int = 16  # more bit planes than this: treated as analog


@dataclass
class LayerOps:
    """One synaptic layer's counts, per sample (``macs`` per time step; ``sops`` over all steps)."""

    name: str
    kind: str  # "conv" | "linear"
    macs: float
    rate: float
    binary: bool
    spikes: bool
    sops: float
    planes: int
    plane_sops: float
    energy_pj: float = 0.0

    @property
    def integer(self) -> bool:
        """Binary or integer multi-level input (decomposable into binary planes)."""
        return self.planes > 0


@dataclass
class OpsReport:
    """Per-layer counts, totals and per-site firing rates of one or more forward passes."""

    time_steps: int
    samples: int
    layers: list[LayerOps]
    site_rates: dict[str, float]
    energy: EnergyModel = field(default_factory=EnergyModel)

    def __post_init__(self) -> None:
        e = self.energy
        for lay in self.layers:
            lay.energy_pj = (lay.sops * e.e_ac_pj if lay.spikes
                             else lay.macs * self.time_steps * e.e_mac_pj)

    @property
    def sops(self) -> float:
        return sum(lay.sops for lay in self.layers if lay.spikes)

    @property
    def macs(self) -> float:
        return sum(lay.macs for lay in self.layers if not lay.spikes) * self.time_steps

    @property
    def energy_pj(self) -> float:
        return self.sops * self.energy.e_ac_pj + self.macs * self.energy.e_mac_pj

    @property
    def ann_macs(self) -> float:
        return sum(lay.macs for lay in self.layers)

    @property
    def ann_energy_pj(self) -> float:
        return self.ann_macs * self.energy.e_mac_pj

    @property
    def event_sops(self) -> float:
        return sum(lay.plane_sops for lay in self.layers if lay.integer)

    @property
    def event_macs(self) -> float:
        return sum(lay.macs for lay in self.layers if not lay.integer) * self.time_steps

    @property
    def event_energy_pj(self) -> float:
        return self.event_sops * self.energy.e_ac_pj + self.event_macs * self.energy.e_mac_pj

    def totals(self) -> dict[str, float]:
        return {k: float(getattr(self, k)) for k in
                ("sops", "macs", "energy_pj", "ann_macs", "ann_energy_pj", "event_sops", "event_macs",
                 "event_energy_pj")}

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {"time_steps": self.time_steps, "samples": self.samples,
                "energy_model": asdict(self.energy), "totals": self.totals(),
                "layers": [asdict(lay) for lay in self.layers], "site_rates": dict(self.site_rates)}

    def table(self) -> str:
        """Markdown table of the layers, the totals and the site firing rates."""
        rows = ["| layer | kind | input | rate | MACs/step | SOPs | planes | plane SOPs | energy (pJ) |",
                "|---|---|---|---:|---:|---:|---:|---:|---:|"]
        for lay in self.layers:
            what = ("binary" if lay.binary else "spikes" if lay.spikes else "integer" if lay.integer
                    else "analog")
            rows.append(f"| {lay.name} | {lay.kind} | {what} | {lay.rate:.4f} | {lay.macs:.4g} "
                        f"| {lay.sops:.4g} | {lay.planes} | {lay.plane_sops:.4g} | {lay.energy_pj:.4g} |")
        rows += ["", "| total | value |", "|---|---:|"]
        rows += [f"| {k} | {v:.4g} |" for k, v in self.totals().items()]
        if self.site_rates:
            rows += ["", "| site | firing rate |", "|---|---:|"]
            rows += [f"| {n} | {r:.4f} |" for n, r in self.site_rates.items()]
        return "\n".join(rows) + "\n"


def _fanout_sum(layer: nn.Module, weight_map: torch.Tensor) -> float:
    """``Σ_i weight_map_i · fan-out(i)`` over one call's input (any leading dims)."""
    w = weight_map.to(torch.float64 if weight_map.device.type == "cpu" else torch.float32)
    if isinstance(layer, nn.Conv2d):
        x4 = w.reshape(-1, *w.shape[-3:])
        groups = layer.groups
        kernel = torch.ones(groups, layer.in_channels // groups, *layer.kernel_size, dtype=w.dtype,
                            device=w.device)
        padding: Any = layer.padding
        if layer.padding_mode != "zeros":
            # a non-zero padding mode reads (copies of) input elements in the border too
            x4 = F.pad(x4, layer._reversed_padding_repeated_twice, mode=layer.padding_mode)
            padding = 0
        taps = F.conv2d(x4, kernel, None, layer.stride, padding, layer.dilation, groups)
        return float(taps.sum(dtype=torch.float64)) * (layer.out_channels // groups)
    return float(w.sum(dtype=torch.float64)) * cast(nn.Linear, layer).out_features


def _dense_macs(layer: nn.Module, out: torch.Tensor) -> float:
    if isinstance(layer, nn.Conv2d):
        kh, kw = layer.kernel_size
        return float(out.numel()) * (layer.in_channels // layer.groups) * kh * kw
    return float(out.numel()) * cast(nn.Linear, layer).in_features


def classify_input(x: torch.Tensor, cfg: CountConfig) -> tuple[bool, int, torch.Tensor | None]:
    """``(binary, planes, n)``: ``n`` the integer levels ``x/u`` (None for analog inputs)."""
    if bool(((x == 0) | (x == 1)).all()):
        return True, 1, x
    if bool((x < 0).any()):
        return False, 0, None
    positive = x[x > 0]
    if positive.numel() == 0:
        return True, 1, x
    n = x.double() / positive.min().double()
    r = n.round()
    top = float(r.max())
    if bool(((n - r).abs() > cfg.integer_tolerance).any()) or top >= 2.0**cfg.max_planes:
        return False, 0, None
    return False, max(1, int(top).bit_length()), r


def spike_counts(x: torch.Tensor, c: float, tolerance: float) -> torch.Tensor | None:
    """``n = x·c`` if it is a non-negative integer tensor (a count of spikes), else None."""
    n = x.double() * c
    r = n.round()
    if bool((n < 0).any()) or bool(((n - r).abs() > tolerance).any()):
        return None
    return r


def pool_window(pool: nn.Module, x: torch.Tensor, out: torch.Tensor) -> float | None:
    """How many inputs an average pool averages per output (None if it varies)."""
    if isinstance(pool, nn.AvgPool2d):
        if pool.divisor_override:
            return float(pool.divisor_override)
        pad = pool.padding if isinstance(pool.padding, tuple) else (pool.padding,)
        if any(pad) and not pool.count_include_pad:
            return None
        k = pool.kernel_size if isinstance(pool.kernel_size, tuple) else (pool.kernel_size,) * 2
        return float(k[0] * k[1])
    h, w, oh, ow = x.shape[-2], x.shape[-1], out.shape[-2], out.shape[-1]
    if h % oh or w % ow:
        return None
    return float((h // oh) * (w // ow))


def _pool_map(pool: nn.Module, m: torch.Tensor, out: torch.Tensor, window: float) -> torch.Tensor:
    """``window · avgpool(m)`` with ``pool``'s geometry: per pooled position, the sum over its window."""
    t = m.to(torch.float64 if m.device.type == "cpu" else torch.float32)
    t = t.reshape(-1, *t.shape[-3:])
    if isinstance(pool, nn.AvgPool2d):
        t = F.avg_pool2d(t, pool.kernel_size, pool.stride, pool.padding, pool.ceil_mode,
                         pool.count_include_pad, pool.divisor_override)
    else:
        t = F.adaptive_avg_pool2d(t, cast("tuple[int, int]", out.shape[-2:]))
    return (t * window).round().reshape(out.shape)


def _key(x: torch.Tensor) -> tuple[int, int]:
    return x.data_ptr(), x.numel()


def popcount(n: torch.Tensor, planes: int) -> torch.Tensor:
    """Number of set bits of each non-negative integer in ``n`` (``planes`` bits)."""
    ni = n.to(torch.int64)
    return sum(((ni >> k) & 1) for k in range(planes))  # type: ignore[return-value]


_ACC_KEYS = ("macs", "nnz", "numel", "sops", "plane_sops")
POOLS: tuple[type[nn.Module], ...] = (nn.AvgPool2d, nn.AdaptiveAvgPool2d)


class OpsCounter:
    """Context manager that counts ops of every forward pass run inside it.

    ``with OpsCounter(model) as c: y = model(x)`` then ``c.report()``. Several batches are
    averaged per sample. Inputs must be ``[T, B, ...]``.
    """

    def __init__(self, model: nn.Module, energy: EnergyModel | None = None,
                 cfg: CountConfig | None = None) -> None:
        self.model = model
        self.energy = energy or EnergyModel()
        self.cfg = cfg or CountConfig()
        self.layers = synaptic_layers(model)
        self.sites = neuron_sites(model)
        self._acc: dict[str, dict[str, float]] = {}
        self._binary: dict[str, bool] = {}
        self._spikes: dict[str, bool] = {}
        self._pool_scale: dict[tuple[int, int], float] = {}  # pooled-spike tensors -> window size
        self._pool_planes: dict[tuple[int, int], tuple[torch.Tensor, int]] = {}  # pooled plane events
        self._alive: list[torch.Tensor] = []  # tagged pool outputs, kept so no tensor reuses their address
        self.pools = [m for m in model.modules() if isinstance(m, POOLS)]
        self._planes: dict[str, int] = {}
        self._site_acc: dict[str, list[float]] = {n: [0.0, 0.0] for n in self.sites}
        self._handles: list[Any] = []
        self.samples = 0
        self.time_steps = 0

    def _layer_hook(self, name: str):  # noqa: ANN202
        def hook(layer: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            x = inputs[0].detach()
            binary, planes, n = classify_input(x, self.cfg)
            acc = self._acc.setdefault(name, dict.fromkeys(_ACC_KEYS, 0.0))
            acc["macs"] += _dense_macs(layer, out)
            acc["nnz"] += float((x != 0).sum())
            acc["numel"] += float(x.numel())
            counts = x if binary else spike_counts(x, self._pool_scale.get(_key(x), 1.0),
                                                   self.cfg.integer_tolerance)
            acc["sops"] += _fanout_sum(layer, (x != 0) if counts is None else counts)
            tagged = self._pool_planes.get(_key(x))
            plane_map: torch.Tensor | None = None
            if tagged is not None:
                plane_map, planes = tagged
            elif planes and n is not None:
                plane_map = (x != 0) if binary else popcount(n, planes)
            if plane_map is not None:
                acc["plane_sops"] += _fanout_sum(layer, plane_map)
            self._binary[name] = self._binary.get(name, True) and binary
            self._spikes[name] = self._spikes.get(name, True) and counts is not None
            prev = self._planes.get(name, 1)
            self._planes[name] = 0 if planes == 0 or prev == 0 else max(prev, planes)
        return hook

    def _pool_hook(self, pool: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        x = inputs[0].detach()
        window = pool_window(pool, x, out)
        if window is None:
            return
        self._alive.append(out)
        scale = self._pool_scale.get(_key(x), 1.0)
        if spike_counts(x, scale, self.cfg.integer_tolerance) is not None:
            self._pool_scale[_key(out)] = scale * window
        tagged = self._pool_planes.get(_key(x))
        if tagged is None:
            binary, planes, n = classify_input(x, self.cfg)
            if not planes or n is None:
                return
            tagged = ((x != 0) if binary else popcount(n, planes), planes)
        self._pool_planes[_key(out)] = (_pool_map(pool, tagged[0], out, window), tagged[1])

    def _site_hook(self, name: str):  # noqa: ANN202
        def hook(_m: nn.Module, _inp: object, out: torch.Tensor) -> None:
            acc = self._site_acc[name]
            acc[0] += float((out != 0).sum())
            acc[1] += float(out.numel())
        return hook

    def _model_pre_hook(self, _m: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0]
        if x.dim() < 3:
            raise ValueError(f"count_ops expects a time-first input [T, B, ...], got {tuple(x.shape)}")
        t, b = int(x.shape[0]), int(x.shape[1])
        if self.time_steps and t != self.time_steps:
            raise ValueError(f"all counted batches must have the same T ({self.time_steps}), got {t}")
        self.time_steps = t
        self.samples += b
        self._pool_scale.clear()
        self._pool_planes.clear()
        self._alive.clear()

    def __enter__(self) -> OpsCounter:
        self._handles = [self.model.register_forward_pre_hook(self._model_pre_hook)]
        self._handles += [m.register_forward_hook(self._layer_hook(n)) for n, m in self.layers.items()]
        self._handles += [m.register_forward_hook(self._site_hook(n)) for n, m in self.sites.items()]
        self._handles += [m.register_forward_hook(self._pool_hook) for m in self.pools]
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self._pool_scale.clear()
        self._pool_planes.clear()
        self._alive.clear()

    def report(self) -> OpsReport:
        if not self.samples:
            raise ValueError("no forward pass was counted")
        per_step = float(self.samples * self.time_steps)
        layers = []
        for name, module in self.layers.items():
            if name not in self._acc:
                continue  # not called in this model's forward
            acc = self._acc[name]
            planes = self._planes[name]
            layers.append(LayerOps(
                name=name, kind="conv" if isinstance(module, nn.Conv2d) else "linear",
                macs=acc["macs"] / per_step, rate=acc["nnz"] / max(acc["numel"], 1.0),
                binary=self._binary[name], spikes=self._spikes[name], sops=acc["sops"] / self.samples,
                planes=planes,
                plane_sops=acc["plane_sops"] / self.samples if planes else 0.0))
        rates = {n: a[0] / a[1] for n, a in self._site_acc.items() if a[1]}
        return OpsReport(self.time_steps, self.samples, layers, rates, self.energy)


@torch.no_grad()
def count_ops(model: nn.Module, x_seq: torch.Tensor, energy: EnergyModel | None = None,
              cfg: CountConfig | None = None) -> OpsReport:
    """Run ``model(x_seq)`` (``[T, B, ...]``, current train/eval mode) and count its operations."""
    with OpsCounter(model, energy, cfg) as counter:
        model(x_seq)
    return counter.report()
