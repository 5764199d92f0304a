"""Opening a training run: everything the epoch loop needs, fresh or resumed from the last checkpoint.

Order matters for reproducibility and is kept fixed: seed, load the data, build the model, let each
method prepare it, build the optimizer, then (``--resume``) load weights, optimizer and hook states.
Rank 0 alone writes: before the first write the run directory has been checked and locked
(:mod:`.start`), and the data is recorded (fresh run) or compared with the record (:mod:`.provenance`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from ..data import dataset_folder, load_dataset
from ..data.augment import BatchAugment
from ..data.base import DatasetInfo, DataSplits
from ..models import build_model
from ..threads import apply_threads
from .distributed import RANK_SEED_STRIDE, Distributed
from .hooks import TrainContext, TrainHook
from .metrics import LossFn, get_loss
from .optim import make_optimizer
from .provenance import check_data, record_data
from .recipe import Recipe, recipe_to_dict, to_toml
from .registry import active_methods
from .run_files import Checkpoint, RunDir
from .start import prepare_resume

EPOCH_SEED_STRIDE = 100_003  # seed of epoch e's streams: seed * stride + e


@dataclass
class Streams:
    """The random streams of training, reseeded per epoch so that ``--resume`` continues exactly."""

    seed: int
    rank: int
    batch: torch.Generator  # augmentation and stochastic encodings; differs per rank
    shuffle: torch.Generator  # the sample order; the same on every rank

    def start_epoch(self, epoch: int) -> None:
        self.shuffle.manual_seed(self.seed * EPOCH_SEED_STRIDE + epoch)
        self.batch.manual_seed(self.seed * EPOCH_SEED_STRIDE + epoch + self.rank * RANK_SEED_STRIDE)


@dataclass
class Session:
    """One training run between epochs."""

    recipe: Recipe
    run: RunDir
    ctx: TrainContext
    splits: DataSplits  # ctx.splits, present in training
    hooks: dict[str, TrainHook]  # method section -> its hook, in registration order
    step_model: nn.Module  # the DDP wrapper under torchrun, else the model
    optimizer: torch.optim.Optimizer
    streams: Streams
    loss_fn: LossFn
    augment: BatchAugment
    quiet: bool
    start_epoch: int = 1
    best_accuracy: float = 0.0
    epoch_started: float = 0.0  # time.perf_counter() at the start of the current epoch
    skipped_steps: int = 0  # non-finite steps skipped so far in the run (train.skip_nonfinite_steps)

    @property
    def world(self) -> Distributed:
        return self.ctx.world

    @property
    def info(self) -> DatasetInfo:
        return self.splits.info

    def steps_per_epoch(self) -> int:
        return max(1, math.ceil(len(self.splits.train) / self.recipe.train.batch_size))

    def remaining_epochs(self) -> range:
        return range(self.start_epoch, self.recipe.train.epochs + 1)

    def start_epoch_clock(self) -> None:
        self.epoch_started = time.perf_counter()

    def commit_checkpoint(self, epoch: int, test_accuracy: float | None = None) -> None:
        """Model, optimizer, each method's metadata and hook state for ``epoch`` (rank 0 only)."""
        commit_checkpoint(self.run, self.ctx, self.hooks, epoch, self.best_accuracy, test_accuracy=test_accuracy,
                          skipped_steps=self.skipped_steps)


def commit_checkpoint(run: RunDir, ctx: TrainContext, hooks: dict[str, TrainHook], epoch: int, best_accuracy: float,
                      extra: dict[str, Any] | None = None, test_accuracy: float | None = None,
                      skipped_steps: int = 0) -> None:
    """Commit ``ctx``'s model and optimizer with each hook's metadata and resume state as epoch ``epoch``
    (keeping the recipe's ``train.keep_checkpoints`` last checkpoints and the best one)."""
    if ctx.optimizer is None:
        raise ValueError("a checkpoint needs the optimizer (build it after the methods prepared the model)")
    run.commit_checkpoint(ctx.model, ctx.optimizer, recipe_to_dict(ctx.recipe),
                          {s: h.metadata() for s, h in hooks.items()}, {s: [h.state_dict()] for s, h in hooks.items()},
                          epoch, best_accuracy, extra, test_accuracy, ctx.recipe.train.keep_checkpoints, skipped_steps)


def fit_recipe_to_data(recipe: Recipe, info: DatasetInfo) -> None:
    """The dataset decides the input geometry and the normalisation; the resolved recipe records both."""
    recipe.model.num_classes, recipe.model.in_channels = info.num_classes, info.in_channels
    recipe.model.input_size = info.input_size
    if info.mean and not recipe.data.mean:
        recipe.data.mean, recipe.data.std = list(info.mean), list(info.std)


