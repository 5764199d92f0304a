"""A trained (hybrid) run → converted graph → NIR file → re-run in an independent NIR simulator (and snnTorch).

For each plane coding: ``spikeforge convert`` + ``verify`` (float64, certificate, events), ``spikeforge
export`` to NIR, then the test suite's reference simulator (``tests/nir_reference.py``, numpy float64,
written from the NIR specification) runs the file on the same test inputs: every neuron's and threshold
unit's spikes are compared with the converted graph's, and the logits with the hybrid's. With
``--snntorch`` the file exported for snnTorch (``dt = 1e-4``) is also run by ``snntorch.import_nir``
(float32, one sample at a time).

    python bench/nir_roundtrip.py runs/mnist-hybrid --data ../shared/data/mnist --input-encoding bitplane \\
        --out runs/mnist-hybrid-nir --limit 2000 --snntorch
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import nir
import torch

from spikeforge.export import ExportOptions, export_run
from spikeforge.reparam import ConvertedModel, convert_run, load_graph, verify
from spikeforge.reparam.runs import dataset_batches, prepare_hybrid
from spikeforge.train.rundir import load_run

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from nir_reference import NirSimulator  # noqa: E402  (the test suite's independent simulator)

SNNTORCH_DT = 1e-4


def snntorch_logits(path: Path, x: torch.Tensor) -> torch.Tensor:
    from snntorch import utils
    from snntorch.import_nir import import_from_nir

    with contextlib.redirect_stdout(io.StringIO()):
        net = import_from_nir(nir.read(path))
    outs = []
    with torch.no_grad():
        for b in range(x.shape[1]):
            utils.reset(net)
            steps = [net(xt) for xt in x[:, b].float()]
            outs.append(torch.stack([o[0] if isinstance(o, tuple) else o for o in steps]))
    return torch.stack(outs, 1).double()


def roundtrip(run: Path, out: Path, coding: str, a: argparse.Namespace) -> dict[str, Any]:
    conv_dir = out / f"converted-{coding}"
    convert_run(run, conv_dir, coding, a.input_encoding, a.data)
    res = verify(conv_dir, a.data, batch_size=a.batch_size, limit=a.limit, snn=False)
    nir_path = export_run(conv_dir, out / f"model-{coding}.nir")["out"]
    graph, exported = load_graph(conv_dir), nir.read(nir_path)
    snn_path = out / f"model-{coding}-snntorch.nir"
    if a.snntorch:
        export_run(conv_dir, snn_path, ExportOptions(dt=SNNTORCH_DT))
    loaded = load_run(run, "cpu")
    hybrid = prepare_hybrid(loaded.model)
    from spikeforge.data import load_dataset

    splits = load_dataset(loaded.recipe.data, a.data)
    stats = {"max_dlogit_sim_vs_hybrid": 0.0, "max_dlogit_sim_vs_converted": 0.0, "spike_mismatches": 0,
             "spikes_compared": 0, "argmax_agree": 0, "samples": 0, "max_dlogit_snntorch_vs_hybrid": 0.0,
             "argmax_agree_snntorch": 0, "sim_margin": float("inf")}
    t0 = time.perf_counter()
    for batch in dataset_batches(graph, loaded.recipe, splits, torch.device("cpu"), a.batch_size, a.limit, 0):
        spikes: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            yc = ConvertedModel(graph)(batch.converted_input, lambda n, _x, y, rec=spikes: rec.__setitem__(n.name, y)
                                       if n.op in ("neuron", "threshold") else None)
            yh = hybrid(batch.hybrid_input)
        sim = NirSimulator(exported)
        rec = sim.run(batch.converted_input.numpy())
        stats["sim_margin"] = min(stats["sim_margin"], sim.margin)
        ys = torch.from_numpy(rec["output"])
        stats["max_dlogit_sim_vs_hybrid"] = max(stats["max_dlogit_sim_vs_hybrid"], float((ys - yh).abs().max()))
        stats["max_dlogit_sim_vs_converted"] = max(stats["max_dlogit_sim_vs_converted"],
                                                   float((ys - yc).abs().max()))
        stats["spike_mismatches"] += sum(int((torch.from_numpy(rec[k]) != v).sum()) for k, v in spikes.items())
        stats["spikes_compared"] += sum(v.numel() for v in spikes.values())
        stats["argmax_agree"] += int((ys.mean(0).argmax(-1) == yh.mean(0).argmax(-1)).sum())
        stats["samples"] += int(yh.shape[1])
        if a.snntorch and "snntorch_error" not in stats:
            try:
                yt = snntorch_logits(snn_path, batch.converted_input)
            except (AssertionError, NotImplementedError, ValueError) as e:  # what snnTorch cannot import
                stats["snntorch_error"] = f"{type(e).__name__}: {e}"
                continue
            stats["max_dlogit_snntorch_vs_hybrid"] = max(stats["max_dlogit_snntorch_vs_hybrid"],
                                                         float((yt - yh).abs().max()))
            stats["argmax_agree_snntorch"] += int((yt.mean(0).argmax(-1) == yh.mean(0).argmax(-1)).sum())
    stats["seconds"] = time.perf_counter() - t0
    cert = res["certificate"] or {}
    return {"coding": coding, "accuracy": res.get("accuracy"), "verify_max_dlogit": res["max_abs_logit_diff"],
            "verify_exact": res["exact"], "certificate": cert.get("guarantee"), "margin": cert.get("margin"),
            "max_bound": cert.get("max_bound"), "float32_certified": cert.get("float32_certified"),
            "float32_uncertified_decisions": cert.get("float32_uncertified_decisions"),
            "decisions": cert.get("decisions"),
            "neuron_only": res["neuron_only"], "binary_inputs": res["binary_inputs"],
            "events_per_sample": res["spikes"], "sops_per_sample": res["sops"], "unit_sops_per_sample":
            res["unit_sops"], "macs_per_sample": res["macs"], "energy_uj": res["energy_pj"] / 1e6,
            "nir_nodes": len(exported.nodes), "nir_bytes": Path(nir_path).stat().st_size, **stats}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--data", default=None)
    p.add_argument("--out", required=True)
    p.add_argument("--codings", nargs="+", default=["bitplane", "unary"])
    p.add_argument("--input-encoding", default="analog", choices=["analog", "bitplane"])
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--snntorch", action="store_true")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for coding in a.codings:  # written after each coding, so a long run keeps what it finished
        rows.append(roundtrip(Path(a.run), out, coding, a))
        (out / "roundtrip.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"{a.run}; {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print("| coding | NIR nodes | sim vs hybrid max |Δlogit| | spikes differing | argmax agree | "
          "snnTorch max |Δlogit| | certificate | events/sample | SOPs/sample | (units) | energy µJ |")
    print("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    for r in rows:
        snn = ("refused" if "snntorch_error" in r else f"{r['max_dlogit_snntorch_vs_hybrid']:.2g}") if a.snntorch \
            else "—"
        print(f"| {r['coding']} | {r['nir_nodes']} | {r['max_dlogit_sim_vs_hybrid']:.2g} | "
              f"{r['spike_mismatches']} / {r['spikes_compared']:,} | {r['argmax_agree'] / r['samples']:.4f} | "
              f"{snn} | {r['certificate']} | {r['events_per_sample']:.4g} | {r['sops_per_sample']:.4g} | "
              f"{r['unit_sops_per_sample']:.3g} | {r['energy_uj']:.4g} |")


if __name__ == "__main__":
    main()
