"""Site policies: which neuron sites of a model become SpikingReLU units.

Sites are numbered ``0..S−1`` in model order (:func:`spikeforge.models.neuron_sites`). A policy
spec is one of:

- ``none`` (or empty): the pure SNN, no site;
- ``all``: every site;
- ``last:K`` / ``first:K``: the last / first ``K`` sites (``1 ≤ K ≤ S``);
- ``every:N`` or ``every:N@O``: sites ``O, O+N, O+2N, …`` (``O = 0`` by default, so ``every:N``
  starts from the first site; ``0 ≤ O < N``);
- comma-separated site names or globs (``sn3,layer3.*``): every site matching any pattern; a
  pattern matching nothing is an error;
- ``auto:BUDGET``: greedy selection by measured benefit per added synaptic operation.

``auto:BUDGET`` — the budget bounds the event-driven SOPs per sample
(:attr:`spikeforge.energy.OpsReport.event_sops`, i.e. after bit-plane decomposition of
multi-level inputs) relative to the pure SNN: a plain number is a fraction (``auto:0.25``
allows +25 %), ``auto:25%`` the same in percent, a number with suffix ``k``/``M``/``G`` an
absolute number of extra SOPs per sample (``auto:2.5M``). The algorithm, on a held-out
calibration split encoded once into fixed ``fit`` and ``eval`` batches:

1. ``evaluate(S)`` for a set of sites ``S``: copy the model (current weights), replace ``S``
   by SpikingReLU(L), reseed every RNG with ``seed``, run ``steps`` optimizer steps on the
   ``fit`` batches (cycling), then in eval mode measure the mean loss, accuracy and
   ``event_sops`` on the ``eval`` batches (:class:`spikeforge.energy.OpsCounter`).
2. Start from ``S = ∅``: ``E₀ = event_sops(∅)``, budget ``B = β·E₀`` (or the absolute value).
3. Each round, for every unchosen site ``i``: ``r = evaluate(S ∪ {i})``,
   ``benefit = loss(S) − loss(r)``, ``cost = sops(r) − sops(S)``. A candidate is feasible if
   ``benefit > min_benefit`` and ``sops(r) − E₀ ≤ B``. Add the feasible candidate with the
   largest ``benefit / max(cost, min_cost)`` (ties: model order) and continue; stop when no
   candidate is feasible (or ``max_sites`` are chosen).

Benefit is the reduction of held-out loss after a short fine-tune from the same weights and
the same random streams, so it is a cheap proxy for the accuracy a site's ReLU adds; the whole
procedure is deterministic given ``seed`` (global RNG state is saved and restored). It costs
``O(S·K)`` short fine-tunes for ``K`` chosen sites.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..energy import OpsCounter
from ..models import match_sites, neuron_sites, replace_module
from .spiking_relu import SpikingReLU

KEYWORDS = ("none", "all", "last", "first", "every", "auto")
SIZE_SUFFIXES = {"k": 1e3, "M": 1e6, "G": 1e9}
PERCENT = 100.0
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"


@dataclass(frozen=True)
class PolicySpec:
    """A parsed policy: ``kind`` in :data:`KEYWORDS` or ``"names"``."""

    kind: str
    count: int = 0  # K of last/first, N of every
    offset: int = 0  # O of every
    patterns: tuple[str, ...] = ()
    budget: float = 0.0  # auto: the fraction, or the absolute number of SOPs
    relative: bool = True  # auto: budget is a fraction of the pure SNN's SOPs

    @property
    def needs_data(self) -> bool:
        return self.kind == "auto"


def _positive_int(text: str, spec: str, what: str) -> int:
    if not re.fullmatch(r"\d+", text) or int(text) < 1:
        raise ValueError(f"hybrid policy {spec!r}: {what} must be a positive integer, got {text!r}")
    return int(text)


def parse_budget(text: str, spec: str) -> tuple[float, bool]:
    """``"0.25"`` → (0.25, relative); ``"25%"`` → (0.25, relative); ``"2.5M"`` → (2.5e6, absolute)."""
    m = re.fullmatch(rf"({_NUMBER})([kMG%]?)", text.strip())
    if not m:
        raise ValueError(f"hybrid policy {spec!r}: budget must be a non-negative number, a percentage "
                         f"(25%) or a count with suffix k/M/G (2.5M), got {text!r}")
    value, suffix = float(m.group(1)), m.group(len(m.groups()))
    if suffix == "%":
        return value / PERCENT, True
    if suffix:
        return value * SIZE_SUFFIXES[suffix], False
    return value, True


def parse_spec(spec: str) -> PolicySpec:
    """Validate a policy string; raises ``ValueError`` explaining what is malformed."""
    text = spec.strip()
    if text in ("", "none"):
        return PolicySpec("none")
    if text == "all":
        return PolicySpec("all")
    head, sep, arg = text.partition(":")
    if not sep:
        patterns = tuple(p.strip() for p in text.split(","))
        if any(not p for p in patterns):
            raise ValueError(f"hybrid policy {spec!r}: empty site name in the comma-separated list")
        return PolicySpec("names", patterns=patterns)
    head = head.strip()
    if head not in KEYWORDS or head in ("none", "all"):
        raise ValueError(f"hybrid policy {spec!r}: unknown policy {head!r}; expected none, all, last:K, "
                         "first:K, every:N[@O], auto:BUDGET or comma-separated site names/globs")
    arg = arg.strip()
    if head in ("last", "first"):
        return PolicySpec(head, count=_positive_int(arg, spec, "K"))
    if head == "every":
        n_text, _, o_text = arg.partition("@")
        n = _positive_int(n_text, spec, "N")
        offset = 0
        if o_text:
            if not re.fullmatch(r"\d+", o_text) or int(o_text) >= n:
                raise ValueError(f"hybrid policy {spec!r}: offset O must be an integer in [0, {n}), "
                                 f"got {o_text!r}")
            offset = int(o_text)
        return PolicySpec("every", count=n, offset=offset)
    budget, relative = parse_budget(arg, spec)
    return PolicySpec("auto", budget=budget, relative=relative)


def _static_sites(names: list[str], spec: PolicySpec, model: nn.Module, text: str) -> list[str]:
    """The sites of a data-free policy."""
    if spec.kind == "none":
        return []
    if spec.kind == "all":
        return list(names)
    if spec.kind in ("last", "first"):
        if spec.count > len(names):
            raise ValueError(f"hybrid policy {text!r}: the model has only {len(names)} sites ({names})")
        return names[-spec.count:] if spec.kind == "last" else names[:spec.count]
    if spec.kind == "every":
        if spec.offset >= len(names):
            raise ValueError(f"hybrid policy {text!r}: offset {spec.offset} is past the last of "
                             f"{len(names)} sites")
        return names[spec.offset::spec.count]
    if spec.kind == "names":
        return match_sites(model, list(spec.patterns))
    raise ValueError(f"hybrid policy {text!r} needs calibration data (auto)")


@dataclass
class Calibration:
    """What ``auto`` measures on: encoded ``[T, B, ...]`` batches and how to train."""

    fit: list[tuple[torch.Tensor, torch.Tensor]]
    eval: list[tuple[torch.Tensor, torch.Tensor]]
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    make_optimizer: Callable[[list[nn.Parameter]], torch.optim.Optimizer]


@dataclass
class AutoConfig:
    """Knobs of the ``auto`` search (see the module docstring)."""

    steps: int = 8
    seed: int = 0
    min_benefit: float = 0.0
    min_cost: float = 1.0
    max_sites: int = 0  # 0 = no limit


@dataclass
class Trial:
    """``evaluate(S)``: held-out loss/accuracy and event-driven SOPs per sample."""

    sites: list[str]
    loss: float
    accuracy: float
    sops: float


@dataclass
class AutoResult:
    sites: list[str]  # model order
    base: Trial
    budget_sops: float
    order: list[str] = field(default_factory=list)  # the sites in the order they were picked
    rounds: list[list[dict[str, Any]]] = field(default_factory=list)  # every candidate of every round

    def to_dict(self) -> dict[str, Any]:
        return {"sites": self.sites, "order": self.order, "base_loss": self.base.loss,
                "base_accuracy": self.base.accuracy, "base_sops": self.base.sops, "budget_sops": self.budget_sops,
                "rounds": self.rounds}


def _fork_devices(model: nn.Module) -> list[int]:
    return [p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"][:1]


def evaluate_sites(model: nn.Module, sites: list[str], levels: int, cal: Calibration,
                   cfg: AutoConfig) -> Trial:
    """Fine-tune a copy with ``sites`` as SpikingReLU for ``cfg.steps`` steps; measure on ``cal.eval``."""
    m = apply_hybrid(copy.deepcopy(model), sites, levels)
    with torch.random.fork_rng(devices=_fork_devices(m)):
        torch.manual_seed(cfg.seed)
        m.train()
        opt = cal.make_optimizer([p for p in m.parameters() if p.requires_grad])
        for i in range(cfg.steps):
            x, y = cal.fit[i % len(cal.fit)]
            loss = cal.loss_fn(m(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        m.eval()
        loss_sum, correct, total = 0.0, 0, 0
        with torch.no_grad(), OpsCounter(m) as counter:
            for x, y in cal.eval:
                out = m(x).float()
                loss_sum += float(cal.loss_fn(out, y)) * y.shape[0]
                correct += int((out.mean(0).argmax(-1) == y).sum())
                total += y.shape[0]
    sops = counter.report().event_sops
    if not math.isfinite(loss_sum):
        loss_sum = math.inf
    return Trial(list(sites), loss_sum / total, correct / total, sops)


def auto_select(model: nn.Module, spec: PolicySpec, levels: int, cal: Calibration,
                cfg: AutoConfig | None = None) -> AutoResult:
    """Greedy benefit-per-SOP selection under the SOP budget (module docstring)."""
    cfg = cfg or AutoConfig()
    if not cal.fit or not cal.eval:
        raise ValueError("auto policy: the calibration split has no fit or no eval batch")
    names = [n for n, s in neuron_sites(model).items() if not isinstance(s, SpikingReLU)]
    base = evaluate_sites(model, [], levels, cal, cfg)
    budget = spec.budget * base.sops if spec.relative else spec.budget
    result = AutoResult([], base, budget)
    current = base
    limit = min(cfg.max_sites, len(names)) if cfg.max_sites > 0 else len(names)
    while len(result.sites) < limit:
        best: tuple[float, str, Trial] | None = None
        log = []
        for name in names:
            if name in result.sites:
                continue
            chosen = [n for n in names if n in result.sites or n == name]
            trial = evaluate_sites(model, chosen, levels, cal, cfg)
            benefit = current.loss - trial.loss
            cost = trial.sops - current.sops
            ratio = benefit / max(cost, cfg.min_cost)
            feasible = benefit > cfg.min_benefit and trial.sops - base.sops <= budget
            log.append({"site": name, "loss": trial.loss, "accuracy": trial.accuracy, "sops": trial.sops,
                        "benefit": benefit, "cost": cost, "ratio": ratio, "feasible": feasible})
            if feasible and (best is None or ratio > best[0]):
                best = (ratio, name, trial)
        result.rounds.append(log)
        if best is None:
            break
        _, picked, current = best
        result.order.append(picked)
        result.sites = current.sites
    return result


@dataclass
class Selection:
    """The sites a policy chose (model order) and, for ``auto:``, the record of its search."""

    sites: list[str]
    auto: AutoResult | None = None


def select(model: nn.Module, policy: str, levels: int = 15, calibration: Calibration | None = None,
           auto: AutoConfig | None = None) -> Selection:
    """The sites policy ``policy`` chooses in ``model`` — the one place a policy becomes sites.

    Data-free policies need nothing else; ``auto:BUDGET`` needs ``calibration`` (held-out batches).
    """
    parsed = parse_spec(policy)
    if not parsed.needs_data:
        return Selection(_static_sites(list(neuron_sites(model)), parsed, model, policy))
    if calibration is None:
        raise ValueError(f"hybrid policy {policy!r} needs calibration data (a held-out training split)")
    result = auto_select(model, parsed, levels, calibration, auto)
    return Selection(result.sites, result)


def select_sites(model: nn.Module, policy: str, levels: int = 15, calibration: Calibration | None = None,
                 auto: AutoConfig | None = None) -> list[str]:
    """The site names (model order) that ``policy`` chooses (:func:`select`)."""
    return select(model, policy, levels, calibration, auto).sites


def _module_device(model: nn.Module, module: nn.Module) -> torch.device:
    for t in (*module.parameters(), *module.buffers(), *model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def apply_hybrid(model: nn.Module, sites: list[str], levels: int) -> nn.Module:
    """Replace each named site by a fresh ``SpikingReLU(levels)`` in place; returns ``model``."""
    current = neuron_sites(model)
    if len(set(sites)) != len(sites):
        raise ValueError(f"apply_hybrid: duplicate site names in {sites}")
    for name in sites:
        if name not in current:
            raise ValueError(f"apply_hybrid: {name!r} is not a neuron site; sites are {list(current)}")
        if isinstance(current[name], SpikingReLU):
            raise ValueError(f"apply_hybrid: site {name!r} is already a SpikingReLU")
    for name in sites:
        device = _module_device(model, current[name])
        replace_module(model, name, SpikingReLU(levels).to(device))
    return model
