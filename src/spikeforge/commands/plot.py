"""``spikeforge plot``."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir")


def run(args: argparse.Namespace) -> int:
    from ..train.report import plot_run

    for path in plot_run(args.run_dir):
        print(path)
    return 0
