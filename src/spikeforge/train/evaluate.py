"""Evaluation of a model on a test split: accuracy, mean loss and per-site firing rates."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..data.base import ArrayDataset, DatasetInfo
from ..data.config import DataConfig
from ..data.encode import prepare_batch
from ..data.loader import iterate_batches
from .devices import autocast_context
from .metrics import RateRecorder, get_loss, time_average


@torch.no_grad()
def evaluate_model(model: nn.Module, ds: ArrayDataset, info: DatasetInfo, data_cfg: DataConfig,
                   batch_size: int, device: torch.device, amp: str = "off", seed: int = 0,
                   loss_name: str = "ce") -> dict[str, Any]:
    """Accuracy, mean loss and per-site firing rates on ``ds`` (stochastic encodings drawn with ``seed``)."""
    model.eval()
    loss_fn = get_loss(loss_name)
    gen = torch.Generator(device=device).manual_seed(seed)
    correct, total, loss_sum = 0, 0, 0.0
    with RateRecorder(model) as rec:
        for x, y in iterate_batches(ds, batch_size, shuffle=False, generator=None, device=device):
            inp = prepare_batch(x, info, data_cfg, None, gen, train=False)
            with autocast_context(device, amp):
                out = model(inp)
            out = out.float()
            loss_sum += float(loss_fn(out, y, 0.0)) * y.shape[0]
            correct += int((time_average(out).argmax(-1) == y).sum())
            total += y.shape[0]
    return {"accuracy": correct / max(1, total), "loss": loss_sum / max(1, total), "firing_rates": rec.rates(),
            "samples": total}
