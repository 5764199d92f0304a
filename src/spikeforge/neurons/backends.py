"""One dispatch table for running neuron sequences.

A backend is a function ``(x_seq, params, v0) -> (spikes, v_T)`` with the numerics of
:func:`spikeforge.neurons.functional.neuron_sequence` (the ``reference``):

``reference``  autograd through the per-step loop;
``fused``      one autograd node per sequence, hand-written BPTT, eager in-place loops;
``compiled``   the same node with its loops compiled by ``torch.compile`` (compile time reported
               once, a failed compile reported; see :mod:`~spikeforge.neurons.compiled`);
``triton``     Triton kernels (registered only with CUDA and Triton present).

``auto`` is the first registered name of :data:`AUTO_ORDER` for the input's device: ``fused``
on CPU; ``triton`` on CUDA when Triton imports, else ``fused``. It never compiles with
``torch.compile`` (seconds per shape, which tests and short scripts should not pay); CPU training
runs choose ``compiled`` explicitly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .compiled import compiled_sequence
from .functional import NeuronParams, neuron_sequence
from .fused import fused_sequence

SequenceFn = Callable[[torch.Tensor, NeuronParams, "torch.Tensor | None"], tuple[torch.Tensor, torch.Tensor]]

BACKENDS: dict[str, SequenceFn] = {
    "reference": neuron_sequence,
    "fused": fused_sequence,
    "compiled": compiled_sequence,
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

# Preference order for ``auto`` per device type; the first registered name wins. ``triton`` leads on
# CUDA since tests/test_triton.py passed on a GPU (bench/gpu_check.sh on an H200, 2026-11-30:
# triton_auto_ready, fastest neuron and train-step backend there; BENCHMARKS.md §5).
AUTO_ORDER: dict[str, tuple[str, ...]] = {
    "cpu": ("fused", "reference"),
    "cuda": ("triton", "fused", "reference"),
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
