"""``spikeforge recipes``."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--show", metavar="NAME", help="print one recipe resolved (every default filled in)")


def run(args: argparse.Namespace) -> int:
    from ..train.recipe import load_recipe, packaged_recipes, to_toml

    if args.show:
        print(to_toml(load_recipe(args.show)), end="")
        return 0
    for name, desc in packaged_recipes().items():
        print(f"{name:<24} {desc}")
    return 0
