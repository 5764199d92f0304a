"""Side-by-side comparison of site policies: train each, convert, verify, tabulate, plot.

For every policy the same recipe (same architecture, T, epochs, seed) is trained with
``[hybrid] sites = POLICY`` (``none`` = the pure SNN), converted into an all-spiking graph and
verified on the test set in float64. Each row reports the trained hybrid's accuracy, the
converted model's accuracy and exactness, and the converted model's SOPs, MACs and energy.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

from ..plots import new_figure, save_figure
from ..train.checkpoint import write_json
from ..train.run_files import RunDir
from ..train.schema import Recipe
from .config import HybridConfig
from .extension import SECTION

PLOT_NAME = "accuracy_vs_energy.png"
ROWS_NAME = "comparison.json"


def policy_dirname(policy: str) -> str:
    return policy.replace(":", "-").replace(",", "+").replace("*", "x").replace("/", "_")


def run_policy(base: Recipe, policy: str, out_dir: Path, data_root: str | Path | None, device: str,
               input_encoding: str, quiet: bool) -> dict[str, Any]:
    """Train, convert and verify one policy; returns its table row."""
    from ..reparam.runs import convert_run, verify
    from ..train.engine import train

    recipe = copy.deepcopy(base)
    base_cfg = base.section(HybridConfig)
    recipe.methods[SECTION] = dataclasses.replace(base_cfg, sites=policy) if base_cfg else HybridConfig(sites=policy)
    recipe.name = f"{base.name}-{policy_dirname(policy)}"
    run_dir = out_dir / policy_dirname(policy)
    record = train(recipe, run_dir, data_root=data_root, device=device, quiet=quiet)
    run = RunDir(run_dir)
    conv_dir = out_dir / f"{policy_dirname(policy)}-converted"
    convert_run(run_dir, conv_dir, input_encoding=input_encoding, data_root=data_root)
    res = verify(conv_dir, data_root=data_root, device="cpu", snn=False)
    conv = res["energy"]["converted"]
    sites = run.method_meta(SECTION).get("sites", [])
    return {"policy": policy, "sites": sites, "run_dir": str(run_dir), "converted_dir": str(conv_dir),
            "hybrid_accuracy": record["test_accuracy"], "hybrid_accuracy_f64": res["hybrid_accuracy"],
            "converted_accuracy": res["accuracy"],
            "max_abs_logit_diff": res["max_abs_logit_diff"], "argmax_agreement": res["argmax_agreement"],
            "binary_inputs": res["binary_inputs"], "sops": conv["sops"], "macs": conv["macs"],
            "energy_uj": conv["energy_pj"] / 1e6, "ann_energy_uj": res["energy"]["ann"]["energy_pj"] / 1e6,
            "train_time_s": sum(r["train_time_s"] for r in run.read_metrics())}


def compare_policies(base: Recipe, policies: list[str], out_dir: str | Path, data_root: str | Path | None = None,
                     device: str = "auto", input_encoding: str = "analog", quiet: bool = True) -> list[dict[str, Any]]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [run_policy(base, p, out, data_root, device, input_encoding, quiet) for p in policies]
    write_json(out / ROWS_NAME, rows)
    plot_accuracy_energy(rows, out / PLOT_NAME)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| policy | ReLU sites | hybrid acc % (float32, training run) | hybrid acc % (float64) | converted acc % "
             "| max |Δlogit| | argmax agree | binary inputs | SOPs/sample | MACs/sample | energy µJ/sample |",
             "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['policy']} | {', '.join(r['sites']) or '—'} | {100 * r['hybrid_accuracy']:.2f} | "
                     f"{100 * r['hybrid_accuracy_f64']:.2f} | {100 * r['converted_accuracy']:.2f} | "
                     f"{r['max_abs_logit_diff']:.2e} | "
                     f"{r['argmax_agreement']:.4f} | {r['binary_inputs']} | {r['sops']:.4g} | {r['macs']:.4g} | "
                     f"{r['energy_uj']:.4g} |")
    return "\n".join(lines)


def plot_accuracy_energy(rows: list[dict[str, Any]], path: Path) -> Path:
    fig = new_figure((6, 4))
    ax = fig.subplots()
    for r in rows:
        ax.scatter(r["energy_uj"], 100 * r["converted_accuracy"], s=40)
        ax.annotate(r["policy"], (r["energy_uj"], 100 * r["converted_accuracy"]), textcoords="offset points",
                    xytext=(5, 4), fontsize=8)
    ax.set_xlabel("energy per sample of the converted model (µJ, 45 nm)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("site policy: accuracy vs energy")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)
