"""Shared helpers for the benchmark scripts: timing, memory, peer imports and markdown tables."""

from __future__ import annotations

import contextlib
import importlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType

import torch

from spikeforge.threads import auto_threads, free_cores

__all__ = ["auto_threads", "free_cores"]  # re-exported for the bench scripts
NOT_INSTALLED = "not installed"
MIB = 2**20
# one CPU-bound job beside the benchmark: a single-threaded float32 matrix product loop
BUSY_JOB = "import torch; torch.set_num_threads(1); a = torch.randn(384, 384)\nwhile True: a = (a @ a).tanh_()"


def peer(module: str) -> ModuleType | None:
    """Import a peer library if it is installed in this environment (never a project dependency)."""
    try:
        return importlib.import_module(module)
    except Exception:  # noqa: BLE001 - a broken peer install counts as missing
        return None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Interleaved:
    """Per-column seconds of every round, timed in one process in rotating order."""

    times: dict[str, list[float]]

    def median(self, col: str) -> float:
        return statistics.median(self.times[col])

    def ratio(self, col: str, base: str) -> tuple[float, float, float]:
        """Speed of ``col`` relative to ``base`` (``base`` time / ``col`` time) per round:
        (median, min, max). Pairing each round's two times cancels most of a shared
        machine's drift."""
        r = [b / c for b, c in zip(self.times[base], self.times[col], strict=True)]
        return statistics.median(r), min(r), max(r)


CLOCKS: dict[str, Callable[[], float]] = {
    "wall": time.perf_counter,
    # CPU seconds of this process (all its threads): what the step cost, not how long the
    # scheduler kept it waiting — the steadier A/B measure on a shared machine with 1 thread
    "cpu": time.process_time,
}


def time_interleaved(fns: dict[str, Callable[[], object]], device: torch.device, warmup: int, repeats: int,
                     before: Callable[[str], None] | None = None, clock: str = "wall") -> Interleaved:
    """Time every function ``repeats`` times, one call of each per round, the order rotating
    from round to round (so no column always runs first or right after another); ``before(col)``
    runs untimed before each call (e.g. to set the thread count). ``clock``: see :data:`CLOCKS`."""
    now = CLOCKS[clock]
    cols = list(fns)
    for col in cols:
        if before:
            before(col)
        for _ in range(warmup):
            fns[col]()
    times: dict[str, list[float]] = {c: [] for c in cols}
    for r in range(repeats):
        k = r % len(cols)
        for col in cols[k:] + cols[:k]:
            if before:
                before(col)
            sync(device)
            start = now()
            fns[col]()
            sync(device)
            times[col].append(now() - start)
    return Interleaved(times)


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


@contextlib.contextmanager
def busy_beside(jobs: int) -> Iterator[None]:
    """Run ``jobs`` CPU-bound processes (:data:`BUSY_JOB`) beside the benchmark, stopped after."""
    procs = [subprocess.Popen([sys.executable, "-c", BUSY_JOB], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for _ in range(jobs)]
    try:
        if procs:
            time.sleep(1.0)  # let them start spinning
        yield
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


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
