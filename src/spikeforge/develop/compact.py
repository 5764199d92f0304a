"""Compaction: physically remove pruned neurons from a developed run → a smaller dense run.

A neuron is removed when all its incoming synapses are masked (neuronal pruning masks whole
rows; regeneration may bring some back, and then the neuron stays). With the masking of
:mod:`.masking` a removed neuron's pre-activation (and batch-norm output) is exactly 0, so it never
fires, and dropping it together with its batch-norm channel and its outgoing synapses (through
``Flatten``: its ``H×W`` block of inputs) leaves every output unchanged. Remaining masked synapses
of kept neurons are stored as exact zeros (``W ⊙ M``). See :mod:`.chain` for the index plan.

Compacted run format (a normal run directory, loadable by ``load_run``)::

    recipe.toml / model.json["recipe"]   the source recipe
    model.json["extensions"]["develop"]  {"layers": [], "widths": {layer: units kept}, "compacted_from": SRC}
                                          (other methods' metadata, e.g. hybrid sites, copied)
    model.safetensors                     plain dense weights of the smaller model (no masks)
    compact.json                          the report below

``load_run`` builds the full model, :meth:`DevelopMethod.restore` shrinks the layers named in the
metadata's ``widths`` and, as ``layers`` is empty, attaches no masks; the weights then load strictly.
(Before the widths moved into the metadata they were also a recipe field, ``develop.widths``; such
runs still load.) The buffers compaction drops are the ones the masks and the rules declare.
Verification runs the masked source model and the reloaded compacted model in float64 on real
test inputs and reports ``max_abs_output_diff``.
"""

from __future__ import annotations

import copy
import resource
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from .. import __version__
from ..train.checkpoint import load_state_into
from ..train.metrics import time_average
from ..train.recipe import Recipe, to_toml
from ..train.rundir import RunDir, build_from_meta, load_run, save_model
from .access import weight
from .chain import index_plan
from .config import DevelopConfig
from .extension import SECTION, kept_widths
from .masking import MASK_BUFFERS, alive_neurons, is_masked
from .rules import OWNED_BUFFERS

REPORT = "compact.json"
DEFAULT_BATCH = 64  # test samples per batch when verifying: the peak memory depends on this, not on --samples
KIB_PER_MIB = 1024.0  # ru_maxrss is in KiB on Linux
NORM_CHANNEL_KEYS = ("weight", "bias", "running_mean", "running_var")
DEV_BUFFERS = MASK_BUFFERS + OWNED_BUFFERS  # development state, not part of the compacted model


