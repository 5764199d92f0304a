"""Run-level NIR export: a run directory, a converted directory or an in-memory model → a NIR file.

Every path goes through :func:`spikeforge.reparam.convert_model` (the one model walker) and
:func:`.nir_graph.graph_to_nir`: a pure SNN becomes synapses and neurons, a hybrid's SpikingReLU
sites become threshold units (``coding``: bit planes or unary), ``input_encoding = "bitplane"``
makes the graph read 8-bit pixels through threshold units.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ..reparam.convert import InputSpec, convert_model
from ..reparam.graph import GRAPH_FILE, ConvertedGraph, load_graph
from .nir_build import ExportOptions
from .nir_graph import graph_summary, graph_to_nir, import_nir, write_nir


def model_to_nir(model: nn.Module, input_shape: tuple[int, ...], options: ExportOptions | None = None,
                 metadata: dict[str, Any] | None = None, coding: str = "bitplane", time_steps: int = 0) -> Any:
    """A ``nir.NIRGraph`` of ``model`` (any model the converter supports) fed ``input_shape`` per step."""
    graph = convert_model(model, InputSpec(tuple(int(s) for s in input_shape), time_steps), coding)
    return graph_to_nir(graph, options, metadata)


def _write(graph: ConvertedGraph, out_path: str | Path, options: ExportOptions, extra: dict[str, Any],
           ) -> dict[str, Any]:
    nir_graph = graph_to_nir(graph, options, extra)
    path = write_nir(nir_graph, out_path)
    summary = graph_summary(nir_graph)
    summary.update(out=str(path), bytes=path.stat().st_size, input_shape=list(graph.input.attrs["shape"]),
                   time_steps=int(graph.meta.get("time_steps", 0)), coding=graph.meta.get("coding"),
                   input_encoding=graph.meta.get("input_encoding"), neuron_only=not graph.non_neuron())
    return summary


def export_run(run_dir: str | Path, out_path: str | Path, options: ExportOptions | None = None,
               coding: str = "bitplane", input_encoding: str = "analog",
               data_root: str | Path | None = None) -> dict[str, Any]:
    """Export a run directory (or a directory written by ``spikeforge convert``) to the NIR file ``out_path``."""
    import_nir()  # fail before loading anything when nir is missing
    options = options or ExportOptions()
    src = Path(run_dir)
    if (src / GRAPH_FILE).is_file():
        graph = load_graph(src)
        extra = {"source_converted": str(src.resolve()), **{f"source_{k}": v for k, v in
                                                            graph.meta.get("source", {}).items()
                                                            if isinstance(v, str | int | float)}}
        summary = _write(graph, out_path, options, extra)
        summary.update(run_dir=str(run_dir), model=graph.meta.get("source", {}).get("model"))
        return summary
    from ..reparam.runs import input_spec
    from ..train.rundir import load_run

    run = load_run(src, "cpu")
    spec = input_spec(run.recipe, input_encoding, data_root)
    graph = convert_model(run.model, spec, coding)
    graph.meta["time_steps"] = int(run.recipe.data.time_steps)
    cfg = run.recipe.model
    extra = {"source_run": str(src.resolve()), "recipe": run.recipe.name, "model": cfg.name,
             "data_encoding": run.recipe.data.encoding}
    summary = _write(graph, out_path, options, extra)
    summary.update(run_dir=str(run_dir), model=cfg.name)
    return summary
