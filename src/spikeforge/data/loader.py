"""Mini-batches from an in-memory :class:`ArrayDataset`, moved to the training device per batch.

The dataset stays where it is (CPU memory, optionally pinned, or already on the device); each
batch is gathered there and copied to ``device`` in its stored dtype (``uint8`` images stay
``uint8``: normalisation happens on the device). Copies are ``non_blocking`` when the source
batch is in pinned memory and the target is a CUDA device.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from .base import ArrayDataset


def _to(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    if t.device == device:
        return t
    non_blocking = device.type == "cuda" and t.device.type == "cpu" and t.is_pinned()
    return t.to(device, non_blocking=non_blocking)


def iterate_batches(ds: ArrayDataset, batch_size: int, *, shuffle: bool, generator: torch.Generator | None,
                    device: torch.device | str, drop_last: bool = False,
                    pin_memory: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y)`` batches of ``ds`` on ``device``.

    ``shuffle`` draws a permutation with ``generator`` (a CPU generator, or one on the
    dataset's device; ``None`` = torch's default), so a seeded generator gives the same order
    every time. ``drop_last`` skips a final short batch. ``pin_memory`` pins each gathered
    CPU batch before a CUDA copy (useful with ``shuffle``, whose gathered batches are fresh
    tensors; slices of an already pinned dataset are pinned anyway).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device)
    n = len(ds)
    src = ds.x.device
    order = None
    if shuffle:
        gen_device = generator.device if generator is not None else torch.device("cpu")
        order = torch.randperm(n, generator=generator, device=gen_device).to(src)
    stop = n - n % batch_size if drop_last else n
    pin = pin_memory and device.type == "cuda" and src.type == "cpu"
    for lo in range(0, stop, batch_size):
        hi = min(lo + batch_size, n)
        if order is None:
            x, y = ds.x[lo:hi], ds.y[lo:hi]
        else:
            idx = order[lo:hi]
            x, y = ds.x.index_select(0, idx), ds.y.index_select(0, idx.to(ds.y.device))
        if pin:
            x, y = x.pin_memory(), y.pin_memory()
        yield _to(x, device), _to(y, device)
