"""Where and in which precision the engine computes: the device choice and bf16 autocast."""

from __future__ import annotations

import contextlib

import torch

AMP_CHOICES = ("auto", "bf16", "off")


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA when available, else CPU; an explicit CUDA device must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        build = "built without CUDA" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise ValueError(f"device {name!r} requested but CUDA is not available on this machine (torch "
                         f"{torch.__version__}, {build}); use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} requested but this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


def autocast_context(device: torch.device, amp: str) -> contextlib.AbstractContextManager[object]:
    """``train.amp``: ``auto`` = bf16 autocast on CUDA only, ``bf16`` = always, ``off`` = never."""
    if amp not in AMP_CHOICES:
        raise ValueError(f"train.amp must be auto, bf16 or off, got {amp!r}")
    use = amp == "bf16" or (amp == "auto" and device.type == "cuda")
    if not use:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
