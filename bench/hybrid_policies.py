"""Pure SNN vs hybrid site policies vs their converted models, on real data.

Same recipe (architecture, T, epochs, seed) for every policy; each is trained, converted and
verified in float64; prints a markdown table and writes ``accuracy_vs_energy.png``.

    python bench/hybrid_policies.py --recipe demo-mnist --data ../shared/data/mnist \
        --set data.name=mnist --set data.train_limit=10000 --epochs 2 \
        --policies none last:1 last:2 every:2 --out runs/bench-hybrid-mnist
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from spikeforge.hybrid.compare import compare_policies, format_table
from spikeforge.train.recipe import load_recipe


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", required=True)
    p.add_argument("--data", default=None)
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--policies", nargs="+", default=["none", "last:1", "last:2", "every:2"])
    p.add_argument("--input-encoding", default="analog", choices=["analog", "bitplane"])
    p.add_argument("--device", default="auto")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    a = p.parse_args()
    overrides = a.overrides + ([f"train.epochs={a.epochs}"] if a.epochs else [])
    recipe = load_recipe(a.recipe, overrides)
    t0 = time.perf_counter()
    rows = compare_policies(recipe, a.policies, a.out, a.data, a.device, a.input_encoding, quiet=True)
    print(f"recipe {a.recipe} overrides {overrides}; T={recipe.data.time_steps}, epochs={recipe.train.epochs}, "
          f"seed={recipe.train.seed}; {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {time.perf_counter() - t0:.0f} s")
    print(format_table(rows))


if __name__ == "__main__":
    main()
