"""``spikeforge train`` (also under ``torchrun --nproc_per_node N -m spikeforge.cli train ...``)."""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", required=True, help="packaged recipe name (see `spikeforge recipes`) or a TOML file")
    p.add_argument("--data", default=None, help="dataset folder (default: data.root or ../shared/data/...)")
    p.add_argument("--out", default=None, help="run directory (default: runs/<recipe name>)")
    p.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set train.optimizer.lr=0.05 (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")


def run(args: argparse.Namespace) -> int:
    from ..train.distributed import from_environment, teardown
    from ..train.engine import train
    from ..train.recipe import load_recipe

    overrides = list(args.overrides)
    if args.epochs is not None:
        overrides.append(f"train.epochs={args.epochs}")
    recipe = load_recipe(args.recipe, overrides)
    out = args.out or f"runs/{recipe.name}"
    try:
        record = train(recipe, out, data_root=args.data, device=args.device, resume=args.resume, quiet=args.quiet)
    finally:
        teardown()
    if not from_environment().is_main:
        return 0  # rank 0 reports
    print(json.dumps({"run_dir": out, "epoch": record.get("epoch"), "test_accuracy": record.get("test_accuracy"),
                      "best_test_accuracy": record.get("best_test_accuracy")}))
    return 0
