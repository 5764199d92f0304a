"""``spikeforge demo``: the whole pipeline on the MNIST subset shipped inside the package."""

from __future__ import annotations

import argparse
import time

DEMO_RECIPE = "demo-mnist"
DEMO_POLICIES = ("none", "first:1")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="folder for the runs, converted models and plot")
    p.add_argument("--epochs", type=int, default=None, help="override the demo's epochs")
    p.add_argument("--device", default="auto")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")


def run(args: argparse.Namespace) -> int:
    import shutil
    from pathlib import Path

    from ..hybrid.compare import PLOT_NAME, compare_policies, format_table
    from ..hybrid.compare import ROWS_NAME as COMPARISON_MARKER
    from ..reparam.verify import LOGIT_TOLERANCE
    from ..train.recipe import load_recipe

    overrides = list(args.overrides) + ([f"train.epochs={args.epochs}"] if args.epochs is not None else [])
    recipe = load_recipe(DEMO_RECIPE, overrides)
    out = Path(args.out)
    if out.exists():
        if not (out / COMPARISON_MARKER).is_file():
            raise FileExistsError(f"--out {out} exists and is not an earlier demo output (no {COMPARISON_MARKER}); "
                                  "choose another --out")
        shutil.rmtree(out)
    print(recipe.description)
    print(f"training {len(DEMO_POLICIES)} models ({', '.join(DEMO_POLICIES)}) for {recipe.train.epochs} epochs, "
          "then converting and verifying each in float64 ...", flush=True)
    t0 = time.perf_counter()
    rows = compare_policies(recipe, list(DEMO_POLICIES), out, device=args.device, input_encoding="bitplane",
                            quiet=False)
    print()
    print(format_table(rows))
    ok = all(r["max_abs_logit_diff"] <= LOGIT_TOLERANCE and r["argmax_agreement"] == 1.0 and r["binary_inputs"]
             for r in rows)
    print()
    print(f"converted == hybrid (max |Δlogit| <= {LOGIT_TOLERANCE:g}, same argmax) and every synaptic layer sees "
          f"only binary spikes (bit-plane input encoding): {'yes' if ok else 'NO'}")
    print(f"plot: {out / PLOT_NAME}   runs: {out}/   ({time.perf_counter() - t0:.0f} s)")
    return 0 if ok else 1
