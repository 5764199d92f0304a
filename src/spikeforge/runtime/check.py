"""The event runtime on a stream of test batches, checked against the dense executor.

Used by ``spikeforge verify --event``: every batch (bounded size, so memory does not grow with
the number of samples) runs through :class:`ConvertedModel` (dense float64) and
:class:`EventRuntime`; the result holds ``max |y_event − y_dense|`` (required ≤ ``tolerance``),
both wall times, the merged per-layer :class:`RuntimeReport` and the per-sample accumulations
(comparable with the verifier's ``sops``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import torch

from ..reparam.executor import ConvertedModel
from ..reparam.graph import ConvertedGraph
from .events import EventRuntime, RuntimeConfig
from .report import MS_PER_S, LayerCount, RuntimeReport, format_layers

EVENT_TOLERANCE = 1e-9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def compare_on_batches(graph: ConvertedGraph, inputs: Iterable[torch.Tensor], device: torch.device,
                       config: RuntimeConfig | None = None, tolerance: float = EVENT_TOLERANCE) -> dict[str, Any]:
    """Run both executors on each ``[T, B, ...]`` converted-model input of ``inputs``."""
    dense = ConvertedModel(graph).to(device)
    runtime = EventRuntime(graph, device, config=config)
    total: RuntimeReport | None = None
    max_diff, dense_s, event_s = 0.0, 0.0, 0.0
    for x in inputs:
        x = x.to(device, torch.float64)
        t0 = time.perf_counter()
        yd = dense(x)
        _sync(device)
        t1 = time.perf_counter()
        ye, rep = runtime.run(x)
        _sync(device)
        event_s += time.perf_counter() - t1
        dense_s += t1 - t0
        max_diff = max(max_diff, float((yd - ye).abs().max()))
        if total is None:
            total = rep
        else:
            total.merge(rep)
    if total is None:
        raise ValueError("the event runtime saw no samples")
    out = total.to_dict()
    out.update({"max_abs_diff_vs_dense": max_diff, "equal": max_diff <= tolerance, "dense_seconds": dense_s,
                "event_seconds": event_s, "speedup": dense_s / event_s if event_s else 0.0,
                "accumulations_per_sample": total.accumulations / total.samples,
                "macs_per_sample": total.macs / total.samples})
    return out


def format_event_section(res: dict[str, Any]) -> list[str]:
    """Markdown lines of a :func:`compare_on_batches` result (for ``spikeforge verify``)."""
    lines = ["", f"event-driven runtime: {'equal' if res['equal'] else 'DIFFERENT'} to the dense executor "
             f"(max |difference| {res['max_abs_diff_vs_dense']:.3g}); dense {res['dense_seconds'] * MS_PER_S:.1f} ms, "
             f"events {res['event_seconds'] * MS_PER_S:.1f} ms ({res['speedup']:.2f}x); "
             f"{res['accumulations_per_sample']:.4g} accumulations per sample", ""]
    return lines + format_layers([LayerCount.from_dict(d) for d in res["layers"]])
