"""``spikeforge evaluate``."""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir")
    p.add_argument("--data", default=None, help="dataset folder (default: as recorded in the run's recipe)")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--best", action="store_true",
                   help="evaluate the checkpoint with the best test accuracy instead of the latest one")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def evaluate_run(run_dir: str, data_root: str | None = None, device: str = "auto",
                 batch_size: int | None = None, best: bool = False) -> dict:
    """Accuracy, loss and per-site firing rates of a run's model (latest or ``best`` checkpoint) on its test
    split, read by default from the folder the run was trained on (checked against its record)."""
    from ..train.engine import evaluate_model, resolve_device
    from ..train.rundir import load_run
    from ..train.validate import check_device

    if batch_size is not None and batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    check_device(device, "--device")
    dev = resolve_device(device)
    loaded = load_run(run_dir, dev, best=best)
    r = loaded.recipe
    splits = loaded.load_data(data_root)
    res = evaluate_model(loaded.model, splits.test, splits.info, r.data, batch_size or r.train.eval_batch_size,
                         dev, r.train.precision, r.train.seed, r.train.loss)
    res.update({"run_dir": str(run_dir), "recipe": r.name, "dataset": splits.info.name,
                "epoch": loaded.meta.get("epoch")})
    return res


def run(args: argparse.Namespace) -> int:
    res = evaluate_run(args.run_dir, args.data, args.device, args.batch_size, args.best)
    if args.json:
        print(json.dumps(res, sort_keys=True))
        return 0
    print(f"{res['run_dir']}: {res['recipe']} on {res['dataset']} (epoch {res['epoch']})")
    print(f"test accuracy {100 * res['accuracy']:.2f} %  loss {res['loss']:.4f}  ({res['samples']} samples)")
    print("site                      activity")
    for site, rate in res["firing_rates"].items():
        print(f"{site:<25} {rate:.4f}")
    return 0
