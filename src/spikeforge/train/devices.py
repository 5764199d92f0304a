"""Where and in which precision the engine computes: the device choice and bf16 autocast."""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("auto", "bf16", "fp32", "off")  # "off": the deprecated train.amp spelling of fp32


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


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager[object]:
    """``train.precision``: ``bf16`` = bf16 autocast on CPU and CUDA, ``auto`` = bf16 on CUDA only,
    ``fp32`` (or the deprecated ``train.amp`` value ``off``) = float32. Neuron membranes stay float32
    under autocast (:func:`spikeforge.neurons.state_dtype`)."""
    if precision not in PRECISIONS:
        raise ValueError(f"train.precision must be auto, bf16 or fp32, got {precision!r}")
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
