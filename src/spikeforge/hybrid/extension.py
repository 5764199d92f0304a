"""The engine extension for the recipe section ``[hybrid]``.

``prepare`` resolves the site policy and replaces the chosen sites by ``SpikingReLU(levels)``
before the optimizer is built, so their steps are trained. For ``auto:BUDGET`` it first holds
out the last ``calibration_samples`` training samples: ``splits.train`` is replaced by the rest
(the engine never trains on the calibration split) and the split is encoded once into fixed
fit/eval batches for :func:`spikeforge.hybrid.policy.auto_select`. The selection is
deterministic given ``train.seed``, so a ``--resume`` (which calls ``prepare`` again on a model
built from the same seed) chooses the same sites before the checkpoint is loaded.

Each SpikingReLU initialises its step from the first training batch (LSQ: ``2·mean|x|/√L``);
the ``initialized`` flag is a saved buffer, so a restored or resumed model keeps its trained
step instead of re-initialising it.

Metadata in ``model.json``: ``{"sites", "levels", "policy", "calibration_samples", "auto"}``.
Per-epoch metrics: ``hybrid.step.<site>`` (the effective step ``|s|``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..data.base import ArrayDataset, DataSplits
from ..models import neuron_sites
from ..train.distributed import group_size
from .config import HybridConfig
from .policy import AutoConfig, Calibration, apply_hybrid, auto_select, parse_spec, static_sites
from .spiking_relu import SpikingReLU

SECTION = "hybrid"


def site_steps(model: nn.Module) -> dict[str, float]:
    """``{"hybrid.step.<site>": |s|}`` for every SpikingReLU site."""
    return {f"{SECTION}.step.{n}": float(m.step.detach().abs()) for n, m in neuron_sites(model).items()
            if isinstance(m, SpikingReLU)}


@dataclass
class HybridHook:
    sites: list[str]
    levels: int
    policy: str
    calibration_samples: int = 0
    auto: dict[str, Any] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"sites": list(self.sites), "levels": self.levels, "policy": self.policy,
                                "calibration_samples": self.calibration_samples}
        if self.auto:
            meta["auto"] = self.auto
        return meta

    def on_epoch_end(self, epoch: int, epochs: int, model: nn.Module) -> dict[str, Any]:
        return site_steps(model)


def hold_out(splits: DataSplits, samples: int) -> ArrayDataset:
    """Remove the last ``samples`` training samples from ``splits.train`` and return them."""
    train = splits.train
    if samples < 2 or samples >= len(train):
        raise ValueError(f"hybrid.calibration_samples must be in [2, {len(train)}) (the training set has "
                         f"{len(train)} samples), got {samples}")
    cut = len(train) - samples
    splits.train = ArrayDataset(train.x[:cut], train.y[:cut])
    return ArrayDataset(train.x[cut:], train.y[cut:])


def build_calibration(recipe: Any, cal: ArrayDataset, splits: DataSplits,
                      device: torch.device) -> Calibration:
    """Encode the calibration split once into fit/eval batches (fixed generator: ``train.seed``)."""
    from ..data.encode import prepare_batch
    from ..train.engine import make_optimizer
    from ..train.metrics import get_loss

    cfg: HybridConfig = recipe.hybrid
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


def same_on_every_rank(sites: list[str]) -> None:
    """Under ``torchrun`` every rank calibrates on the same held-out data; refuse if the choices differ
    (possible on GPUs with non-deterministic kernels), instead of training mismatched models."""
    if group_size() == 1:
        return
    chosen: list[list[str] | None] = [None] * group_size()
    dist.all_gather_object(chosen, list(sites))
    if any(c != chosen[0] for c in chosen):
        raise RuntimeError(f"hybrid auto selection differs between ranks: {chosen}; run the calibration in one "
                           "process and train with the chosen sites listed in hybrid.sites")


class HybridExtension:
    """Implements :class:`spikeforge.train.hooks.Extension` for ``[hybrid]``."""

    section = SECTION

    def prepare(self, recipe: Any, model: nn.Module, splits: DataSplits,
                device: torch.device, saved: dict[str, Any] | None = None) -> list[HybridHook]:
        """Replace the policy's sites; ``auto:`` calibrates first, unless ``saved`` (on ``--resume``)
        already holds the sites it chose — then only the same calibration split is held out."""
        cfg: HybridConfig = recipe.hybrid
        spec = parse_spec(cfg.sites)
        names = list(neuron_sites(model))
        if not spec.needs_data:
            sites = static_sites(names, spec, model, cfg.sites)
            apply_hybrid(model, sites, cfg.levels)
            return [HybridHook(sites, cfg.levels, cfg.sites)]
        cal_split = hold_out(splits, cfg.calibration_samples)
        if saved is not None and "sites" in saved:
            was = (saved.get("policy"), int(saved.get("levels", -1)), int(saved.get("calibration_samples", -1)))
            if was != (cfg.sites, cfg.levels, cfg.calibration_samples):
                raise ValueError(f"--resume: model.json was trained with hybrid policy {was[0]!r}, levels {was[1]}, "
                                 f"calibration_samples {was[2]}; the recipe says {cfg.sites!r}, levels {cfg.levels}, "
                                 f"calibration_samples {cfg.calibration_samples}")
            sites = [str(s) for s in saved["sites"]]
            apply_hybrid(model, sites, cfg.levels)
            return [HybridHook(sites, cfg.levels, cfg.sites, len(cal_split), dict(saved.get("auto", {})))]
        model.to(device)
        calibration = build_calibration(recipe, cal_split, splits, device)
        auto = AutoConfig(steps=cfg.calibration_steps, seed=recipe.train.seed, min_benefit=cfg.min_benefit,
                          max_sites=cfg.max_sites)
        result = auto_select(model, spec, cfg.levels, calibration, auto)
        same_on_every_rank(result.sites)
        if not result.sites:
            warnings.warn(f"hybrid policy {cfg.sites!r} selected no site (budget {result.budget_sops:.4g} "
                          f"SOPs/sample over the pure SNN's {result.base.sops:.4g}): training a pure SNN",
                          stacklevel=2)
        apply_hybrid(model, result.sites, cfg.levels)
        return [HybridHook(result.sites, cfg.levels, cfg.sites, len(cal_split), result.to_dict())]

    def restore(self, recipe: Any, model: nn.Module, meta: dict[str, Any]) -> None:
        cfg: HybridConfig = recipe.hybrid
        if "sites" in meta:
            sites = [str(s) for s in meta["sites"]]
        else:
            spec = parse_spec(cfg.sites)
            if spec.needs_data:
                raise ValueError(f"hybrid policy {cfg.sites!r}: the run's metadata lacks the chosen sites")
            sites = static_sites(list(neuron_sites(model)), spec, model, cfg.sites)
        apply_hybrid(model, sites, int(meta.get("levels", cfg.levels)))


EXTENSION = HybridExtension()