def load_training_data(recipe: Recipe, data_root: str | Path | None) -> DataSplits:
    """The recipe's dataset; the resolved recipe records the folder it came from (absolute)."""
    folder = dataset_folder(recipe.data, data_root)
    splits = load_dataset(recipe.data, folder)
    if folder is not None:
        recipe.data.root = str(folder.resolve())
    return splits


def prepare_methods(ctx: TrainContext, checkpoint: Checkpoint | None) -> dict[str, TrainHook]:
    """Each active method prepares the model (on resume from its saved metadata) and returns its hook."""
    saved = checkpoint.methods_meta() if checkpoint else {}
    return {m.section: m.prepare(ctx, saved.get(m.section)) for m in active_methods(ctx.recipe)}


def resume_from(session: Session, checkpoint: Checkpoint) -> None:
    """Weights, optimizer state and hook states of the last committed epoch; later metrics are dropped."""
    run, hooks = session.run, session.hooks
    run.load_weights_into(session.ctx.model, session.ctx.device)
    run.load_optimizer_into(session.optimizer, checkpoint)
    for section, states in checkpoint.hook_states.items():
        own = [hooks[section]] if section in hooks else []
        if len(own) != len(states):
            raise ValueError(f"{run.hook_state_source()}: section {section!r} saved {len(states)} hook states, "
                             f"the recipe now has {len(own)} hooks")
        for hook, state in zip(own, states, strict=True):
            if state is not None:
                hook.load_state_dict(state)
    session.start_epoch, session.best_accuracy = checkpoint.epoch + 1, checkpoint.best_accuracy
    session.skipped_steps = checkpoint.skipped_steps


def begin_writing(run: RunDir, recipe: Recipe, splits: DataSplits, loaded_here: bool, resume: bool,
                  force: bool) -> Checkpoint | None:
    """Rank 0, once the data is loaded: replace the old run (``--force``) or find the checkpoint to continue
    (``--resume``), then record the data (fresh run) or compare it with the record."""
    if force and not resume:
        run.remove_all_but_lock()
    checkpoint = prepare_resume(run, recipe) if resume else None
    if loaded_here and not (checkpoint is not None and check_data(run, recipe.data, None, splits)):
        record_data(run, recipe.data, splits)
    return checkpoint


def open_session(recipe: Recipe, run: RunDir, world: Distributed, dev: torch.device, data_root: str | Path | None,
                 resume: bool, force: bool, splits: DataSplits | None, quiet: bool) -> Session:
    """Open ``run`` (checked and locked: :func:`.start.claimed`) for training ``recipe`` or resuming it: data,
    model, methods, optimizer, streams."""
    cfg = recipe.train
    torch.manual_seed(cfg.seed)
    loaded_here = splits is None
    splits = splits or load_training_data(recipe, data_root)
    fit_recipe_to_data(recipe, splits.info)
    checkpoint, error = None, None
    if world.is_main:
        try:
            checkpoint = begin_writing(run, recipe, splits, loaded_here, resume, force)
        except (OSError, ValueError, RuntimeError) as e:
            error = e
    world.raise_together(error)
    if resume and not world.is_main:
        checkpoint = run.last_checkpoint()  # after rank 0 repaired the directory (raise_together synchronises)

    model = build_model(recipe.model).to(dev)
    ctx = TrainContext(recipe, model, splits, dev, world)
    hooks = prepare_methods(ctx, checkpoint)
    model.to(dev)
    ctx.optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], cfg.optimizer)
    streams = Streams(cfg.seed, world.rank, torch.Generator(device=dev).manual_seed(cfg.seed),
                      torch.Generator().manual_seed(cfg.seed))
    session = Session(recipe, run, ctx, splits, hooks, model, ctx.optimizer, streams, get_loss(cfg.loss),
                      BatchAugment.from_config(recipe.data), quiet)
    if checkpoint is not None:
        resume_from(session, checkpoint)
    if world.is_main:
        run.write_recipe(to_toml(recipe))
    session.step_model = world.wrap(model, dev)
    if cfg.compile:  # whole training step: one graph for forward and backward; a failure is an error, not eager
        session.step_model = cast(nn.Module, torch.compile(session.step_model, dynamic=False))
        if world.is_main and not quiet:
            print("train.compile: training steps run through torch.compile (the first steps include compile time)")
    note = apply_threads(cfg.threads, dev.type)
    if note and world.is_main and not quiet:
        print(note)
    if world.enabled:
        torch.manual_seed(cfg.seed + world.rank * RANK_SEED_STRIDE)  # dropout masks differ per rank
    return session
