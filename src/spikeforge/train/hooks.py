"""The plug-in contract between the training engine and a training method.

A *method* (:class:`Method`: hybrid training, structural development, ...) owns one optional recipe
section. When a recipe has that section, the engine asks the method for a :class:`TrainHook` and calls
the hook at fixed points, always in registration order of the methods (:mod:`.registry`):

==============  ===============================================================================
when            call
==============  ===============================================================================
before training ``Method.prepare(ctx, saved) -> TrainHook``: may change ``ctx.model`` in place
                (replace sites, attach masks) and ``ctx.splits`` (hold out a calibration split),
                before the optimizer is built. ``saved`` is the hook's ``metadata()`` from the
                checkpoint on ``--resume`` (``None`` otherwise), so a data-driven decision is reused.
every step      ``before_step(ctx)`` (``ctx.local_batch`` / ``ctx.global_batch`` are set), forward,
                backward, optimizer step, ``after_step(ctx)``
every epoch     ``end_epoch(ctx) -> metrics``: structural changes happen here, before evaluation;
                the flat JSON-serialisable metrics are merged into the epoch's ``metrics.jsonl`` record
checkpoint      ``metadata()`` -> ``model.json`` under the section name; ``state_dict()`` -> resume state
resume          ``load_state_dict(state)`` after ``prepare``
==============  ===============================================================================

``Method.validate(cfg)`` checks the method's section when a recipe is loaded, before any data is. A
saved run is rebuilt without training: ``Method.restore(recipe, model, meta)`` rebuilds the
structure before the weights load, ``Method.finish_loading(model, meta)`` prepares the loaded model for
inference. ``Method.plots(run)`` draws the method's figures of a run directory.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch
from torch import nn

from ..data.base import DataSplits
from .distributed import Distributed
from .run_files import RunDir
from .schema import Recipe

C = TypeVar("C")
Metrics = dict[str, float]  # flat, JSON-serialisable (ints are floats to the type checker)
Metadata = dict[str, Any]  # a JSON object


@dataclass
class TrainContext:
    """What a hook sees of the running training."""

    recipe: Recipe
    model: nn.Module  # the plain model (not the DDP wrapper)
    splits: DataSplits | None  # None where a model is prepared without data (``spikeforge import``)
    device: torch.device
    world: Distributed  # rank, number of processes and collectives (a single process outside torchrun)
    optimizer: torch.optim.Optimizer | None = None  # None during prepare
    epoch: int = 0  # the current epoch, 1-based (0 before training)
    local_batch: int = 0  # samples of the current step on this process
    global_batch: int = 0  # samples of the current step on all processes together

    @property
    def epochs(self) -> int:
        return self.recipe.train.epochs

    def training_data(self, needed_for: str) -> DataSplits:
        """The data splits; a clear error names what needed them when there are none."""
        if self.splits is None:
            raise ValueError(f"{needed_for} needs the training data, which this run was prepared without")
        return self.splits

    @property
    def world_size(self) -> int:
        """Processes training together (1 outside ``torchrun``)."""
        return self.world.world


class TrainHook:
    """One method's presence in a training run; every method is a no-op unless overridden."""

    def before_step(self, ctx: TrainContext) -> None:
        """Before each step's forward pass."""

    def after_step(self, ctx: TrainContext) -> None:
        """After each optimizer step (e.g. re-apply projections)."""

    def end_epoch(self, ctx: TrainContext) -> Metrics:
        """After each epoch (``ctx.epoch``), before evaluation; returns metrics for the epoch's record."""
        return {}

    def metadata(self) -> Metadata:
        """Saved in ``model.json`` under the method's section; given back to ``restore`` and, on
        ``--resume``, to ``prepare``."""
        return {}

    def state_dict(self) -> Metadata | None:
        """JSON-serialisable state that ``--resume`` needs beyond the model's buffers."""
        return None

    def load_state_dict(self, state: Metadata) -> None:
        """Restore :meth:`state_dict` on ``--resume``."""


class Method(ABC, Generic[C]):
    """A training method: its recipe section, how it joins a training run and how a saved run is rebuilt."""

    section: str  # the recipe section name, e.g. "hybrid"
    config_type: type[C]  # the dataclass of that section

    def config(self, recipe: Recipe) -> C:
        """This method's section of ``recipe`` (raises when the recipe has none)."""
        cfg = recipe.methods.get(self.section)
        if not isinstance(cfg, self.config_type):
            raise ValueError(f"recipe {recipe.name!r} has no [{self.section}] section of type "
                             f"{self.config_type.__name__}")
        return cfg

    def validate(self, cfg: C) -> None:
        """Check this method's section before any data is loaded (raise ``RecipeError`` naming the key)."""

    @abstractmethod
    def prepare(self, ctx: TrainContext, saved: Metadata | None = None) -> TrainHook:
        """Join a training run (see the module docstring)."""

    @abstractmethod
    def restore(self, recipe: Recipe, model: nn.Module, meta: Metadata) -> None:
        """Rebuild, on a freshly built model, the structure that the hook's ``metadata()`` describes."""

    def finish_loading(self, model: nn.Module, meta: Metadata) -> None:
        """After a saved run's weights are loaded: make the model ready for inference."""

    def plots(self, run: RunDir) -> list[Path]:
        """Draw this method's figures of a run directory; returns the files written."""
        return []

    def upgrade_stored(self, section: dict[str, Any]) -> dict[str, Any]:
        """The section of a recipe stored by an older version, in the current schema."""
        return section
