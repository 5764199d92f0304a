"""Run-directory level API: ``convert_run`` (run → converted directory) and ``verify`` (on a test set).

The converted directory records its source run (``meta.source.run_dir``, absolute) so that
:func:`verify` rebuilds the hybrid with :func:`spikeforge.train.rundir.load_run`, loads the
recipe's dataset and feeds both models the same encoded test batches (one encoding draw per
batch, from a generator seeded with ``seed``). For a ``bitplane`` converted model the hybrid gets
``(p/255 − m)/σ`` computed in float64 from the pixels ``p`` the converted model gets; it is
checked against the recipe's own (float32) encoding to within :data:`ENCODING_TOLERANCE`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .convert import InputSpec, convert_model
from .graph import ConvertedGraph, load_graph, save_graph
from .verify import Batch, prepare_hybrid, pure_snn, verify_models

F64 = torch.float64
PIXEL_MAX = 255.0
KIB_PER_MIB = 1024.0  # ru_maxrss is in KiB on Linux
ENCODING_TOLERANCE = 1e-5  # float32 normalisation vs the float64 one
COUNT_TOLERANCE = 1e-12  # relative: per-sample counts are sums divided by the sample count
DEFAULT_BATCH = 50  # test samples per batch: peak memory depends on this, not on --limit


def input_spec(recipe: Any, encoding: str, data_root: str | Path | None) -> InputSpec:
    shape = (recipe.model.in_channels, recipe.model.input_size, recipe.model.input_size)
    if encoding != "bitplane":
        return InputSpec(shape, recipe.data.time_steps, encoding)
    if recipe.data.encoding != "direct":
        raise ValueError(f"--input-encoding bitplane needs data.encoding 'direct' (8-bit images), the run "
                         f"uses {recipe.data.encoding!r}")
    mean, std = tuple(recipe.data.mean), tuple(recipe.data.std)
    if not (mean and std):
        from ..data import load_dataset

        info = load_dataset(recipe.data, data_root).info
        if info.kind != "image":
            raise ValueError(f"--input-encoding bitplane needs 8-bit images, {info.name} holds {info.kind}")
        mean, std = mean or tuple(info.mean), std or tuple(info.std)
    return InputSpec(shape, recipe.data.time_steps, encoding, mean, std)


def convert_run(run_dir: str | Path, out_dir: str | Path, coding: str = "bitplane",
                input_encoding: str = "analog", data_root: str | Path | None = None) -> ConvertedGraph:
    """Convert a trained run into ``out_dir`` (``graph.json`` + ``model.safetensors``)."""
    from ..train.rundir import load_run

    run = load_run(run_dir, "cpu")
    spec = input_spec(run.recipe, input_encoding, data_root)
    graph = convert_model(run.model, spec, coding)
    hybrid_meta = run.meta.get("extensions", {}).get("hybrid", {})
    graph.meta["source"] = {"run_dir": str(Path(run_dir).resolve()), "recipe": run.recipe.name,
                            "model": run.recipe.model.name, "data": run.recipe.data.name,
                            "data_encoding": run.recipe.data.encoding,
                            "hybrid_sites": list(hybrid_meta.get("sites", [])),
                            "levels": hybrid_meta.get("levels")}
    save_graph(graph, out_dir)
    return graph


def peak_memory(device: torch.device) -> dict[str, float]:
    """Peak resident memory of this process (MiB; Linux ``ru_maxrss``) and, on CUDA, peak allocated."""
    import resource

    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB_PER_MIB}
    if device.type == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def _source_run(graph: ConvertedGraph, converted_dir: Path, run_dir: str | Path | None) -> Path:
    if run_dir is not None:
        return Path(run_dir)
    recorded = graph.meta.get("source", {}).get("run_dir")
    if not recorded:
        raise ValueError(f"{converted_dir}: the converted model records no source run; pass run_dir")
    path = Path(recorded)
    if not path.is_dir() and (converted_dir / recorded).is_dir():
        path = converted_dir / recorded
    return path


def dataset_batches(graph: ConvertedGraph, recipe: Any, splits: Any, device: torch.device, batch_size: int,
                    limit: int, seed: int) -> Iterator[Batch]:
    """Encoded test batches, identical for both models (see the module docstring)."""
    from ..data.encode import prepare_batch

    test = splits.test.subset(limit)
    gen = torch.Generator(device=device).manual_seed(seed)
    attrs = graph.input.attrs
    pixels = attrs["encoding"] in ("bitplane", "pixels")
    for i in range(0, len(test), batch_size):
        x, y = test.x[i:i + batch_size].to(device), test.y[i:i + batch_size].to(device)
        enc = prepare_batch(x, splits.info, recipe.data, None, gen, train=False).to(F64)
        if not pixels:
            yield Batch(enc, enc, y)
            continue
        if x.dtype != torch.uint8:
            raise ValueError("a bitplane model needs uint8 images")
        c = x.shape[1]
        mean = torch.tensor(attrs["mean"], dtype=F64, device=device).reshape(c, 1, 1)
        std = torch.tensor(attrs["std"], dtype=F64, device=device).reshape(c, 1, 1)
        pix = x.to(F64).unsqueeze(0).expand(enc.shape[0], *x.shape)
        hyb = (pix / PIXEL_MAX - mean) / std
        err = float((hyb - enc).abs().max())
        if err > ENCODING_TOLERANCE:
            raise ValueError(f"bitplane input: the recipe's encoding differs from (p/255 − mean)/std "
                             f"by {err:.3g}; the converted normalisation does not match the dataset's")
        yield Batch(hyb, pix, y)


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= COUNT_TOLERANCE * max(abs(a), abs(b), 1.0)


def verify(converted_dir: str | Path, data_root: str | Path | None = None, device: str = "cpu",
           batch_size: int = DEFAULT_BATCH, limit: int = 0, seed: int = 0, run_dir: str | Path | None = None,
           snn: bool = True, event: bool = False) -> dict[str, Any]:
    """Verify a converted directory against its source run on the recipe's test set (float64).

    ``event``: also run the event-driven runtime on the same batches (``result["event_runtime"]``,
    :func:`spikeforge.runtime.check.compare_on_batches`), checked equal to the dense executor and
    its accumulations against the verifier's SOPs (``counts_match_verifier``).
    """
    from ..train.rundir import load_run

    cdir = Path(converted_dir)
    dev = torch.device(device)
    graph = load_graph(cdir, dev)
    run = load_run(_source_run(graph, cdir, run_dir), dev)
    splits = run.load_data(data_root)  # the run's folder by default, compared with the data it recorded
    hybrid = prepare_hybrid(run.model)
    proxy = pure_snn(hybrid, run.recipe.model.neuron) if snn else None
    batches = dataset_batches(graph, run.recipe, splits, dev, batch_size, limit, seed)
    result = verify_models(hybrid, graph, batches, proxy)
    result["batch_size"] = batch_size
    if event:
        from ..runtime.check import compare_on_batches

        again = dataset_batches(graph, run.recipe, splits, dev, batch_size, limit, seed)  # same draws
        ev = compare_on_batches(graph, (b.converted_input for b in again), dev)
        ev["counts_match_verifier"] = _close(ev["accumulations_per_sample"], result["sops"]) and \
            _close(ev["macs_per_sample"], result["macs"])
        result["event_runtime"] = ev
    result.update(peak_memory(dev))
    result["converted_dir"] = str(cdir)
    result["source"] = graph.meta.get("source", {})
    result["input_encoding"] = graph.meta.get("input_encoding", graph.input.attrs["encoding"])
    result["coding"] = graph.meta.get("coding")
    return result
