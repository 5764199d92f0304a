"""``spikeforge train`` (also under ``torchrun --nproc_per_node N -m spikeforge.cli train ...``)."""

from __future__ import annotations

import argparse
import json
import shlex


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", required=True, help="packaged recipe name (see `spikeforge recipes`) or a TOML file")
    p.add_argument("--data", default=None, help="dataset folder (default: data.root or ../shared/data/...)")
    p.add_argument("--out", default=None, help="run directory (default: runs/<recipe name>)")
    p.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its newest intact checkpoint (same recipe; epochs may grow)")
    p.add_argument("--force", action="store_true",
                   help="replace the run in --out (deleted once the data is loaded; never a folder that is not a run "
                        "directory, never a run that is training)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set train.optimizer.lr=0.05 (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")


def resume_hint(out: str, command_line: list[str]) -> str:
    """Where an interrupted run stands and the command that continues it."""
    from ..train.run_files import RunDir

    try:
        epoch = RunDir(out).committed_epoch()
    except (OSError, ValueError):
        epoch = None
    args = [a for a in command_line if a not in ("--resume", "--force")]
    state = f"{out} holds the checkpoint of epoch {epoch}" if epoch else f"{out} holds no complete epoch yet"
    return f"{state}; continue with: {shlex.join([*args, '--resume'])}"


def run(args: argparse.Namespace) -> int:
    from ..train.distributed import from_environment, teardown
    from ..train.engine import train
    from ..train.recipe import load_recipe
    from ..train.validate import check_device

    check_device(args.device, "--device")
    if args.resume and args.force:
        raise ValueError("--resume continues a run and --force replaces it: pass one of them")
    overrides = list(args.overrides)
    if args.epochs is not None:
        overrides.append(f"train.epochs={args.epochs}")
    recipe = load_recipe(args.recipe, overrides)
    out = args.out or f"runs/{recipe.name}"
    try:
        record = train(recipe, out, data_root=args.data, device=args.device, resume=args.resume, quiet=args.quiet,
                       force=args.force)
    except KeyboardInterrupt:
        line = getattr(args, "command_line", ["spikeforge", "train", "--recipe", args.recipe, "--out", out])
        if args.out is None:
            line = [*line, "--out", out]
        raise KeyboardInterrupt(resume_hint(out, line)) from None
    finally:
        teardown()
    if not from_environment().is_main:
        return 0  # rank 0 reports
    print(json.dumps({"run_dir": out, "epoch": record.get("epoch"), "test_accuracy": record.get("test_accuracy"),
                      "best_test_accuracy": record.get("best_test_accuracy")}))
    return 0
