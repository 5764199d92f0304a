"""``spikeforge import``: a NIR file → a run directory that every other command accepts.

The run directory is what ``spikeforge train`` writes after epoch 0 of a run that starts from the
imported weights:

    recipe.toml / model.json["recipe"]   the recipe (``--recipe``, ``--set``) with ``[model] name = "nir"``,
                                         ``graph`` = the graph's structure (JSON), input/classes from it
    model.safetensors                    the weights and per-neuron parameters
    optim.json / optim.safetensors       a fresh optimizer at epoch 0 (``train --resume`` fine-tunes)
    model.json["imported_from"]          the source file, the producer profile and the semantics used

With a ``[develop]`` (or ``[hybrid]``) section the extension equips the model before it is saved,
exactly as training does, so ``train --resume`` continues with structural development.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from ..train.checkpoint import load_state_into
from ..train.recipe import Recipe, _set_path, load_recipe, parse_override, recipe_from_dict, to_toml
from .load import spec_and_tensors
from .semantics import Semantics
from .spec import GraphSpec

IMAGE_DIMS = 3  # [C, H, W]
CPU = torch.device("cpu")


def recipe_with_overrides(recipe: str | None, overrides: list[str]) -> Recipe:
    """A packaged recipe / TOML file with ``--set`` overrides, or (no recipe) the defaults with them."""
    if recipe:
        return load_recipe(recipe, overrides)
    doc: dict[str, Any] = {}
    for text in overrides:
        _set_path(doc, *parse_override(text))
    return recipe_from_dict(doc)


def fit_model_section(recipe: Recipe, spec: GraphSpec) -> None:
    """``[model]`` of an imported graph: kind ``nir``, the structure, and the geometry the graph fixes."""
    m = recipe.model
    m.name, m.graph = "nir", spec.to_json()
    shape, out = spec.input_shape, spec.output_shape
    if len(shape) == IMAGE_DIMS and shape[1] == shape[2]:
        m.in_channels, m.input_size = shape[0], shape[1]
    if out:
        m.num_classes = out[-1]


def import_run(nir_path: str | Path, out_dir: str | Path, recipe: str | None = None,
               overrides: list[str] | None = None, profile: str | None = None,
               semantics: Semantics | None = None, **choices: Any) -> dict[str, Any]:
    """Write the run directory ``out_dir`` for the NIR graph in ``nir_path``; returns a summary.

    ``profile`` and ``choices`` (``dt``, ``reset``, ``fire``, ``spikes``; None = the profile's) or a
    whole ``semantics`` say how the graph is discretised (:func:`spikeforge.nir.load`)."""
    from ..models import build_model
    from ..train.distributed import Distributed
    from ..train.hooks import TrainContext
    from ..train.optim import make_optimizer
    from ..train.run_files import RunDir
    from ..train.session import commit_checkpoint, prepare_methods

    run = RunDir(out_dir)
    if run.holds_model():
        raise FileExistsError(f"{run} already holds a run; choose another --out")
    spec, tensors = spec_and_tensors(nir_path, semantics, profile, **choices)
    rec = recipe_with_overrides(recipe, list(overrides or []))
    if not rec.name:
        rec.name = f"import-{Path(nir_path).stem}"
    fit_model_section(rec, spec)
    model = build_model(rec.model)
    load_state_into(model, tensors, Path(nir_path))
    ctx = TrainContext(rec, model, None, CPU, Distributed())
    hooks = prepare_methods(ctx, None)  # equip masks etc. as training would, before saving
    ctx.optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], rec.train.optimizer)
    run.create()
    source = {"file": str(Path(nir_path).resolve()), "semantics": spec.semantics.to_dict()}
    commit_checkpoint(run, ctx, hooks, 0, 0.0, {"imported_from": source})
    run.write_recipe(to_toml(rec))
    types: dict[str, int] = {}
    for n in spec.nodes:
        types[n.type] = types.get(n.type, 0) + 1
    return {"run_dir": str(run), "source": str(nir_path), "model_class": type(model).__name__,
            "nodes": len(spec.nodes), "edges": len(spec.edges), "node_types": dict(sorted(types.items())),
            "input_shape": spec.input_shape, "output_shape": spec.output_shape,
            "parameters": sum(p.numel() for p in model.parameters()),
            "semantics": dataclasses.asdict(spec.semantics), "recipe": rec.name,
            "extensions": sorted(hooks)}
