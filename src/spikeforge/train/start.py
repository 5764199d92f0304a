"""Before the first write into a run directory: may this run start, resume or replace it?

``train`` without ``--resume`` needs a new or empty folder, or ``--force`` to replace an existing
run (never a folder that is not a run directory, never a run another process trains). ``--resume``
needs an existing run directory; its newest intact checkpoint is where training continues, and
the recipe must be the run's own except for the keys in :data:`RESUME_MAY_CHANGE`. Rank 0 checks
and locks (:func:`claimed`); under ``torchrun`` every rank raises when rank 0 refuses.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .distributed import Distributed
from .recipe import Recipe, recipe_to_dict
from .run_files import Checkpoint, RunDir
from .run_lock import RunLock, locked_error
from .rundir import parse_stored_recipe

# recipe keys (and key prefixes) that --resume may change: they do not change what is trained
RESUME_MAY_CHANGE = ("name", "description", "train.epochs", "train.eval_batch_size", "train.device", "train.amp",
                     "train.precision", "train.keep_checkpoints", "train.skip_nonfinite_steps", "train.threads",
                     "train.compile", "data.root",
                     "data.cache_dir", "data.events.cache", "data.events.cache_dir", "model.neuron.backend")
# keys a run without data (``spikeforge import``) leaves empty until training resolves them from the dataset
RESOLVED_BY_DATA = ("data.mean", "data.std")
SHOWN_DIFFERENCES = 3


class ResumeWarning(UserWarning):
    """What ``--resume`` repaired or could not use."""


def check_start(run: RunDir, resume: bool, force: bool) -> None:
    """Refuse a start that would lose or mix work (see the module docstring)."""
    path = run.path
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"--out {path} is a file; expected a run directory (a new or empty folder)")
    holder = run.lock_holder()
    if holder is not None:
        raise locked_error(path / RunDir.LOCK, holder)
    if resume:
        if not path.exists():
            raise FileNotFoundError(f"--resume: {path} does not exist (nothing to resume)")
        if not run.is_empty() and not RunDir.is_run_directory(path):
            raise FileExistsError(f"--resume: {path} is not a run directory (no recipe, metrics or checkpoint)")
        return
    if not path.exists() or run.is_empty():
        return
    if not RunDir.is_run_directory(path):
        raise FileExistsError(f"--out {path} is a non-empty folder that is not a run directory; choose a new or empty "
                              "folder (--force replaces only run directories)")
    if not force:
        epoch = run.committed_epoch()
        state = f"checkpoint of epoch {epoch}" if epoch is not None else "no committed checkpoint yet"
        raise FileExistsError(f"{path} already holds a run ({state}); pass --resume to continue it or --force to "
                              "replace it")


@contextmanager
def claimed(run: RunDir, world: Distributed, resume: bool, force: bool) -> Iterator[None]:
    """Check the start and hold the run's lock (rank 0) while the block runs; a folder this created and
    left empty is removed again."""
    created = not run.path.exists()
    lock: RunLock | None = None
    error: BaseException | None = None
    if world.is_main:
        try:
            check_start(run, resume, force)
            lock = run.lock()
        except (OSError, ValueError, RuntimeError) as e:
            error = e
    world.raise_together(error)
    try:
        yield
    finally:
        if lock is not None:
            lock.release()
            if created and run.is_empty():
                run.path.rmdir()


def _flat(doc: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(doc, dict):
        return {prefix: doc}
    out: dict[str, Any] = {}
    for key, value in doc.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def check_same_recipe(stored: Any, recipe: Recipe, source: str) -> None:
    """``--resume`` continues the run's own recipe: other values would not train what the checkpoint holds."""
    was, now = _flat(recipe_to_dict(parse_stored_recipe(stored, source))), _flat(recipe_to_dict(recipe))
    differ = [k for k in sorted(set(was) | set(now))
              if was.get(k) != now.get(k) and not any(k == p or k.startswith(p + ".") for p in RESUME_MAY_CHANGE)
              and not (k in RESOLVED_BY_DATA and not was.get(k))]
    if differ:
        shown = "; ".join(f"{k} = {now.get(k)!r} here, {was.get(k)!r} in the run" for k in differ[:SHOWN_DIFFERENCES])
        more = f" (and {len(differ) - SHOWN_DIFFERENCES} more)" if len(differ) > SHOWN_DIFFERENCES else ""
        raise ValueError(f"--resume: the recipe differs from the one {source} was trained with: {shown}{more}; "
                         "resume with the run's own recipe (--recipe RUN/recipe.toml; only epochs, device, precision "
                         "and checkpoint settings may change)")


def prepare_resume(run: RunDir, recipe: Recipe) -> Checkpoint | None:
    """Rank 0, before anything is written: the checkpoint to continue from (``None``: start at epoch 1),
    leftovers of a crash removed, later metrics dropped."""
    checkpoint = run.last_checkpoint()
    if checkpoint is not None:
        check_same_recipe(checkpoint.model_meta.get("recipe"), recipe, str(run.path))
        if checkpoint.epoch > recipe.train.epochs:
            raise ValueError(f"--resume: {run.path} is at epoch {checkpoint.epoch}, beyond train.epochs = "
                             f"{recipe.train.epochs}; pass --epochs {checkpoint.epoch} or more")
    removed = run.clean_after_crash(checkpoint)
    if removed:
        warnings.warn(f"{run.path}: removed what an interrupted run left: {', '.join(removed)}", ResumeWarning,
                      stacklevel=3)
    if checkpoint is None:
        warnings.warn(f"--resume: {run.path} has no committed checkpoint yet; training starts at epoch 1",
                      ResumeWarning, stacklevel=3)
    elif checkpoint.epoch == recipe.train.epochs:
        warnings.warn(f"--resume: {run.path} already holds all {checkpoint.epoch} epochs; nothing to train (pass "
                      "--epochs N to continue it)", ResumeWarning, stacklevel=3)
    return checkpoint
