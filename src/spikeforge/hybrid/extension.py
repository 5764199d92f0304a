"""Hybrid training as a training method: the recipe section ``[hybrid]``.

``prepare`` resolves the site policy (:func:`spikeforge.hybrid.policy.select`) and replaces the
chosen sites by ``SpikingReLU(levels)`` before the optimizer is built, so their steps are trained.
For ``auto:BUDGET`` it first holds out the last ``calibration_samples`` training samples:
``ctx.splits.train`` is replaced by the rest (the engine never trains on the calibration split) and
the split is encoded once into fixed fit/eval batches. The selection is deterministic given
``train.seed``; on ``--resume`` the sites saved in ``model.json`` are reused (no calibration).

Each SpikingReLU initialises its step from the first training batch (LSQ: ``2·mean|x|/√L``); the
``initialized`` flag is a saved buffer, so a restored or resumed model keeps its trained step. Before
every step the hook tells each unit its share of the global batch (:class:`BatchShare`), so LSQ's
statistics are over the global batch under ``torchrun`` while the unit itself stays a plain module.

Metadata in ``model.json``: ``{"sites", "levels", "policy", "calibration_samples", "auto"}``.
Per-epoch metrics: ``hybrid.step.<site>`` (the effective step ``|s|``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..data.base import ArrayDataset, DataSplits
from ..data.encode import prepare_batch
from ..models import neuron_sites
from ..train.distributed import Distributed
from ..train.hooks import Metadata, Method, Metrics, TrainContext, TrainHook
from ..train.metrics import get_loss
from ..train.optim import make_optimizer
from ..train.schema import Recipe, RecipeError
from ..train.validate import Rule, at_least, check_rules
from .config import HybridConfig
from .policy import AutoConfig, Calibration, apply_hybrid, parse_spec, select, select_sites
from .spiking_relu import BatchShare, SpikingReLU

SECTION = "hybrid"


def spiking_relus(model: nn.Module) -> dict[str, SpikingReLU]:
    return {n: m for n, m in neuron_sites(model).items() if isinstance(m, SpikingReLU)}


def site_steps(model: nn.Module) -> Metrics:
    """``{"hybrid.step.<site>": |s|}`` for every SpikingReLU site."""
    return {f"{SECTION}.step.{n}": float(m.step.detach().abs()) for n, m in spiking_relus(model).items()}


@dataclass
class HybridHook(TrainHook):
    """The chosen sites of a training run, and the batch share its SpikingReLU units are told each step."""

    sites: list[str]
    levels: int
    policy: str
    calibration_samples: int = 0
    auto: dict[str, Any] = field(default_factory=dict)
    units: list[SpikingReLU] = field(default_factory=list, repr=False)

    def before_step(self, ctx: TrainContext) -> None:
        share = BatchShare(ctx.local_batch, ctx.global_batch, ctx.world.all_sum)
        for unit in self.units:
            unit.share = share

    def end_epoch(self, ctx: TrainContext) -> Metrics:
        return site_steps(ctx.model)

    def metadata(self) -> Metadata:
        meta: Metadata = {"sites": list(self.sites), "levels": self.levels, "policy": self.policy,
                          "calibration_samples": self.calibration_samples}
        if self.auto:
            meta["auto"] = self.auto
        return meta


def hold_out(splits: DataSplits, samples: int) -> ArrayDataset:
    """Remove the last ``samples`` training samples from ``splits.train`` and return them."""
    train = splits.train
    if samples < 2 or samples >= len(train):
        raise ValueError(f"hybrid.calibration_samples must be in [2, {len(train)}) (the training set has "
                         f"{len(train)} samples), got {samples}")
    cut = len(train) - samples
    splits.train = ArrayDataset(train.x[:cut], train.y[:cut])
    return ArrayDataset(train.x[cut:], train.y[cut:])


def build_calibration(recipe: Recipe, cfg: HybridConfig, cal: ArrayDataset, splits: DataSplits,
                      device: torch.device) -> Calibration:
    """Encode the calibration split once into fit/eval batches (fixed generator: ``train.seed``)."""
    if not 0.0 < cfg.calibration_fit_fraction < 1.0:
        raise ValueError("hybrid.calibration_fit_fraction must be in (0, 1), "
                         f"got {cfg.calibration_fit_fraction}")
    if cfg.calibration_batch_size < 1 or cfg.calibration_steps < 1:
        raise ValueError("hybrid.calibration_batch_size and hybrid.calibration_steps must be >= 1")
    n_fit = max(1, min(len(cal) - 1, round(len(cal) * cfg.calibration_fit_fraction)))
    gen = torch.Generator(device=device).manual_seed(recipe.train.seed)
    bs = cfg.calibration_batch_size

    def encode(lo: int, hi: int, train: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out = []
        for i in range(lo, hi, bs):
            j = min(i + bs, hi)
            x, y = cal.x[i:j].to(device), cal.y[i:j].to(device)
            out.append((prepare_batch(x, splits.info, recipe.data, None, gen, train=train), y))
        return out

    loss = get_loss(recipe.train.loss)
    smoothing = recipe.train.label_smoothing
    return Calibration(fit=encode(0, n_fit, True), eval=encode(n_fit, len(cal), False),
                       loss_fn=lambda out, y: loss(out, y, smoothing),
                       make_optimizer=lambda params: make_optimizer(params, recipe.train.optimizer))


def same_on_every_rank(world: Distributed, sites: list[str]) -> None:
    """Under ``torchrun`` every rank calibrates on the same held-out data; refuse if the choices differ
    (possible on GPUs with non-deterministic kernels), instead of training mismatched models."""
    chosen = world.gather(list(sites))
    if any(c != chosen[0] for c in chosen):
        raise RuntimeError(f"hybrid auto selection differs between ranks: {chosen}; run the calibration in one "
                           "process and train with the chosen sites listed in hybrid.sites")


def _check_saved(saved: Metadata, cfg: HybridConfig) -> list[str]:
    """The sites an earlier run of the same ``auto:`` policy chose (``--resume``)."""
    was = (saved.get("policy"), int(saved.get("levels", -1)), int(saved.get("calibration_samples", -1)))
    if was != (cfg.sites, cfg.levels, cfg.calibration_samples):
        raise ValueError(f"--resume: model.json was trained with hybrid policy {was[0]!r}, levels {was[1]}, "
                         f"calibration_samples {was[2]}; the recipe says {cfg.sites!r}, levels {cfg.levels}, "
                         f"calibration_samples {cfg.calibration_samples}")
    return [str(s) for s in saved["sites"]]


RULES = (
    Rule("levels", at_least(1), "an integer >= 1"),
    Rule("calibration_samples", at_least(0), "an integer >= 0"),
    Rule("calibration_fit_fraction", lambda f: 0 < f < 1, "a number in (0, 1)"),
    Rule("calibration_batch_size", at_least(1), "an integer >= 1"),
    Rule("calibration_steps", at_least(1), "an integer >= 1"),
    Rule("min_benefit", at_least(0), "a number >= 0"),
    Rule("max_sites", at_least(0), "an integer >= 0 (0 = no limit)"),
)


class HybridMethod(Method[HybridConfig]):
    """SpikingReLU sites chosen by a policy (:mod:`spikeforge.hybrid`)."""

    section = SECTION
    config_type = HybridConfig

    def validate(self, cfg: HybridConfig) -> None:
        check_rules(cfg, RULES, SECTION)
        try:
            parse_spec(cfg.sites)
        except ValueError as e:
            raise RecipeError(f"{SECTION}.sites: {e}") from None

    def _hooked(self, model: nn.Module, sites: list[str], cfg: HybridConfig, calibration_samples: int = 0,
                auto: dict[str, Any] | None = None) -> HybridHook:
        apply_hybrid(model, sites, cfg.levels)
        return HybridHook(sites, cfg.levels, cfg.sites, calibration_samples, auto or {},
                          list(spiking_relus(model).values()))

    def prepare(self, ctx: TrainContext, saved: Metadata | None = None) -> HybridHook:
        """Replace the policy's sites; ``auto:`` calibrates first, unless ``saved`` (on ``--resume``)
        already holds the sites it chose — then only the same calibration split is held out."""
        cfg = self.config(ctx.recipe)
        if not parse_spec(cfg.sites).needs_data:
            return self._hooked(ctx.model, select_sites(ctx.model, cfg.sites), cfg)
        splits = ctx.training_data(f"hybrid policy {cfg.sites!r}")
        cal_split = hold_out(splits, cfg.calibration_samples)
        if saved is not None and "sites" in saved:
            return self._hooked(ctx.model, _check_saved(saved, cfg), cfg, len(cal_split), dict(saved.get("auto", {})))
        ctx.model.to(ctx.device)
        calibration = build_calibration(ctx.recipe, cfg, cal_split, splits, ctx.device)
        auto = AutoConfig(steps=cfg.calibration_steps, seed=ctx.recipe.train.seed, min_benefit=cfg.min_benefit,
                          max_sites=cfg.max_sites)
        chosen = select(ctx.model, cfg.sites, cfg.levels, calibration, auto)
        same_on_every_rank(ctx.world, chosen.sites)
        assert chosen.auto is not None  # an auto: policy
        if not chosen.sites:
            warnings.warn(f"hybrid policy {cfg.sites!r} selected no site (budget {chosen.auto.budget_sops:.4g} "
                          f"SOPs/sample over the pure SNN's {chosen.auto.base.sops:.4g}): training a pure SNN",
                          stacklevel=2)
        return self._hooked(ctx.model, chosen.sites, cfg, len(cal_split), chosen.auto.to_dict())

    def restore(self, recipe: Recipe, model: nn.Module, meta: Metadata) -> None:
        cfg = self.config(recipe)
        if "sites" in meta:
            sites = [str(s) for s in meta["sites"]]
        elif parse_spec(cfg.sites).needs_data:
            raise ValueError(f"hybrid policy {cfg.sites!r}: the run's metadata lacks the chosen sites")
        else:
            sites = select_sites(model, cfg.sites)
        apply_hybrid(model, sites, int(meta.get("levels", cfg.levels)))


METHOD = HybridMethod()
