"""Command-line entry point: a thin dispatcher over :mod:`spikeforge.commands`.

Each command lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``;
its one-line help is in :data:`COMMANDS` (the single source), and its module is imported only when
the command runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("spikeforge.commands.demo", "train a small hybrid SNN on the bundled MNIST subset, convert, verify"),
    "recipes": ("spikeforge.commands.recipes", "list the packaged recipes"),
    "sites": ("spikeforge.commands.sites", "list a recipe's neuron sites and the hybrid policy's choice"),
    "train": ("spikeforge.commands.train", "train a model from a recipe into a run directory"),
    "evaluate": ("spikeforge.commands.evaluate", "test accuracy and firing rates of a run directory"),
    "convert": ("spikeforge.commands.convert", "reparameterize a hybrid run into an all-spiking model"),
    "verify": ("spikeforge.commands.verify", "check a converted model equals its hybrid, with binary inputs"),
    "compact": ("spikeforge.commands.compact",
                "remove pruned neurons from a structurally developed run (a smaller dense run, verified)"),
    "export": ("spikeforge.commands.export", "export a trained SNN to NIR (Neuromorphic Intermediate Representation)"),
    "import": ("spikeforge.commands.import", "import a NIR graph (snnTorch, Norse, Sinabs, spikeforge, ...) as a run"),
    "plot": ("spikeforge.commands.plot", "plot a run's metrics"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spikeforge", description="spikeforge: spiking neural networks — "
                                     "hybrid training, exact reparameterization, structural development")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser = build_parser()
        if argv and argv[0] not in ("-h", "--help"):
            parser.error(f"unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)}")
        parser.print_help()
        return 0
    name = argv[0]
    module_path, help_text = COMMANDS[name]
    module = importlib.import_module(module_path)
    parser = argparse.ArgumentParser(prog=f"spikeforge {name}", description=help_text)
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
