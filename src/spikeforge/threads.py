"""Intra-op thread count from the CPU cores actually free.

torch's default is one thread per core. When other jobs already keep cores busy, more threads
than free cores make OpenMP's barrier waits spin against those jobs, and a training step slows
down instead of speeding up (measured in BENCHMARKS.md §5: a ResNet-19 step with one CPU-bound job
beside it ran 2.0× faster on 1 thread than on the default 2, an SD-SNN step 4×).

    torch.set_num_threads(auto_threads())

:func:`free_cores` watches the idle share of all CPUs in ``/proc/stat`` for a moment (Linux; on
other systems it returns the cores this process may use, i.e. torch's default choice).
"""

from __future__ import annotations

import os
import time

CPU_SAMPLE_S = 0.5  # how long free_cores() watches /proc/stat
PROC_STAT = "/proc/stat"


def _cpu_times(path: str = PROC_STAT) -> tuple[int, int]:
    """(idle + iowait, total) jiffies of all CPUs together."""
    with open(path) as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return idle, sum(fields)


def usable_cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def free_cores(sample_s: float = CPU_SAMPLE_S) -> float:
    """Cores left idle by everything running now, watched for ``sample_s`` seconds (at most the
    cores this process may use)."""
    cores = usable_cores()
    try:
        idle0, total0 = _cpu_times()
        time.sleep(sample_s)
        idle1, total1 = _cpu_times()
    except (OSError, ValueError, IndexError):
        return float(cores)
    share = (idle1 - idle0) / max(1, total1 - total0)
    return min(float(cores), share * (os.cpu_count() or cores))


def threads_for(free: float) -> int:
    """Threads for ``free`` idle cores: rounded, at least one."""
    return max(1, int(free + 0.5))


def auto_threads(sample_s: float = CPU_SAMPLE_S) -> int:
    """Threads for the cores free now (:func:`free_cores`, :func:`threads_for`)."""
    return threads_for(free_cores(sample_s))


def apply_threads(setting: int | str, device_type: str = "cpu") -> str:
    """Set torch's intra-op threads from a recipe's ``train.threads`` (``"default"``, ``"auto"`` or a count)
    for a run on ``device_type``; returns what was done, for the run's log (nothing on CUDA)."""
    import torch

    if device_type != "cpu" or setting == "default":
        return ""
    if setting == "auto":
        free = free_cores()
        n = threads_for(free)
        torch.set_num_threads(n)
        return f"threads: {n} ({free:.1f} of {usable_cores()} cores free)"
    torch.set_num_threads(int(setting))
    return f"threads: {int(setting)}"
