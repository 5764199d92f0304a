"""Structural development as a training method: the recipe section ``[develop]`` (SD-SNN).

``prepare`` builds a :class:`~.development.Development` over the recipe's pruned layers (or the
model's defaults); its hook calls ``after_step`` after every optimizer step and ``end_epoch`` at
the end of every epoch, before evaluation. Masks, ranges and streaks are buffers (they come back
with the checkpoint); the rates and the epoch counters are the hook's resume state.

A saved run is rebuilt by ``restore`` — a compacted run's smaller widths (``model.json``
``extensions.develop.widths``), then the masked layers its metadata lists — and, once the weights are
loaded, ``finish_loading`` bakes the masks into the weights (:func:`.masking.bake_masks`).
Compacted runs written before the widths moved into the metadata carried them in the recipe as
``develop.widths``; :meth:`DevelopMethod.upgrade_stored` drops that field (the metadata holds the same).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ..train.hooks import Metadata, Method, Metrics, TrainContext, TrainHook
from ..train.run_files import RunDir
from ..train.schema import Recipe
from ..train.validate import Rule, at_least, check_rules
from .chain import resize
from .config import DevelopConfig
from .development import Development, default_layers, equip
from .masking import bake_masks
from .plot import plot_development

SECTION = "develop"
LEGACY_FIELDS = ("widths",)  # recipe fields of older versions that now live in the run's metadata


def kept_widths(meta: Metadata) -> dict[str, int]:
    """A compacted run's kept units per layer (empty for a run that was not compacted)."""
    return {str(k): int(v) for k, v in meta.get("widths", {}).items()}


class DevelopHook(TrainHook):
    """Development during a training run."""

    def __init__(self, development: Development) -> None:
        self.development = development

    def after_step(self, ctx: TrainContext) -> None:
        self.development.after_step()

    def end_epoch(self, ctx: TrainContext) -> Metrics:
        return self.development.end_epoch(ctx.epoch)

    def metadata(self) -> Metadata:
        return self.development.metadata()

    def state_dict(self) -> Metadata:
        return self.development.state_dict()

    def load_state_dict(self, state: Metadata) -> None:
        self.development.load_state_dict(state)


PERCENT = "a percentage in [0, 100]"


def percent(v: float) -> bool:
    return 0 <= v <= 100


RULES = (
    Rule("reference_epochs", at_least(1), "an integer >= 1"),
    Rule("consecutive_epochs", at_least(1), "an integer >= 1"),
    Rule("min_consecutive_epochs", at_least(1), "an integer >= 1"),
    Rule("contraction", lambda c: 0 < c <= 1, "a number in (0, 1]"),
    Rule("fc_initial_rate", percent, PERCENT),
    Rule("conv_initial_rate", percent, PERCENT),
    Rule("initial_rates", lambda r: all(percent(v) for v in r.values()), "percentages in [0, 100]"),
    Rule("max_rate", percent, PERCENT),
    Rule("fc_min_inputs", at_least(0), "an integer >= 0"),
    Rule("conv_min_inputs", at_least(0), "an integer >= 0"),
    Rule("last_rate_tau", lambda t: t > 0, "a number > 0"),
    Rule("relative_rate_tau", lambda t: t > 0, "a number > 0"),
    Rule("last_rate_divisor", lambda d: d > 0, "a number > 0"),
    Rule("fc_regen_percentile", percent, PERCENT),
    Rule("conv_regen_percentile", percent, PERCENT),
    Rule("regen_max_percentile", percent, PERCENT),
    Rule("regen_growth", lambda g: g > 0, "a number > 0"),
    Rule("fc_regen_epochs", at_least(1), "an integer >= 1"),
    Rule("conv_regen_epochs", at_least(1), "an integer >= 1"),
)


class DevelopMethod(Method[DevelopConfig]):
    """SD-SNN adaptive structural development (:mod:`spikeforge.develop`)."""

    section = SECTION
    config_type = DevelopConfig

    def validate(self, cfg: DevelopConfig) -> None:
        check_rules(cfg, RULES, SECTION)

    def prepare(self, ctx: TrainContext, saved: Metadata | None = None) -> DevelopHook:
        """Equip the pruned layers (``saved`` is unused: masks and rates come back with the checkpoint)."""
        cfg = self.config(ctx.recipe)
        layers = list(cfg.layers) or default_layers(ctx.recipe.model.name, ctx.model)
        development = Development(ctx.model, cfg, ctx.epochs, layers)
        ctx.model.to(ctx.device)
        return DevelopHook(development)

    def restore(self, recipe: Recipe, model: nn.Module, meta: Metadata) -> None:
        """Compacted widths, then the masked layers in ``meta`` (a compacted run has none)."""
        cfg = self.config(recipe)
        widths = kept_widths(meta)
        if widths:
            resize(model, widths)
        if "layers" in meta:
            names = [str(n) for n in meta["layers"]]
        else:
            names = [] if widths else (list(cfg.layers) or default_layers(recipe.model.name, model))
        equip(model, names)

    def finish_loading(self, model: nn.Module, meta: Metadata) -> None:
        bake_masks(model)

    def plots(self, run: RunDir) -> list[Path]:
        return [plot_development(run)]

    def upgrade_stored(self, section: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in section.items() if k not in LEGACY_FIELDS}


METHOD = DevelopMethod()
