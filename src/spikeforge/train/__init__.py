"""Training: recipes, the engine, run directories and the plug-in contract of training methods.

- :mod:`.recipe` / :mod:`.schema` / :mod:`.validate`: recipes (TOML) validated into :class:`Recipe`;
- :mod:`.engine`: ``train(recipe, run_dir)`` (:mod:`.start` checks and locks the run directory,
  :mod:`.session` opens a run, :mod:`.epoch` trains and ends epochs, :mod:`.numerics` stops on
  non-finite numbers, :mod:`.evaluate` measures);
- :mod:`.hooks` / :mod:`.registry`: how a method (hybrid, structural development, yours) joins training;
- :mod:`.run_files` / :mod:`.rundir`: a run directory's files (:mod:`.checkpoint_store`: its committed
  checkpoints, :mod:`.run_lock`: its lock) and ``load_run``; :mod:`.provenance`: the data it was
  trained on; :mod:`.report`: its plots;
- :mod:`.distributed`: data parallelism under ``torchrun``.

Importing this package loads no training method (the registry loads them when first asked) and not even
the engine: ``spikeforge.export`` uses :mod:`.checkpoint`, so the names below load from their modules
on first use (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine import evaluate_model, fit_recipe_to_data, lr_factor, make_optimizer, resolve_device, train
    from .hooks import Metadata, Method, Metrics, TrainContext, TrainHook
    from .recipe import Recipe, RecipeError, load_recipe, packaged_recipes, recipe_from_dict, recipe_to_dict, to_toml
    from .registry import active_methods, method_for, register_method, registered_methods, unregister_method
    from .report import plot_run
    from .run_files import Checkpoint, RunDir
    from .rundir import LoadedRun, build_from_meta, load_run, save_model, stored_recipe

__all__ = [
    "Checkpoint", "LoadedRun", "Metadata", "Method", "Metrics", "Recipe", "RecipeError", "RunDir", "TrainContext",
    "TrainHook", "active_methods", "build_from_meta", "evaluate_model", "fit_recipe_to_data", "load_recipe",
    "load_run", "lr_factor", "make_optimizer", "method_for", "packaged_recipes", "plot_run", "recipe_from_dict",
    "recipe_to_dict", "register_method", "registered_methods", "resolve_device", "save_model", "stored_recipe",
    "to_toml", "train", "unregister_method",
]
_MODULES = ("hooks", "recipe", "registry", "run_files", "rundir", "report", "engine")  # where the names live


def __getattr__(name: str) -> Any:
    if name in __all__:
        for module in _MODULES:
            found = getattr(importlib.import_module(f".{module}", __name__), name, None)
            if found is not None:
                return found
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
