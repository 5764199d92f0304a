"""Data-parallel training under ``torchrun`` (DistributedDataParallel), on CPU (gloo) or CUDA (nccl).

``torchrun --nproc_per_node N -m spikeforge.cli train --recipe R --out DIR`` starts N processes;
each reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` from the environment. Semantics:

- ``train.batch_size`` stays the *global* batch: every rank walks the same seeded permutation and
  takes its contiguous chunk of each global batch (``torch.tensor_split``: sizes differ by at most
  one), so one step sees the same samples as a single-process step. DDP averages the per-rank
  gradients, so each rank's mean loss is weighted by ``n_rank·N/n_global`` before backward
  (:meth:`Distributed.loss_weight`): the result is the gradient of the global batch mean even when
  chunks differ in size (batch-norm statistics are per rank, as usual with DDP). A final global
  batch smaller than ``N`` is skipped.
- random streams that differ per sample (augmentation, rate coding, dropout) are seeded per rank.
- DDP broadcasts rank 0's buffers at every forward (``broadcast_buffers``), which keeps masks and
  ranges identical at the cost of one broadcast per buffer per step.
- the process group waits ``PROCESS_GROUP_TIMEOUT`` at a collective: long enough for rank 0's
  evaluation and checkpoint while the other ranks wait at the epoch-end barrier.
- rank 0 evaluates, writes ``metrics.jsonl`` and the checkpoints; the others wait at a barrier.
  Extensions act on every rank with identical inputs (parameters are synchronised by DDP, buffers
  such as masks and ranges are broadcast from rank 0 at each forward), so structures stay equal.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")
RANK_SEED_STRIDE = 7_919  # per-rank offset of the per-sample random streams (rank 0: offset 0)
PROCESS_GROUP_TIMEOUT = timedelta(hours=2)  # how long a rank waits at a collective (evaluation happens on rank 0)


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Element-wise sum of ``values`` over all ranks (identity in a single process)."""
        if not self.enabled:
            return list(values)
        summed: list[float] = self.all_sum(torch.tensor(values, dtype=torch.float64, device=device)).tolist()
        return summed

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` summed over all ranks, in place (unchanged in a single process)."""
        if self.enabled:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def gather(self, obj: T) -> list[T]:
        """``obj`` of every rank, in rank order (``[obj]`` in a single process)."""
        if not self.enabled:
            return [obj]
        out: list[T] = [obj] * self.world
        dist.all_gather_object(out, obj)
        return out

    def raise_together(self, error: BaseException | None) -> None:
        """Raise on every rank when any rank failed (a collective: every rank must call it). A rank that
        failed raises its own error, the others name the first failed rank and its message."""
        if not self.enabled:
            if error is not None:
                raise error
            return
        messages = self.gather(None if error is None else str(error))
        if error is not None:
            raise error
        failed = [(rank, msg) for rank, msg in enumerate(messages) if msg is not None]
        if failed:
            raise RuntimeError(f"rank {failed[0][0]}: {failed[0][1]}")

    def loss_weight(self, n_local: int, n_global: int) -> float:
        """Factor on this rank's mean loss so that DDP's gradient average is the global batch mean."""
        return n_local * self.world / n_global if self.enabled else 1.0

    def chunk(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's contiguous share of a global batch."""
        if not self.enabled:
            return x, y
        return torch.tensor_split(x, self.world)[self.rank], torch.tensor_split(y, self.world)[self.rank]

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        if not self.enabled:
            return model
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None


def from_environment() -> Distributed:
    """The process group described by torchrun's variables (a single process when absent)."""
    world = _env_int("WORLD_SIZE", 1)
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} / WORLD_SIZE={world} are inconsistent")
    return Distributed(rank, world, local)


def setup(d: Distributed, device: torch.device) -> torch.device:
    """Join the process group (once) and return this rank's device (``cuda:LOCAL_RANK`` on GPUs)."""
    if not d.enabled:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", d.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", timeout=PROCESS_GROUP_TIMEOUT)
    return device


def teardown() -> None:
    """Leave the process group at the end of a ``torchrun`` command."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def check_batch(d: Distributed, batch_size: int) -> None:
    if d.enabled and batch_size < d.world:
        raise ValueError(f"train.batch_size ({batch_size}) is the global batch; it must be >= the number of "
                         f"processes ({d.world})")
