"""``spikeforge verify CONVERTED --data DIR [--json]``: converted == hybrid, binary inputs, energy."""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("converted", help="a directory written by `spikeforge convert`")
    p.add_argument("--data", default=None, help="dataset folder (default: as recorded in the run's recipe)")
    p.add_argument("--run", default=None, help="source run directory (default: the one recorded)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (float64 either way)")
    p.add_argument("--batch-size", type=int, default=50,
                   help="test samples per batch (peak memory grows with this, not with --limit)")
    p.add_argument("--limit", type=int, default=0, help="use the first N test samples (0 = all)")
    p.add_argument("--seed", type=int, default=0, help="seed of a stochastic encoding's draws")
    p.add_argument("--no-snn", action="store_true", help="skip the pure-SNN proxy measurement")
    p.add_argument("--event", action="store_true",
                   help="also run the event-driven runtime on the same batches: equality with the dense "
                        "executor, per-layer events, accumulations, method and time")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from ..reparam import verify
    from ..reparam.report import format_report, passed

    res = verify(args.converted, args.data, args.device, args.batch_size, args.limit, args.seed, args.run,
                 snn=not args.no_snn, event=args.event)
    if args.json:
        print(json.dumps(res, sort_keys=True))
    else:
        print(format_report(res), end="")
    return 0 if passed(res) else 1
