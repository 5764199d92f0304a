"""Loading a run directory's model: the unit users pass between commands.

:func:`load_run` reads the stored recipe, builds the model, lets every method of the recipe restore
its structure (hybrid sites, masks, compacted widths; :meth:`Method.restore`), loads the weights
strictly (checked finite), then lets each method finish (structural development bakes its masks into the weights:
:meth:`Method.finish_loading`). The files themselves belong to :class:`~.run_files.RunDir`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.base import DataSplits
from ..models import build_model
from .recipe import Recipe, RecipeError, recipe_from_dict, recipe_to_dict
from .registry import active_methods
from .run_files import BEST, LATEST, RunDir

__all__ = ["LoadedRun", "RunDir", "build_from_meta", "load_run", "save_model", "stored_recipe"]


@dataclass
class LoadedRun:
    recipe: Recipe
    model: nn.Module
    meta: dict[str, Any]  # model.json
    path: Path
    checkpoint: Path | None = None  # the checkpoint folder the model came from

    def method_meta(self, section: str) -> dict[str, Any]:
        """The metadata method ``section`` saved with the model (empty if none)."""
        return dict(self.meta.get("extensions", {}).get(section, {}))

    def load_data(self, data_root: str | Path | None = None) -> DataSplits:
        """The run's dataset, by default from the folder it was trained on, compared with the data it recorded
        (:mod:`.provenance`: warnings name what differs, another shape or class list is an error)."""
        from .provenance import load_run_data

        return load_run_data(RunDir(self.path), self.recipe, data_root)


def parse_stored_recipe(doc: Any, source: str) -> Recipe:
    """A recipe table written into a run directory by any spikeforge version; errors name ``source``."""
    if not isinstance(doc, dict):
        raise ValueError(f"{source}: missing field 'recipe'")
    try:
        return recipe_from_dict(doc, stored=True)
    except RecipeError as e:
        raise ValueError(f"{source}: recipe field invalid: {e}") from None


def stored_recipe(run: RunDir) -> Recipe:
    """The resolved recipe a run directory holds."""
    return parse_stored_recipe(run.read_recipe_document(), run.recipe_source())


def build_from_meta(recipe: Recipe, meta: dict[str, Any]) -> nn.Module:
    """The model's structure as recorded in ``meta`` (``model.json``), before the weights are loaded."""
    model = build_model(recipe.model)
    methods_meta = meta.get("extensions", {})
    for method in active_methods(recipe):
        method.restore(recipe, model, methods_meta.get(method.section, {}))
    return model


def load_run(run_dir: str | Path, device: str | torch.device = "cpu", best: bool = False) -> LoadedRun:
    """Rebuild a run's model with its weights, ready for inference (eval mode): from its latest
    checkpoint, or (``best``) from the one with the highest test accuracy."""
    run = RunDir(run_dir, BEST if best else LATEST)
    if not run.path.is_dir():
        raise FileNotFoundError(f"{run.path}: run directory not found" if not run.path.exists()
                                else f"{run.path}: not a run directory (a file)")
    meta = run.read_model_meta()
    recipe = parse_stored_recipe(meta.get("recipe"), run.recipe_source())
    model = build_from_meta(recipe, meta)
    run.load_weights_into(model)
    for method in active_methods(recipe):
        method.finish_loading(model, meta.get("extensions", {}).get(method.section, {}))
    model.to(device).eval()
    return LoadedRun(recipe, model, meta, run.path, run.checkpoint_folder())


def save_model(run_dir: str | Path, model: nn.Module, recipe: Recipe, methods_meta: dict[str, Any],
               extra: dict[str, Any] | None = None) -> None:
    """Write a model (no optimizer) into a run directory: weights, then ``model.json``."""
    RunDir(run_dir).save_model(model.state_dict(), recipe_to_dict(recipe), methods_meta, extra)
