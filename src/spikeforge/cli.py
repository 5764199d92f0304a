"""Command-line entry point: a thin dispatcher over :mod:`spikeforge.commands`.

Each command lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``;
its one-line help is in :data:`COMMANDS` (the single source), and its module is imported only when
the command runs. A command that writes declares ``OUTPUT`` (:class:`~spikeforge.commands.outputs.Output`):
it gets ``--force`` and runs guarded (:mod:`spikeforge.commands.outputs`).

Errors are caught here, once: ``spikeforge <command>: error: <message>`` on stderr, exit code 1
(2 for usage errors, from argparse; 130 after Ctrl-C, with where to resume). Warnings are one line
each, ``spikeforge <command>: warning: <message>``. ``--debug`` (anywhere on the command line) or
``SPIKEFORGE_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

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
DEBUG_FLAG, DEBUG_ENV = "--debug", "SPIKEFORGE_DEBUG"
EXIT_ERROR, EXIT_INTERRUPTED = 1, 130
# errors whose message is meant for users; any other exception is reported as an internal error
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, RuntimeError, ImportError, NotImplementedError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spikeforge", description="spikeforge: spiking neural networks — "
                                     "hybrid training, exact reparameterization, structural development",
                                     epilog=f"{DEBUG_FLAG} (or {DEBUG_ENV}=1): show tracebacks instead of one-line "
                                            "errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def one_line(error: BaseException) -> str:
    """The message of ``error`` on one line; exceptions that are not user errors name their type."""
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, USER_ERRORS):
        return text
    return f"{type(error).__name__}: {text} (an internal error; {DEBUG_FLAG} shows where, please report it)"


@contextlib.contextmanager
def warnings_as_lines(command: str, stream: TextIO | None = None) -> Iterator[None]:
    """Show each warning as one line ``spikeforge <command>: warning: ...``."""
    def show(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
        print(f"spikeforge {command}: warning: {' '.join(str(message).split())}", file=stream or sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="(?!spikeforge)")
        warnings.showwarning = show
        yield


class _Failed(Exception):
    """A guarded command returned a non-zero exit code: its output is rolled back like after an error."""


def _run(module: Any, args: argparse.Namespace) -> int:
    output = getattr(module, "OUTPUT", None)
    if output is None:
        return int(module.run(args) or 0)
    from .commands.outputs import guarded

    inputs = [Path(getattr(args, a)) for a in output.inputs if getattr(args, a, None)]
    try:
        with guarded(Path(getattr(args, output.arg)), inputs, args.force, output.kind):
            code = int(module.run(args) or 0)
            if code:
                raise _Failed(code)
    except _Failed as failed:
        return int(failed.args[0])
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    argv = [a for a in argv if a != DEBUG_FLAG]
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser = build_parser()
        if argv and argv[0] not in ("-h", "--help"):
            parser.error(f"unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)}")
        parser.print_help()
        return 0
    name = argv[0]
    try:
        with warnings_as_lines(name):
            module_path, help_text = COMMANDS[name]
            module = importlib.import_module(module_path)
            parser = argparse.ArgumentParser(prog=f"spikeforge {name}", description=help_text)
            module.add_arguments(parser)
            if getattr(module, "OUTPUT", None) is not None:
                parser.add_argument("--force", action="store_true",
                                    help="replace an existing output (only one spikeforge wrote; never an input)")
            args = parser.parse_args(argv[1:])  # a usage error exits here with code 2
            args.command_line = ["spikeforge", *argv]  # for messages that show how to run it again
            return _run(module, args)
    except KeyboardInterrupt as e:
        if debug:
            raise
        print(f"spikeforge {name}: interrupted{'; ' + str(e) if str(e) else ''}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:
        if debug:
            raise
        print(f"spikeforge {name}: error: {one_line(e)}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
