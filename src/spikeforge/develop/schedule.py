"""When development acts, in a run of any length.

The reference constants are in reference epochs (``E_ref = 300``). With ``s = E / E_ref`` for a
run of ``E`` epochs:

    C        = max(C_min, round(C_ref · s)) consecutive-epoch threshold (C_min = min_consecutive_epochs, default 3)
    e > C    : weights are projected into their ranges
    e > 2C   : regeneration, then neuronal pruning (first pruning epoch e₀ = 2C + 1)
    R        = max(1, round(R_ref · s))     regeneration streak
    k(e)     = (e − e₀) / s                 reference epochs since pruning began

A per-epoch quantity of the reference (a rate increment) is summed over the reference epochs an
actual epoch covers: ``steps(e₀) = {0}`` and ``steps(e) = {j ∈ ℤ : k(e−1) < j ≤ k(e)}``. For a
300-epoch run this is exactly the reference, ``steps(e) = {e − 37}``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .config import DevelopConfig


def scaled_count(reference_count: int, scale: float) -> int:
    return max(1, round(reference_count * scale))


@dataclass(frozen=True)
class Schedule:
    epochs: int
    reference_epochs: int
    consecutive: int  # C in actual epochs

    @classmethod
    def from_config(cls, cfg: DevelopConfig, epochs: int) -> Schedule:
        if epochs < 1 or cfg.reference_epochs < 1:
            raise ValueError(f"epochs and develop.reference_epochs must be >= 1, got {epochs}, "
                             f"{cfg.reference_epochs}")
        scale = epochs / cfg.reference_epochs
        return cls(epochs, cfg.reference_epochs,
                   max(cfg.min_consecutive_epochs, scaled_count(cfg.consecutive_epochs, scale)))

    @property
    def scale(self) -> float:
        return self.epochs / self.reference_epochs

    @property
    def first_pruning_epoch(self) -> int:
        return 2 * self.consecutive + 1

    def constrained(self, epoch: int) -> bool:
        return epoch > self.consecutive

    def pruning(self, epoch: int) -> bool:
        return epoch >= self.first_pruning_epoch

    def count(self, reference_count: int) -> int:
        return scaled_count(reference_count, self.scale)

    def offset(self, epoch: int) -> float:
        """k(e): reference epochs since the first pruning epoch."""
        return (epoch - self.first_pruning_epoch) / self.scale

    def steps(self, epoch: int) -> list[int]:
        """The reference epoch offsets covered by actual epoch ``epoch`` (empty before pruning)."""
        if epoch < self.first_pruning_epoch:
            return []
        if epoch == self.first_pruning_epoch:
            return [0]
        lo, hi = self.offset(epoch - 1), self.offset(epoch)
        eps = 1e-9  # k(e) is a ratio of integers: guard against float round-off at integer points
        return list(range(math.floor(lo + eps) + 1, math.floor(hi + eps) + 1))
