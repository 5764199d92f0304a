"""SD-SNN on real data: unpruned baseline vs the ablation constraint-only / +pruning /
+regeneration / full adaptive (and full with our neuron revival), same recipe, seed and epochs;
every developed run is compacted.

    python bench/develop_ablation.py --data ../shared/data/mnist --out runs/bench-develop-mnist \
        --epochs 6 --set data.train_limit=10000

Prints a markdown table: accuracy, pruning rate, parameters after compaction, SOPs and energy
per sample (spikeforge.energy conventions, on the first ``--samples`` test inputs).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

from spikeforge.develop.compact import compact_run
from spikeforge.train.engine import train
from spikeforge.train.recipe import load_recipe

VARIANTS: dict[str, list[str] | None] = {
    "baseline (no development)": None,
    "constraint only": ["develop.prune=false", "develop.regenerate=false"],
    "+ pruning (fixed rates)": ["develop.regenerate=false", "develop.adaptive_rates=false"],
    "+ regeneration (fixed rates)": ["develop.adaptive_rates=false"],
    "full SD-SNN (adaptive rates)": [],
    "full SD-SNN + revival (ours)": ["develop.regen_revives_neurons=true"],
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="mnist-sdsnn-develop")
    p.add_argument("--data", default=None)
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--samples", type=int, default=1000, help="test inputs used for SOP/energy counting")
    p.add_argument("--device", default="auto")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    a = p.parse_args()
    out = Path(a.out)
    rows = []
    t0 = time.perf_counter()
    for label, extra in VARIANTS.items():
        slug = label.replace(" ", "-").replace("(", "").replace(")", "").replace("+", "plus")
        recipe = load_recipe(a.recipe, [*a.overrides, f"train.epochs={a.epochs}", *(extra or [])])
        if extra is None:
            recipe = copy.deepcopy(recipe)
            recipe.methods.pop("develop", None)
        run_dir = out / slug
        rec = train(recipe, run_dir, data_root=a.data, device=a.device, quiet=True)
        row = {"variant": label, "test_accuracy": rec["test_accuracy"],
               "pruning_rate": rec.get("develop.pruning_rate", 0.0)}
        if extra is None:
            from spikeforge.develop.compact import encoded_test_inputs, ops_summary, param_count
            from spikeforge.train.rundir import load_run

            run = load_run(run_dir)
            x, _ = encoded_test_inputs(run.recipe, a.data, a.samples, None, run.recipe.train.seed)
            ops = ops_summary(run.model, x)
            row.update(params=param_count(run.model), sops=ops["sops"], energy_uj=ops["energy_pj"] / 1e6)
        else:
            rep = compact_run(run_dir, out / f"{slug}-compact", data_root=a.data, samples=a.samples)
            row.update(params_before=rep["params_before"], params_after=rep["params_after"],
                       compression_rate=rep["compression_rate"], max_abs_output_diff=rep["max_abs_output_diff"],
                       sops_after=rep["ops_after"]["sops"], energy_uj_after=rep["ops_after"]["energy_pj"] / 1e6,
                       sops_before=rep["ops_before"]["sops"], energy_uj_before=rep["ops_before"]["energy_pj"] / 1e6)
        rows.append(row)
        (out / "ablation.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"recipe {a.recipe}, overrides {a.overrides}, epochs {a.epochs}; {time.perf_counter() - t0:.0f} s")
    print("| variant | test acc % | pruning rate % | params (compacted) | compression % | SOPs/sample | "
          "energy µJ/sample | max |Δout| |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if "params_after" in r:
            print(f"| {r['variant']} | {100 * r['test_accuracy']:.2f} | {100 * r['pruning_rate']:.2f} | "
                  f"{r['params_before']:,} → {r['params_after']:,} | {100 * r['compression_rate']:.2f} | "
                  f"{r['sops_before']:.4g} → {r['sops_after']:.4g} | {r['energy_uj_before']:.4g} → "
                  f"{r['energy_uj_after']:.4g} | {r['max_abs_output_diff']:.1e} |")
        else:
            print(f"| {r['variant']} | {100 * r['test_accuracy']:.2f} | 0 | {r['params']:,} | 0 | {r['sops']:.4g} | "
                  f"{r['energy_uj']:.4g} | — |")


if __name__ == "__main__":
    main()