@torch.no_grad()
def compact_state(model: nn.Module) -> tuple[dict[str, int], dict[str, torch.Tensor]]:
    """Widths of the masked layers after removing dead neurons, and the compacted state dict."""
    keep = {n: alive_neurons(m.weight_mask).nonzero().flatten().cpu()
            for n, m in model.named_children() if is_masked(m)}
    state: dict[str, torch.Tensor] = {}
    for s in index_plan(model, keep):
        own = {k: v for k, v in s.module.state_dict().items() if k not in DEV_BUFFERS}
        if s.kind == "synapse":
            assert s.in_idx is not None and s.out_idx is not None
            m = cast("nn.Conv2d | nn.Linear", s.module)
            w = m.weight * m.weight_mask if is_masked(m) else m.weight
            dev = w.device
            state[f"{s.name}.weight"] = w[s.out_idx.to(dev)][:, s.in_idx.to(dev)].clone()
            if m.bias is not None:
                b = m.bias * alive_neurons(m.weight_mask).to(m.bias.dtype) if is_masked(m) else m.bias
                state[f"{s.name}.bias"] = b[s.out_idx.to(dev)].clone()
            continue
        for k, v in own.items():
            if s.kind == "norm" and k in NORM_CHANNEL_KEYS and s.out_idx is not None:
                v = v[s.out_idx.to(v.device)]
            elif s.kind == "other" and v.numel() > 1:
                raise NotImplementedError(f"{s.name}.{k}: per-unit state {tuple(v.shape)} unsupported")
            state[f"{s.name}.{k}"] = v.clone()
    return {n: len(idx) for n, idx in keep.items()}, state


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def ops_summary(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """SOPs, MACs and energy (pJ) per sample from :func:`spikeforge.energy.count_ops`."""
    from ..energy import count_ops

    model.eval()
    rep = count_ops(model, x)
    return {"sops": rep.sops, "macs": rep.macs, "energy_pj": rep.energy_pj, "event_sops": rep.event_sops,
            "event_energy_pj": rep.event_energy_pj}


def encoded_test_inputs(recipe: Recipe, data_root: str | Path | None, samples: int, splits: Any = None,
                seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoded ``[T, B, ...]`` inputs and labels of the first ``samples`` test samples."""
    from ..data import load_dataset
    from ..data.encode import prepare_batch

    splits = splits or load_dataset(recipe.data, data_root)
    ds = splits.test.subset(samples)
    gen = torch.Generator().manual_seed(seed)
    return prepare_batch(ds.x, splits.info, recipe.data, None, gen, train=False), ds.y


def encoded_test_batches(recipe: Recipe, data_root: str | Path | None, samples: int, batch_size: int,
                         splits: Any = None, seed: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``samples`` test samples, encoded ``[T, B, ...]``, ``batch_size`` at a time (one generator)."""
    from ..data import load_dataset
    from ..data.encode import prepare_batch

    splits = splits or load_dataset(recipe.data, data_root)
    ds = splits.test.subset(samples)
    gen = torch.Generator().manual_seed(seed)
    for i in range(0, len(ds), batch_size):
        yield prepare_batch(ds.x[i:i + batch_size], splits.info, recipe.data, None, gen, train=False), \
            ds.y[i:i + batch_size]


@torch.no_grad()
def compare_in_batches(src: nn.Module, dst: nn.Module, batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
                       count_energy: bool) -> dict[str, Any]:
    """Max |output difference| (float64), sample accuracies and ops of both models, batch by batch.

    Only one batch is in memory at a time, so the peak does not grow with the number of samples.
    """
    from ..energy import OpsCounter

    a64, b64 = copy.deepcopy(src).double().eval(), copy.deepcopy(dst).double().eval()
    counters = [OpsCounter(a64), OpsCounter(b64)] if count_energy else []
    for c in counters:
        c.__enter__()
    diff, n, correct = 0.0, 0, [0, 0]
    try:
        for x, y in batches:
            ya, yb = a64(x.double()), b64(x.double())
            diff = max(diff, float((ya - yb).abs().max()))
            for i, out in enumerate((ya, yb)):
                correct[i] += int((time_average(out).argmax(-1) == y).sum())
            n += int(y.shape[0])
    finally:
        for c in counters:
            c.__exit__()
    rep: dict[str, Any] = {"max_abs_output_diff": diff, "samples": n,
                           "sample_accuracy_before": correct[0] / max(1, n),
                           "sample_accuracy_after": correct[1] / max(1, n)}
    for tag, c in zip(("ops_before", "ops_after"), counters, strict=False):
        r = c.report()
        rep[tag] = {"sops": r.sops, "macs": r.macs, "energy_pj": r.energy_pj, "event_sops": r.event_sops,
                    "event_energy_pj": r.event_energy_pj}
    return rep


def write_compacted(src_recipe: Recipe, src_meta: dict[str, Any], widths: dict[str, int],
                    state: dict[str, torch.Tensor], out_dir: Path, source: str) -> nn.Module:
    """Write the compacted run directory; returns its model (built the way ``load_run`` builds it)."""
    ext = copy.deepcopy(src_meta.get("extensions", {}))
    kept = {**kept_widths(ext.get(SECTION, {})), **widths}  # a compacted run compacted again keeps both
    ext[SECTION] = {"layers": [], "batchnorms": {}, "widths": kept, "compacted_from": source}
    model = build_from_meta(src_recipe, {"extensions": ext})
    run = RunDir(out_dir)
    load_state_into(model, state, run.weights_path())
    extra = {"epoch": src_meta.get("epoch"), "compacted_from": source}
    save_model(out_dir, model, src_recipe, ext, extra)
    run.write_recipe(to_toml(src_recipe))
    return model


def compact_run(run_dir: str | Path, out_dir: str | Path, data_root: str | Path | None = None,
                samples: int = 256, splits: Any = None, count_energy: bool = True,
                batch_size: int = DEFAULT_BATCH) -> dict[str, Any]:
    """Compact a developed run into ``out_dir`` and verify it; returns (and saves) the report."""
    src_dir, out = Path(run_dir), Path(out_dir)
    if out.resolve() == src_dir.resolve():
        raise ValueError("compact: --out must differ from the run directory (inputs are never modified)")
    RunDir(out).check_new_model()
    src = load_run(src_dir, "cpu")
    if src.recipe.section(DevelopConfig) is None:
        raise ValueError(f"{src_dir}: not a structurally developed run (its recipe has no [develop] section)")
    widths, state = compact_state(src.model)
    out.mkdir(parents=True, exist_ok=True)
    write_compacted(src.recipe, src.meta, widths, state, out, str(src_dir))
    dst = load_run(out, "cpu")  # exactly what evaluate / convert will see
    batches = encoded_test_batches(src.recipe, data_root, samples, batch_size, splits or src.load_data(data_root),
                                   src.recipe.train.seed)
    before = {n: int(weight(m).shape[0]) for n, m in src.model.named_modules() if n in widths}
    report: dict[str, Any] = {
        "run_dir": str(src_dir), "out_dir": str(out), "widths_before": before, "widths_after": widths,
        "params_before": param_count(src.model), "params_after": param_count(dst.model),
        **compare_in_batches(src.model, dst.model, batches, count_energy), "batch_size": batch_size,
        "spikeforge": __version__,
    }
    report["compression_rate"] = 1.0 - report["params_after"] / max(1, report["params_before"])
    report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB_PER_MIB
    RunDir(out).write_json_artifact(REPORT, report)
    return report
