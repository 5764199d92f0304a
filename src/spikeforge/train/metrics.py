"""Losses, accuracy and firing-rate recording."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..models import neuron_sites


def time_average(out: torch.Tensor) -> torch.Tensor:
    """``[T, B, C] -> [B, C]``: the decoded output (mean over time)."""
    return out.mean(0)


def ce_loss(out: torch.Tensor, y: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Cross-entropy on the time-averaged output."""
    return F.cross_entropy(time_average(out).float(), y, label_smoothing=label_smoothing)


def mse_rate_loss(out: torch.Tensor, y: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """MSE between the output firing rate and the one-hot target (SD-SNN)."""
    rate = time_average(out).float()
    target = F.one_hot(y, rate.shape[-1]).to(rate.dtype)
    if label_smoothing:
        target = target * (1 - label_smoothing) + label_smoothing / rate.shape[-1]
    return F.mse_loss(rate, target)


LossFn = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]  # (output [T, B, C], labels, smoothing)
LOSSES: dict[str, LossFn] = {"ce": ce_loss, "mse_rate": mse_rate_loss}


def get_loss(name: str) -> LossFn:
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"train.loss must be one of {sorted(LOSSES)}, got {name!r}") from None


class RateRecorder:
    """Forward hooks that average each site's activity: the firing rate of spiking sites, the
    fraction of non-zero outputs of ReLU sites. Use as a context manager."""

    def __init__(self, model: nn.Module) -> None:
        self.sites = neuron_sites(model)
        self.sums: dict[str, torch.Tensor | float] = dict.fromkeys(self.sites, 0.0)  # on the device: no sync per batch
        self.counts: dict[str, int] = dict.fromkeys(self.sites, 0)
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _hook(self, name: str) -> Callable[[nn.Module, object, torch.Tensor], None]:
        def record(_m: nn.Module, _inp: object, out: torch.Tensor) -> None:
            self.sums[name] = self.sums[name] + (out.detach() != 0).sum()
            self.counts[name] += out.numel()
        return record

    def __enter__(self) -> RateRecorder:
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in self.sites.items()]
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def rates(self) -> dict[str, float]:
        return {n: float(self.sums[n]) / self.counts[n] for n in self.sites if self.counts[n]}
