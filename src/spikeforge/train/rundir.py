"""Run directories: the unit users pass between commands.

Layout written by :func:`spikeforge.train.engine.train`::

    recipe.toml        the resolved recipe (every default filled in)
    metrics.jsonl      one JSON object per epoch
    model.safetensors  weights and buffers (masks, SpikingReLU steps, BN statistics)
    model.json         {"recipe": {...}, "extensions": {section: metadata}, "epoch", "spikeforge"}
    optim.safetensors + optim.json   optimizer/scheduler/hook state for --resume
    *.png              plots
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..models import build_model
from .checkpoint import load_state_into, load_tensors, read_json, save_tensors, write_json
from .hooks import EXTENSIONS
from .recipe import Recipe, RecipeError, recipe_from_dict

MODEL_WEIGHTS = "model.safetensors"
MODEL_META = "model.json"


@dataclass
class LoadedRun:
    recipe: Recipe
    model: nn.Module
    meta: dict[str, Any]
    path: Path


def load_extension(spec: str) -> Any:
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def active_extensions(recipe: Recipe) -> list[Any]:
    """The extensions whose recipe section is present, in table order."""
    out = []
    for section, spec in EXTENSIONS.items():
        if getattr(recipe, section, None) is not None:
            out.append(load_extension(spec))
    return out


def save_model(run_dir: Path, model: nn.Module, recipe: Recipe, extensions_meta: dict[str, Any],
               extra: dict[str, Any] | None = None) -> None:
    """Write ``model.safetensors`` then ``model.json`` (each atomically)."""
    save_tensors(run_dir / MODEL_WEIGHTS, model.state_dict())
    meta = {"recipe": dataclasses.asdict(recipe), "extensions": extensions_meta, "spikeforge": __version__}
    meta.update(extra or {})
    write_json(run_dir / MODEL_META, meta)


def build_from_meta(recipe: Recipe, meta: dict[str, Any]) -> nn.Module:
    """The model's structure as recorded in ``meta`` (before weights are loaded)."""
    model = build_model(recipe.model)
    ext_meta = meta.get("extensions", {})
    for ext in active_extensions(recipe):
        ext.restore(recipe, model, ext_meta.get(ext.section, {}))
    return model


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """Rebuild a run's model with its weights, in eval mode."""
    path = Path(run_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: run directory not found")
    meta = read_json(path / MODEL_META)
    if "recipe" not in meta:
        raise ValueError(f"{path / MODEL_META}: missing field 'recipe'")
    try:
        recipe = recipe_from_dict(meta["recipe"])
    except RecipeError as e:
        raise ValueError(f"{path / MODEL_META}: recipe field invalid: {e}") from None
    model = build_from_meta(recipe, meta)
    load_state_into(model, load_tensors(path / MODEL_WEIGHTS), path / MODEL_WEIGHTS)
    model.to(device).eval()
    return LoadedRun(recipe, model, meta, path)
