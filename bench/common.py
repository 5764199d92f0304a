"""Shared helpers for the benchmark scripts: timing, memory, peer imports and markdown tables."""

from __future__ import annotations

import importlib
import statistics
import time
from collections.abc import Callable, Sequence
from types import ModuleType

import torch

NOT_INSTALLED = "not installed"
MIB = 2**20


def peer(module: str) -> ModuleType | None:
    """Import a peer library if it is installed in this environment (never a project dependency)."""
    try:
        return importlib.import_module(module)
    except Exception:  # noqa: BLE001 - a broken peer install counts as missing
        return None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    """Median wall time of ``fn`` in seconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_memory(fn: Callable[[], object], device: torch.device) -> float:
    """Peak memory of one call in MiB.

    CUDA: ``torch.cuda.max_memory_allocated`` above the baseline. CPU: bytes of the distinct
    tensors autograd saves for backward (the activation memory a training step holds at its
    peak), counted with ``saved_tensors_hooks``; parameters and inputs are included once.
    """
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        sync(device)
        return (torch.cuda.max_memory_allocated(device) - base) / MIB
    seen: set[tuple[int, int]] = set()
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if key not in seen:
            seen.add(key)
            total += key[1]
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total / MIB


def fmt_ratio(value: float | None, base: float | None) -> str:
    if value is None:
        return NOT_INSTALLED
    if base is None or base == 0:
        return f"{value:,.1f}"
    return f"{value:,.1f} ({value / base:.2f}×)"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}"
