"""A run directory's files: :class:`RunDir` alone knows their names and reads or writes them.

Layout (written by :func:`spikeforge.train.engine.train`)::

    recipe.toml        the resolved recipe (every default filled in)
    metrics.jsonl      one JSON object per epoch
    model.safetensors  weights and buffers (masks, SpikingReLU steps, BN statistics)
    model.json         {"recipe": {...}, "extensions": {section: metadata}, "epoch", "best_accuracy", "spikeforge"}
    optim.safetensors  optimizer tensors ┐ for --resume; optim.json is written last: it is the commit
    optim.json         optimizer rest,   ┘ marker of an epoch's checkpoint (its epoch must match model.json's)
                       best accuracy, hook states
    *.png, *.json      artifacts: plots and reports, named by the code that draws or writes them

Callers speak of a run's recipe, metrics, model and checkpoint, never of files, so the layout can
change here alone. Every write is atomic (:mod:`.checkpoint`); nothing is unpickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from .checkpoint import (
    atomic_write_text,
    load_state_into,
    load_tensors,
    optimizer_from_files,
    optimizer_to_files,
    read_json,
    read_toml,
    save_tensors,
    write_json,
)

JsonObject = dict[str, Any]


@dataclass(frozen=True)
class Checkpoint:
    """The last committed epoch of a run: what ``--resume`` continues from."""

    epoch: int
    best_accuracy: float
    model_meta: JsonObject  # model.json
    optimizer: JsonObject  # the optimizer state without its tensors
    hook_states: dict[str, list[Any]]  # method section -> [its hook's state_dict()]

    def methods_meta(self) -> dict[str, JsonObject]:
        return dict(self.model_meta.get("extensions", {}))


class RunDir:
    """The run directory at ``path`` (see the module docstring for its files)."""

    RECIPE = "recipe.toml"
    METRICS = "metrics.jsonl"
    MODEL_WEIGHTS = "model.safetensors"
    MODEL_META = "model.json"
    OPTIM_WEIGHTS = "optim.safetensors"
    OPTIM_META = "optim.json"
    TRAINING_PLOT = "training.png"
    CORE_FILES = (RECIPE, METRICS, MODEL_WEIGHTS, MODEL_META, OPTIM_WEIGHTS, OPTIM_META)

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # -- what the directory holds -------------------------------------------------------------------
    def holds_training(self) -> bool:
        """A training run has written into it (metrics exist)."""
        return (self.path / self.METRICS).exists()

    def holds_model(self) -> bool:
        return (self.path / self.MODEL_META).exists()

    def check_can_start(self, resume: bool) -> None:
        """Refuse to train over an existing run, or to resume without a checkpoint."""
        marker = self.path / self.OPTIM_META
        if resume and not marker.is_file():
            raise FileNotFoundError(f"--resume: {marker} not found (nothing to resume)")
        if not resume and self.holds_training():
            raise FileExistsError(f"{self.path} already holds a run; pass --resume or choose another --out")

    def check_new_model(self) -> None:
        """Refuse to write a model over an existing one (outputs of compact & co. are new directories)."""
        if self.holds_model():
            raise FileExistsError(f"{self.path} already holds a model; choose another --out")

    def create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    # -- recipe ------------------------------------------------------------------------------------
    def write_recipe(self, toml_text: str) -> None:
        atomic_write_text(self.path / self.RECIPE, toml_text)

    def read_recipe_document(self) -> Any:
        """The resolved recipe as a table: from ``model.json`` when there is one, else ``recipe.toml``."""
        if self.holds_model():
            return self.read_model_meta().get("recipe")
        if not (self.path / self.RECIPE).is_file():
            raise FileNotFoundError(f"{self.path}: no {self.MODEL_META} or {self.RECIPE} (is this a run directory?)")
        return read_toml(self.path / self.RECIPE)

    def recipe_source(self) -> str:
        """Where :meth:`read_recipe_document` reads from (for error messages)."""
        return str(self.path / (self.MODEL_META if self.holds_model() else self.RECIPE))

    # -- metrics -----------------------------------------------------------------------------------
    def read_metrics(self) -> list[JsonObject]:
        path = self.path / self.METRICS
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no metrics (is this a run directory?)")
        records = []
        for i, line in enumerate(path.read_text().splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{i}: not valid JSON ({e})") from None
        return records

    def append_metrics(self, record: JsonObject) -> None:
        with open(self.path / self.METRICS, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")

    def truncate_metrics(self, last_epoch: int) -> None:
        """Drop records of epochs after ``last_epoch`` (a crash between a record and its checkpoint)."""
        path = self.path / self.METRICS
        if not path.is_file():
            return
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        keep = [line for line in lines if json.loads(line)["epoch"] <= last_epoch]
        atomic_write_text(path, "".join(line + "\n" for line in keep))

    # -- model -------------------------------------------------------------------------------------
    def save_model(self, state: dict[str, torch.Tensor], recipe: JsonObject, methods_meta: dict[str, JsonObject],
                   extra: JsonObject | None = None) -> None:
        """Write the weights, then ``model.json`` with the recipe and each method's metadata."""
        save_tensors(self.path / self.MODEL_WEIGHTS, state)
        meta = {"recipe": recipe, "extensions": methods_meta, "spikeforge": __version__, **(extra or {})}
        write_json(self.path / self.MODEL_META, meta)

    def read_model_meta(self) -> JsonObject:
        meta = read_json(self.path / self.MODEL_META)
        if not isinstance(meta, dict):
            raise ValueError(f"{self.path / self.MODEL_META}: expected a JSON object")
        return meta

    def method_meta(self, section: str) -> JsonObject:
        """The metadata the method ``section`` saved with the model (empty if none)."""
        return dict(self.read_model_meta().get("extensions", {}).get(section, {}))

    def load_weights_into(self, model: nn.Module, device: str | torch.device = "cpu") -> None:
        """Load ``model.safetensors`` into ``model`` strictly (errors name the file and the keys)."""
        path = self.path / self.MODEL_WEIGHTS
        load_state_into(model, load_tensors(path, device), path)

    def weights_path(self) -> Path:
        """The weights file (for messages and for checks that load a given state against it)."""
        return self.path / self.MODEL_WEIGHTS

    # -- checkpoints -------------------------------------------------------------------------------
    def commit_checkpoint(self, model: nn.Module, optimizer: torch.optim.Optimizer, recipe: JsonObject,
                          methods_meta: dict[str, JsonObject], hook_states: dict[str, list[Any]], epoch: int,
                          best_accuracy: float, extra: JsonObject | None = None) -> None:
        """Save epoch ``epoch``'s model, optimizer and hook states; ``optim.json`` last (the commit marker).

        ``extra``: further ``model.json`` fields (an imported run's source)."""
        self.save_model(model.state_dict(), recipe, methods_meta,
                        {**(extra or {}), "epoch": epoch, "best_accuracy": best_accuracy})
        tensors, rest = optimizer_to_files(optimizer)
        save_tensors(self.path / self.OPTIM_WEIGHTS, tensors)
        write_json(self.path / self.OPTIM_META, {"optimizer": rest, "epoch": epoch, "best_accuracy": best_accuracy,
                                                 "hooks": hook_states})

    def last_checkpoint(self) -> Checkpoint:
        """The last committed epoch; refuses a checkpoint whose files belong to different epochs."""
        model_meta = self.read_model_meta()
        state = read_json(self.path / self.OPTIM_META)
        if model_meta.get("epoch") != state["epoch"]:
            raise ValueError(f"{self.path}: model.json is at epoch {model_meta.get('epoch')} but optim.json at "
                             f"{state['epoch']} (interrupted checkpoint); cannot resume exactly")
        return Checkpoint(int(state["epoch"]), float(state["best_accuracy"]), model_meta, state["optimizer"],
                          dict(state.get("hooks", {})))

    def load_optimizer_into(self, optimizer: torch.optim.Optimizer, checkpoint: Checkpoint) -> None:
        optimizer_from_files(optimizer, load_tensors(self.path / self.OPTIM_WEIGHTS, "cpu"), checkpoint.optimizer)

    def hook_state_source(self) -> str:
        """Where hook states live (for error messages)."""
        return str(self.path / self.OPTIM_META)

    # -- artifacts ---------------------------------------------------------------------------------
    def artifact(self, name: str) -> Path:
        """The path of a plot or report named ``name`` (a plain file name, not one of the core files)."""
        if Path(name).name != name or name in self.CORE_FILES:
            raise ValueError(f"{name!r} is not a valid artifact name in a run directory")
        return self.path / name

    def write_json_artifact(self, name: str, obj: Any) -> Path:
        path = self.artifact(name)
        write_json(path, obj)
        return path
