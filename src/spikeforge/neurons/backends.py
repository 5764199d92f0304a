"""One dispatch table for running neuron sequences.

A backend is a function ``(x_seq, params, v0) -> (spikes, v_T)`` with the numerics of
:func:`spikeforge.neurons.functional.neuron_sequence` (the ``reference``).
``auto`` picks the fastest backend available for the device of the input.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .functional import NeuronParams, neuron_sequence
from .fused import fused_sequence

SequenceFn = Callable[[torch.Tensor, NeuronParams, "torch.Tensor | None"], tuple[torch.Tensor, torch.Tensor]]

BACKENDS: dict[str, SequenceFn] = {
    "reference": neuron_sequence,
    "fused": fused_sequence,
}


def _register_triton() -> None:
    """Add the ``triton`` backend when Triton imports and a CUDA device is present."""
    if not torch.cuda.is_available():
        return
    try:
        from .triton_backend import triton_sequence
    except Exception:  # noqa: BLE001 - no (working) triton: the backend is simply absent
        return
    BACKENDS["triton"] = triton_sequence


_register_triton()

# Preference order for ``auto`` per device type; the first registered name wins. The Triton kernels
# have been checked only under Triton's CPU interpreter, never on a GPU, so ``auto`` does not pick
# them yet: select ``backend = "triton"`` explicitly (and run tests/test_triton.py on the GPU first).
AUTO_ORDER: dict[str, tuple[str, ...]] = {
    "cpu": ("fused", "reference"),
    "cuda": ("fused", "reference"),
}


def available_backends() -> list[str]:
    return ["auto", *BACKENDS]


def resolve_backend(name: str, device: torch.device) -> SequenceFn:
    """Return the sequence function for ``name`` (or the best one for ``device`` if ``auto``)."""
    if name == "auto":
        for candidate in AUTO_ORDER.get(device.type, ("reference",)):
            if candidate in BACKENDS:
                return BACKENDS[candidate]
        return BACKENDS["reference"]
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown neuron backend {name!r}; expected one of {available_backends()}") from None
