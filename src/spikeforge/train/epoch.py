"""One epoch of training, and what happens at its end.

A step: take this rank's share of the global batch, set the scheduled learning rate, let the hooks
prepare (``before_step``), augment and encode the batch, forward, loss, backward, clip, check that
the loss and the gradient are finite (:mod:`.numerics`), optimizer step, hooks again
(``after_step``). The end of an epoch: the hooks act (structural changes happen before evaluation,
so the accuracy reflects them), rank 0 evaluates on the test set, appends the epoch's record to
``metrics.jsonl`` and commits the checkpoint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from ..data.encode import prepare_batch
from ..data.loader import iterate_batches
from .devices import autocast_context
from .evaluate import evaluate_model
from .metrics import time_average
from .numerics import BufferSnapshot, check_model_finite, nonfinite_step, step_is_finite
from .optim import set_scheduled_lr
from .session import Session

MIN_SECONDS = 1e-9  # guards a throughput division


@dataclass
class Tally:
    """Running training loss and accuracy of one epoch on this rank."""

    seen: int = 0
    correct: int = 0
    loss_sum: float = 0.0

    def add(self, loss: torch.Tensor, out: torch.Tensor, y: torch.Tensor) -> None:
        n = y.shape[0]
        self.seen += n
        self.loss_sum += float(loss.detach()) * n
        self.correct += int((time_average(out.detach()).argmax(-1) == y).sum())

    def summed_over_ranks(self, s: Session) -> Tally:
        seen, correct, loss_sum = s.world.sum([float(self.seen), float(self.correct), self.loss_sum], s.ctx.device)
        return Tally(int(seen), int(correct), loss_sum)


def train_step(s: Session, progress: float, x: torch.Tensor, y: torch.Tensor, tally: Tally, step: int) -> None:
    """One optimizer step on the global batch ``(x, y)``, ``progress`` epochs into the run (``step``: 1-based
    in the epoch, for messages). A non-finite loss or gradient stops training, or skips the step
    (:func:`.numerics.nonfinite_step`)."""
    cfg, ctx = s.recipe.train, s.ctx
    n_global = y.shape[0]
    x, y = s.world.chunk(x, y)
    set_scheduled_lr(s.optimizer, cfg.optimizer.lr, progress, cfg.epochs, cfg.schedule)
    ctx.local_batch, ctx.global_batch = y.shape[0], n_global
    for hook in s.hooks.values():
        hook.before_step(ctx)
    buffers = BufferSnapshot(ctx.model) if cfg.skip_nonfinite_steps else None
    inp = prepare_batch(x, s.info, s.recipe.data, s.augment, s.streams.batch, train=True)
    with autocast_context(ctx.device, cfg.precision):
        out = s.step_model(inp)
    loss = s.loss_fn(out.float(), y, cfg.label_smoothing)
    s.optimizer.zero_grad(set_to_none=True)
    (loss * s.world.loss_weight(y.shape[0], n_global)).backward()
    params = [p for p in ctx.model.parameters() if p.grad is not None]
    norm = (nn.utils.clip_grad_norm_(params, cfg.grad_clip) if cfg.grad_clip > 0
            else nn.utils.get_total_norm([p.grad for p in params if p.grad is not None]))
    if not step_is_finite(s, loss, norm):
        s.skipped_steps += 1
        nonfinite_step(s, float(loss.detach()), float(norm), step, buffers)
        return
    s.optimizer.step()
    for hook in s.hooks.values():
        hook.after_step(ctx)
    tally.add(loss, out, y)


def train_one_epoch(s: Session, epoch: int) -> dict[str, Any]:
    """Train epoch ``epoch`` on a fresh, seeded shuffle; returns the record's training part."""
    s.streams.start_epoch(epoch)
    s.ctx.epoch = epoch
    s.ctx.model.train()
    s.start_epoch_clock()
    cfg, tally, steps = s.recipe.train, Tally(), s.steps_per_epoch()
    batches = iterate_batches(s.splits.train, cfg.batch_size, shuffle=True, generator=s.streams.shuffle,
                              device=s.ctx.device, drop_last=False)
    bar = tqdm(batches, total=steps, desc=f"epoch {epoch}/{cfg.epochs}", leave=False,
               disable=s.quiet or not s.world.is_main)
    skipped_before = s.skipped_steps
    for i, (x, y) in enumerate(bar):
        if y.shape[0] < s.ctx.world_size:
            continue  # a final global batch too small to give every rank a sample
        train_step(s, epoch - 1 + i / steps, x, y, tally, i + 1)
        if tally.seen:
            bar.set_postfix(loss=f"{tally.loss_sum / tally.seen:.4f}", acc=f"{tally.correct / tally.seen:.4f}")
    train_time = time.perf_counter() - s.epoch_started
    total = tally.summed_over_ranks(s)
    record = {"epoch": epoch, "lr": s.optimizer.param_groups[0]["lr"],
              "train_loss": total.loss_sum / max(1, total.seen), "train_accuracy": total.correct / max(1, total.seen),
              "train_time_s": train_time, "train_samples_per_s": total.seen / max(train_time, MIN_SECONDS)}
    if s.recipe.train.skip_nonfinite_steps:
        record["nonfinite_steps_skipped"] = s.skipped_steps - skipped_before
    return record


def _report(s: Session, record: dict[str, Any]) -> None:
    if not s.quiet:
        print(f"epoch {record['epoch']}/{s.recipe.train.epochs}  loss {record['train_loss']:.4f}  train acc "
              f"{record['train_accuracy']:.4f}  test acc {record['test_accuracy']:.4f}  "
              f"({record['train_samples_per_s']:.0f} samples/s, {record['epoch_time_s']:.1f} s)", flush=True)


def end_epoch(s: Session, record: dict[str, Any]) -> dict[str, Any]:
    """The hooks act, then rank 0 evaluates, records and commits the checkpoint; the other ranks wait."""
    for hook in s.hooks.values():
        record.update(hook.end_epoch(s.ctx))
    check_model_finite(s)
    if not s.world.is_main:
        s.world.barrier()
        return record
    cfg = s.recipe.train
    ev = evaluate_model(s.ctx.model, s.splits.test, s.info, s.recipe.data, cfg.eval_batch_size, s.ctx.device,
                        cfg.precision, cfg.seed, cfg.loss)
    s.best_accuracy = max(s.best_accuracy, ev["accuracy"])
    record.update({"test_accuracy": ev["accuracy"], "test_loss": ev["loss"], "firing_rates": ev["firing_rates"],
                   "epoch_time_s": time.perf_counter() - s.epoch_started, "best_test_accuracy": s.best_accuracy})
    s.run.append_metrics(record)
    s.commit_checkpoint(record["epoch"], ev["accuracy"])
    _report(s, record)
    s.world.barrier()
    return record
