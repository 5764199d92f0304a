"""SpikingReLU: the quantized ReLU unit placed at hybrid sites.

Per time step and element:

    y = s · clamp(round(x / s), 0, L)

with a learnable step ``s > 0`` and ``L`` levels. The integer ``q = clamp(round(x/s), 0, L)``
is what reparameterization turns into binary spike planes (``q = Σ_k 2^k b_k``), with ``s``
absorbed into the next synaptic layer.

Gradients (LSQ, Esser et al. 2020):

    ∂y/∂x = 1[0 ≤ x/s ≤ L]                                  (straight-through rounding)
    ∂y/∂s = g · { round(x/s) − x/s   if 0 ≤ x/s ≤ L
                  0                  if x/s < 0
                  L                  if x/s > L }       with g = 1/√(numel(x)·L)

``s`` is initialised from the first training batch as ``2·mean(|x|)/√L`` (LSQ's rule).

The unit is a plain module: it knows nothing of data parallelism. Under ``torchrun`` each process
sees a share of the global batch, and LSQ's ``N`` and the initial ``mean(|x|)`` are over the global
batch; whoever trains tells the unit its :class:`BatchShare` (the engine's hybrid hook does, before
every step, from the training context). The default is a single process holding the whole batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..neurons import Site


def _whole(t: torch.Tensor) -> torch.Tensor:
    return t


@dataclass(frozen=True)
class BatchShare:
    """This process holds ``local`` of the ``total`` samples of a batch; ``reduce`` sums a tensor over
    the processes in place (the identity for a single process, which holds the whole batch)."""

    local: int = 1
    total: int = 1
    reduce: Callable[[torch.Tensor], torch.Tensor] = _whole

    def elements(self, x: torch.Tensor) -> int:
        """Elements of the whole batch of which ``x`` (batch along one axis) is this process's share."""
        return x.numel() // self.local * self.total


class _LsqQuantize(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, step: torch.Tensor, levels: int,
                grad_scale: float) -> torch.Tensor:
        q = x / step
        r = torch.round(q).clamp_(0, levels)
        ctx.save_for_backward(q)
        ctx.levels = levels
        ctx.grad_scale = grad_scale
        return r * step

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None, None]:
        (q,) = ctx.saved_tensors
        levels = ctx.levels
        below, above = q < 0, q > levels
        inside = ~(below | above)
        gx = g * inside.to(g.dtype)
        ds = torch.where(inside, torch.round(q) - q, torch.where(above, torch.full_like(q, levels), 0.0))
        gs = (g * ds).sum() * ctx.grad_scale
        return gx, gs.reshape(()), None, None


def quantize_levels(x: torch.Tensor, step: torch.Tensor | float, levels: int) -> torch.Tensor:
    """The integer level ``q = clamp(round(x/s), 0, L)`` (as a float tensor)."""
    return torch.round(x / step).clamp_(0, levels)


class SpikingReLU(Site):
    """Quantized ReLU site: ``y = s·clamp(round(x/s), 0, L)`` per time step."""

    spiking = False
    initialized: torch.Tensor

    def __init__(self, levels: int = 15, init_step: float = 1.0) -> None:
        super().__init__()
        if levels < 1:
            raise ValueError(f"SpikingReLU levels must be >= 1, got {levels}")
        self.levels = int(levels)
        self.step = nn.Parameter(torch.tensor(float(init_step)))
        self.register_buffer("initialized", torch.tensor(False))
        self.share = BatchShare()

    @torch.no_grad()
    def init_from(self, x: torch.Tensor) -> None:
        """LSQ initialisation ``s = 2·mean(|x|)/√L`` (kept positive), ``mean(|x|)`` over the whole batch
        (:attr:`share`), so every process starts from the same step whatever its share's size."""
        stats = torch.stack([x.abs().sum(), torch.tensor(float(x.numel()), device=x.device, dtype=x.dtype)])
        total = self.share.reduce(stats)
        s = 2.0 * total[0] / total[1] / math.sqrt(self.levels)
        self.step.copy_(s.clamp(min=torch.finfo(self.step.dtype).eps).to(self.step.dtype))
        self.initialized.fill_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and not bool(self.initialized):
            self.init_from(x)
        step = self.step.abs().clamp(min=torch.finfo(self.step.dtype).tiny).to(x.dtype)
        # LSQ's g = 1/√(N·L), N = elements of the *global* batch (DDP averages per-rank gradients)
        n = self.share.elements(x) if self.training else x.numel()
        grad_scale = 1.0 / math.sqrt(n * self.levels)
        return _LsqQuantize.apply(x, step, self.levels, grad_scale)

    def integer_levels(self, x: torch.Tensor) -> torch.Tensor:
        """The integer output ``q`` (``y = s·q``) for inputs ``x``."""
        return quantize_levels(x, self.step.abs().to(x.dtype), self.levels)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, step={self.step.detach().item():.4g}"
