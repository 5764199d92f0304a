"""The training engine: recipe → run directory.

Training checks the recipe, locks the run directory (:mod:`.start`) and opens it, or resumes it from
its newest intact checkpoint (:mod:`.session`: data, model, each method's hook, optimizer). Then,
for every remaining epoch, it trains one epoch — shuffle the in-memory training set, and for each
batch augment it on the device, encode it to ``[T, B, ...]``, forward, loss on the time-averaged
output (CE) or on output firing rates (MSE, SD-SNN), backward, clip, step — and ends the epoch: the
methods act, rank 0 evaluates on the test set, appends one JSON record to ``metrics.jsonl`` and
commits the checkpoint (:mod:`.epoch`). Finally the run's plots are drawn. Methods join through
:mod:`.hooks`; under ``torchrun`` the same function trains data-parallel (:mod:`.distributed`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data.base import DataSplits
from .devices import resolve_device
from .distributed import check_batch, from_environment, setup
from .epoch import end_epoch, train_one_epoch
from .evaluate import evaluate_model
from .optim import lr_factor, make_optimizer
from .recipe import Recipe
from .report import plot_run
from .run_files import RunDir
from .session import fit_recipe_to_data, open_session
from .start import claimed
from .validate import check_device, validate_recipe

__all__ = ["evaluate_model", "fit_recipe_to_data", "lr_factor", "make_optimizer", "resolve_device", "train"]


def train(recipe: Recipe, run_dir: str | Path, data_root: str | Path | None = None, device: str = "auto",
          resume: bool = False, quiet: bool = False, splits: DataSplits | None = None,
          force: bool = False) -> dict[str, Any]:
    """Train ``recipe`` into ``run_dir`` (``splits``: data already in memory); returns the last epoch's record.

    The recipe and the device are checked before anything else; ``run_dir`` must be new or empty, or
    ``resume`` continues it from its newest intact checkpoint, or ``force`` replaces the run it holds
    (:mod:`.start`). The run directory is locked while training runs."""
    validate_recipe(recipe)
    check_device(device, "device")
    world = from_environment()
    dev = setup(world, resolve_device(device if device != "auto" else recipe.train.device))
    check_batch(world, recipe.train.batch_size)
    run = RunDir(run_dir)
    with claimed(run, world, resume, force):
        session = open_session(recipe, run, world, dev, data_root, resume, force, splits, quiet)
        record: dict[str, Any] = {}
        for epoch in session.remaining_epochs():
            record = end_epoch(session, train_one_epoch(session, epoch))
        if session.world.is_main:
            if not record and session.run.holds_training():
                record = (session.run.read_metrics() or [{}])[-1]  # --resume of a finished run
            plot_run(session.run)
    return record
