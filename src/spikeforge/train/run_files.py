"""A run directory's files: :class:`RunDir` alone knows their names and reads or writes them.

Layout (written by :func:`spikeforge.train.engine.train`)::

    recipe.toml            the resolved recipe (every default filled in, the absolute data folder)
    data.json              the fingerprint of the data it was trained on (spikeforge.data.fingerprint)
    metrics.jsonl          one JSON object per epoch
    checkpoints/           one folder per kept epoch, committed as one (:mod:`.checkpoint_store`):
      epoch-0007/          model.safetensors  weights and buffers (masks, SpikingReLU steps, BN statistics)
                           model.json         {"recipe", "extensions": {section: metadata}, "epoch", "best_accuracy",
                                               "spikeforge"}
                           optim.safetensors  optimizer tensors ┐ for --resume (absent in model-only runs
                           optim.json         optimizer rest,   ┘ such as compact's): hook states, best accuracy
                           manifest.json      sizes and SHA-256 of the above, written last
      latest, best         which checkpoint is the last committed one / has the best test accuracy
    train.lock             while a process trains here (:mod:`.run_lock`)
    *.png, *.json          artifacts: plots and reports, named by the code that draws or writes them

Run directories written before checkpoints had their own folders keep ``model.*`` and ``optim.*``
at the top (the *flat* layout); they load and resume as before, and the first new checkpoint
replaces those files. Callers speak of a run's recipe, metrics, model and checkpoint, never of
files, so the layout can change here alone. Every write is atomic; nothing is unpickled; every
tensor read is checked to be finite.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..atomic import append_line, atomic_write_text, fsync_dir, json_text, read_json, read_toml, write_json
from .checkpoint import (
    check_finite,
    load_state_into,
    load_tensors,
    optimizer_from_files,
    optimizer_to_files,
    save_tensors,
)
from .checkpoint_store import CheckpointError, CheckpointStore, Manifest
from .run_lock import LockInfo, RunLock, holder

JsonObject = dict[str, Any]
LATEST, BEST = "latest", "best"  # which checkpoint a RunDir reads its model from


@dataclass(frozen=True)
class Checkpoint:
    """The last committed epoch of a run: what ``--resume`` continues from."""

    epoch: int
    best_accuracy: float
    model_meta: JsonObject  # model.json
    optimizer: JsonObject  # the optimizer state without its tensors
    hook_states: dict[str, list[Any]]  # method section -> [its hook's state_dict()]
    folder: Path  # where its files are
    skipped_steps: int = 0  # non-finite steps skipped so far (train.skip_nonfinite_steps)

    def methods_meta(self) -> dict[str, JsonObject]:
        return dict(self.model_meta.get("extensions", {}))


class RunDir:
    """The run directory at ``path``; ``which`` = ``"latest"`` or ``"best"``: the checkpoint its model
    reads come from (see the module docstring for its files)."""

    RECIPE = "recipe.toml"
    DATA = "data.json"
    METRICS = "metrics.jsonl"
    CHECKPOINTS = "checkpoints"
    LOCK = "train.lock"
    MODEL_WEIGHTS = "model.safetensors"
    MODEL_META = "model.json"
    OPTIM_WEIGHTS = "optim.safetensors"
    OPTIM_META = "optim.json"
    TRAINING_PLOT = "training.png"
    MODEL_FILES = (MODEL_WEIGHTS, MODEL_META)
    RESUME_FILES = (MODEL_WEIGHTS, MODEL_META, OPTIM_WEIGHTS, OPTIM_META)
    CORE_FILES = (RECIPE, DATA, METRICS, CHECKPOINTS, LOCK, *RESUME_FILES)
    MARKERS = (RECIPE, METRICS, MODEL_META, CHECKPOINTS, LOCK)  # any of them: a run directory

    def __init__(self, path: str | Path, which: str = LATEST) -> None:
        if which not in (LATEST, BEST):
            raise ValueError(f"which checkpoint: expected {LATEST!r} or {BEST!r}, got {which!r}")
        self.path = Path(path)
        self.which = which
        self.store = CheckpointStore(self.path / self.CHECKPOINTS)
        self._folder: Path | None = None  # the checkpoint folder model reads use, once resolved

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # -- what the directory holds -------------------------------------------------------------------
    @classmethod
    def is_run_directory(cls, path: Path) -> bool:
        return path.is_dir() and any((path / name).exists() for name in cls.MARKERS)

    def exists(self) -> bool:
        return self.path.exists()

    def is_empty(self) -> bool:
        return self.path.is_dir() and not any(self.path.iterdir())

    def owns(self, path: Path) -> bool:
        """Whether ``path`` is one of this run's own files or folders (never an output of another command)."""
        try:
            rel = path.resolve().relative_to(self.path.resolve())
        except ValueError:
            return False
        return bool(rel.parts) and rel.parts[0] in self.CORE_FILES

    def holds_training(self) -> bool:
        """A training run has started here (metrics, a checkpoint or a lock exist)."""
        return any((self.path / n).exists() for n in (self.METRICS, self.CHECKPOINTS, self.LOCK, self.OPTIM_META))

    def holds_model(self) -> bool:
        return self.store.exists() or self._flat()

    def _flat(self) -> bool:
        """An old (flat) layout: the model files at the top, no committed checkpoint folder."""
        return not self.store.exists() and (self.path / self.MODEL_META).is_file()

    def committed_epoch(self) -> int | None:
        """The epoch of the last committed checkpoint (no file is verified; ``None``: none)."""
        if self.store.exists():
            return self.store.latest_epoch()
        if self._flat():
            epoch = read_json(self.path / self.MODEL_META).get("epoch")
            return int(epoch) if isinstance(epoch, int) else None
        return None

    def check_new_model(self) -> None:
        """Refuse to write a model over an existing one (outputs of compact & co. are new directories)."""
        if self.holds_model():
            raise FileExistsError(f"{self.path} already holds a model; choose another --out")

    def create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    # -- lock --------------------------------------------------------------------------------------
    def lock(self) -> RunLock:
        """Take the training lock (creates the directory); see :mod:`.run_lock`."""
        self.create()
        return RunLock.acquire(self.path / self.LOCK)

    def lock_holder(self) -> LockInfo | None:
        """The process training here now (``None`` when nobody does)."""
        return holder(self.path / self.LOCK)

    # -- recipe and data ---------------------------------------------------------------------------
    def write_recipe(self, toml_text: str) -> None:
        atomic_write_text(self.path / self.RECIPE, toml_text)

    def recipe_path(self) -> Path:
        return self.path / self.RECIPE

    def read_recipe_document(self) -> Any:
        """The resolved recipe as a table: from the model's ``model.json`` when there is one, else ``recipe.toml``."""
        if self.holds_model():
            return self.read_model_meta().get("recipe")
        if not (self.path / self.RECIPE).is_file():
            raise FileNotFoundError(f"{self.path}: no {self.MODEL_META} or {self.RECIPE} (is this a run directory?)")
        return read_toml(self.path / self.RECIPE)

    def recipe_source(self) -> str:
        """Where :meth:`read_recipe_document` reads from (for error messages)."""
        return str(self._model_file(self.MODEL_META) if self.holds_model() else self.path / self.RECIPE)

    def write_data_fingerprint(self, doc: JsonObject) -> None:
        write_json(self.path / self.DATA, doc)

    def read_data_fingerprint(self) -> tuple[JsonObject | None, str]:
        """The recorded data fingerprint (``None`` for runs written before it was recorded) and its file."""
        path = self.path / self.DATA
        return (read_json(path) if path.is_file() else None), str(path)

    # -- metrics -----------------------------------------------------------------------------------
    def _metric_lines(self) -> list[str]:
        """The lines of ``metrics.jsonl``; a torn last line (a crash while it was appended) is left out."""
        text = (self.path / self.METRICS).read_text()
        lines = text.splitlines()
        if lines and not text.endswith("\n"):
            try:
                json.loads(lines[-1])
            except json.JSONDecodeError:
                lines.pop()
        return [line for line in lines if line.strip()]

    def read_metrics(self) -> list[JsonObject]:
        path = self.path / self.METRICS
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no metrics (is this a run directory?)")
        records = []
        for i, line in enumerate(self._metric_lines(), start=1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{i}: not valid JSON ({e})") from None
        return records

    def append_metrics(self, record: JsonObject) -> None:
        append_line(self.path / self.METRICS, json_text(record, self.path / self.METRICS))

    def truncate_metrics(self, last_epoch: int) -> None:
        """Drop records of epochs after ``last_epoch`` and a torn last line (a crash before the checkpoint)."""
        path = self.path / self.METRICS
        if not path.is_file():
            return
        keep = []
        for line in self._metric_lines():
            try:
                if int(json.loads(line)["epoch"]) <= last_epoch:
                    keep.append(line)
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                raise ValueError(f"{path}: a record without a valid epoch: {line[:80]!r}") from None
        new = "".join(line + "\n" for line in keep)
        if new != path.read_text():
            atomic_write_text(path, new)

    # -- the model (of the latest or the best checkpoint) ------------------------------------------------
    def checkpoint_folder(self) -> Path:
        """The folder the model is read from: the newest intact committed checkpoint (or the best one),
        or the run directory itself for the flat layout."""
        if self._folder is None:
            if self.store.exists():
                chosen = (self.store.usable(self.MODEL_FILES, deep=False, what=str(self.path)) if self.which == LATEST
                          else self.store.best(str(self.path)))
                self._folder = chosen.folder
            elif (self.path / self.MODEL_META).is_file():
                if self.which == BEST:
                    raise CheckpointError(f"{self.path}: written by an older spikeforge, it keeps only its last "
                                          "epoch (no best checkpoint); evaluate it without --best")
                self._folder = self.path
            elif not self.path.is_dir():
                raise FileNotFoundError(f"{self.path}: run directory not found")
            else:
                raise FileNotFoundError(f"{self.path}: holds no model (no committed checkpoint; is this a run "
                                        "directory?)")
        return self._folder

    def _model_file(self, name: str) -> Path:
        """A file of the chosen checkpoint, checked against its manifest (size and SHA-256)."""
        folder = self.checkpoint_folder()
        if folder != self.path:
            problem = Manifest.read(folder / CheckpointStore.MANIFEST).problem(folder, [name], deep=True)
            if problem:
                raise CheckpointError(f"{folder}: damaged checkpoint: {problem}")
        return folder / name

    def save_model(self, state: dict[str, torch.Tensor], recipe: JsonObject, methods_meta: dict[str, JsonObject],
                   extra: JsonObject | None = None) -> None:
        """Commit a model without optimizer state (outputs of compact & co.) as a checkpoint of its epoch."""
        meta = {"recipe": recipe, "extensions": methods_meta, "spikeforge": __version__, **(extra or {})}
        epoch = meta.get("epoch")
        self._commit(int(epoch) if isinstance(epoch, int) else 0, state, meta, None, {}, keep=1)

    def read_model_meta(self) -> JsonObject:
        path = self._model_file(self.MODEL_META)
        meta = read_json(path)
        if not isinstance(meta, dict):
            raise ValueError(f"{path}: expected a JSON object")
        return meta

    def method_meta(self, section: str) -> JsonObject:
        """The metadata the method ``section`` saved with the model (empty if none)."""
        return dict(self.read_model_meta().get("extensions", {}).get(section, {}))

    def load_weights_into(self, model: nn.Module, device: str | torch.device = "cpu") -> None:
        """Load the weights into ``model`` strictly (errors name the file, the keys, non-finite tensors)."""
        path = self._model_file(self.MODEL_WEIGHTS)
        load_state_into(model, load_tensors(path, device), path)

    def weights_path(self) -> Path:
        """The weights file (for messages and for checks that load a given state against it)."""
        try:
            return self.checkpoint_folder() / self.MODEL_WEIGHTS
        except (FileNotFoundError, CheckpointError):
            return self.path / self.CHECKPOINTS / CheckpointStore.folder_name(0) / self.MODEL_WEIGHTS

    # -- checkpoints -------------------------------------------------------------------------------
    def commit_checkpoint(self, model: nn.Module, optimizer: torch.optim.Optimizer, recipe: JsonObject,
                          methods_meta: dict[str, JsonObject], hook_states: dict[str, list[Any]], epoch: int,
                          best_accuracy: float, extra: JsonObject | None = None, test_accuracy: float | None = None,
                          keep: int = 1, skipped_steps: int = 0) -> None:
        """Commit epoch ``epoch``'s model, optimizer and hook states as one checkpoint; keep the last ``keep``
        checkpoints and the best one. Refuses (:class:`~.checkpoint.NonFiniteError`) a state that is not
        finite, so a finite checkpoint is never replaced by one that is not.

        ``extra``: further ``model.json`` fields (an imported run's source)."""
        meta = {"recipe": recipe, "extensions": methods_meta, "spikeforge": __version__, **(extra or {}),
                "epoch": epoch, "best_accuracy": best_accuracy}
        tensors, rest = optimizer_to_files(optimizer)
        optim = {"optimizer": rest, "epoch": epoch, "best_accuracy": best_accuracy, "hooks": hook_states,
                 "skipped_nonfinite_steps": skipped_steps}
        info = {} if test_accuracy is None else {"test_accuracy": test_accuracy}
        self._commit(epoch, model.state_dict(), meta, (tensors, optim), info, keep)

    def _commit(self, epoch: int, state: dict[str, torch.Tensor], meta: JsonObject,
                optim: tuple[dict[str, torch.Tensor], JsonObject] | None, info: JsonObject, keep: int) -> None:
        last = self.store.latest_epoch() if self.store.exists() else None
        kept = f"; {self.path} keeps its checkpoint of epoch {last}" if last is not None else ""
        check_finite(state, f"the model at epoch {epoch} (not saved{kept})")
        if optim is not None:
            check_finite(optim[0], f"the optimizer state at epoch {epoch} (not saved{kept})")
        self.create()
        staging = self.store.stage(epoch)
        save_tensors(staging / self.MODEL_WEIGHTS, state)
        write_json(staging / self.MODEL_META, meta)
        if optim is not None:
            save_tensors(staging / self.OPTIM_WEIGHTS, optim[0])
            write_json(staging / self.OPTIM_META, optim[1])
        self._folder = self.store.commit(staging, epoch, info, keep)
        self._drop_flat_files()

    def _drop_flat_files(self) -> None:
        """After the first checkpoint folder of a run written in the flat layout, its top-level model files
        are stale: remove them."""
        stale = [self.path / n for n in self.RESUME_FILES if (self.path / n).is_file()]
        for path in stale:
            path.unlink()
        if stale:
            fsync_dir(self.path)

    def last_checkpoint(self) -> Checkpoint | None:
        """The newest intact committed checkpoint with its optimizer state (``None``: nothing committed);
        damaged newer ones are passed over with a warning."""
        if self.store.exists():
            stored = self.store.usable(self.RESUME_FILES, deep=True, what=str(self.path))
            self.store.rollback(stored)
            folder = stored.folder
        elif self._flat() and (self.path / self.OPTIM_META).is_file():
            folder = self.path
        elif self._flat():
            raise CheckpointError(f"{self.path}: holds a model without optimizer state (written by compact or "
                                  "an older import); it cannot be resumed")
        else:
            return None
        if not (folder / self.OPTIM_META).is_file():
            raise CheckpointError(f"{folder}: a model without optimizer state (written by compact); it cannot be "
                                  "resumed")
        self._folder = folder
        model_meta = read_json(folder / self.MODEL_META)
        state = read_json(folder / self.OPTIM_META)
        if model_meta.get("epoch") != state["epoch"]:
            raise CheckpointError(f"{self.path}: model.json is at epoch {model_meta.get('epoch')} but optim.json at "
                                  f"{state['epoch']} (a checkpoint interrupted by an older spikeforge); cannot "
                                  "resume exactly")
        return Checkpoint(int(state["epoch"]), float(state["best_accuracy"]), model_meta, state["optimizer"],
                          dict(state.get("hooks", {})), folder, int(state.get("skipped_nonfinite_steps", 0)))

    def clean_after_crash(self, checkpoint: Checkpoint | None) -> list[str]:
        """Before resuming from ``checkpoint``: remove uncommitted or damaged checkpoint folders and
        temporary files, drop metrics of later epochs. Returns what was removed (for a message)."""
        removed = self.store.clean()
        for entry in sorted(self.path.iterdir()) if self.path.is_dir() else []:
            if entry.is_file() and entry.name.startswith(".") and entry.name.endswith(".tmp"):
                entry.unlink()
                removed.append(entry.name)
        self.truncate_metrics(checkpoint.epoch if checkpoint else 0)
        return removed

    def load_optimizer_into(self, optimizer: torch.optim.Optimizer, checkpoint: Checkpoint) -> None:
        path = checkpoint.folder / self.OPTIM_WEIGHTS
        tensors = load_tensors(path, "cpu")
        check_finite(tensors, path)
        optimizer_from_files(optimizer, tensors, checkpoint.optimizer)

    def hook_state_source(self) -> str:
        """Where hook states live (for error messages)."""
        return str((self._folder or self.path) / self.OPTIM_META)

    def remove_all_but_lock(self) -> None:
        """``train --force``: empty the directory of a run being replaced (the lock stays)."""
        for entry in sorted(self.path.iterdir()):
            if entry.name == self.LOCK:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        fsync_dir(self.path)
        self._folder = None

    # -- artifacts ---------------------------------------------------------------------------------
    def artifact(self, name: str) -> Path:
        """The path of a plot or report named ``name`` (a plain file name, not one of the core files)."""
        if Path(name).name != name or name in self.CORE_FILES or name.startswith("."):
            raise ValueError(f"{name!r} is not a valid artifact name in a run directory")
        return self.path / name

    def write_json_artifact(self, name: str, obj: Any) -> Path:
        path = self.artifact(name)
        write_json(path, obj)
        return path
