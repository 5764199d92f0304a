"""Numbers that go bad during training: a non-finite loss or gradient stops the run, or skips the step.

Each step the engine checks that the loss and the gradient norm are finite (one synchronisation;
under ``torchrun`` the ranks agree). When they are not, the step is not applied and training stops
with one line naming the epoch, the step, the value and the learning rate: nothing of that epoch is
saved, the run keeps its last checkpoint (which :meth:`RunDir.commit_checkpoint
<spikeforge.train.run_files.RunDir.commit_checkpoint>` only writes when every tensor is finite).
With ``train.skip_nonfinite_steps = N`` up to ``N`` such steps per run are skipped instead (a
warning each; the floating-point buffers, e.g. batch-norm statistics updated by that forward pass,
are restored), and the epoch's record counts them (``nonfinite_steps_skipped``).
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from .checkpoint import NonFiniteError, check_finite
from .session import Session


class NonFiniteWarning(UserWarning):
    """A training step with a non-finite loss or gradient was skipped."""


class BufferSnapshot:
    """Copies of a model's floating-point buffers, put back when a step is skipped."""

    def __init__(self, model: nn.Module) -> None:
        self.saved = [(b, b.detach().clone()) for b in model.buffers() if b.is_floating_point()]

    @torch.no_grad()
    def restore(self) -> None:
        for buf, value in self.saved:
            buf.copy_(value)


def check_model_finite(s: Session) -> None:
    """At the end of an epoch, after the methods acted: the model must be finite to be evaluated and saved."""
    last = s.run.committed_epoch() if s.world.is_main else None
    kept = f"; {s.run.path} keeps its checkpoint of epoch {last}" if last else ""
    check_finite(s.ctx.model.state_dict(), f"the model at the end of epoch {s.ctx.epoch} (not saved{kept})")


def step_is_finite(s: Session, loss: torch.Tensor, norm: torch.Tensor) -> bool:
    """Whether this step's loss and gradient norm are finite on every rank (one synchronisation)."""
    bad = (~(torch.isfinite(loss.detach()) & torch.isfinite(norm))).to(torch.float32).reshape(1)
    return float(s.world.all_sum(bad)) == 0


def nonfinite_step(s: Session, loss: float, norm: float, step: int, buffers: BufferSnapshot | None) -> None:
    """Skip the step (``train.skip_nonfinite_steps`` not used up; ``s.skipped_steps`` counts it) or stop training."""
    cfg = s.recipe.train
    s.optimizer.zero_grad(set_to_none=True)
    what = f"the loss is {loss}" if not math.isfinite(loss) else f"the gradient norm is {norm}"
    where = f"epoch {s.ctx.epoch}, step {step} of {s.steps_per_epoch()}"
    if buffers is not None and s.skipped_steps <= cfg.skip_nonfinite_steps:
        buffers.restore()
        warnings.warn(f"{where}: {what}; step skipped ({s.skipped_steps} of train.skip_nonfinite_steps = "
                      f"{cfg.skip_nonfinite_steps})", NonFiniteWarning, stacklevel=3)
        return
    last = s.run.committed_epoch()
    kept = f"{s.run.path} keeps its checkpoint of epoch {last}" if last else f"{s.run.path} has no checkpoint"
    used = f"{s.skipped_steps - 1} skipped steps used up; " if cfg.skip_nonfinite_steps else ""
    raise NonFiniteError(f"{where}: {what} (learning rate {s.optimizer.param_groups[0]['lr']:.3g}); {used}training "
                         f"stopped, nothing of epoch {s.ctx.epoch} was saved and {kept}. Lower train.optimizer.lr, set "
                         "train.grad_clip, or allow N such steps with --set train.skip_nonfinite_steps=N")
