"""``spikeforge compact``: remove pruned neurons from a structurally developed run."""

from __future__ import annotations

import argparse
import json

from .outputs import Output

OUTPUT = Output("out", ("run_dir",))  # --force, and where it may not write: commands/outputs.py


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run trained with a [develop] section")
    p.add_argument("--out", required=True, help="new run directory for the compacted model")
    p.add_argument("--data", default=None, help="dataset folder (default: as recorded in the run's recipe)")
    p.add_argument("--samples", type=int, default=256, help="test samples used to verify the outputs")
    p.add_argument("--batch-size", type=int, default=64,
                   help="test samples per batch (peak memory grows with this, not with --samples)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from ..develop.compact import compact_run

    rep = compact_run(args.run_dir, args.out, args.data, args.samples, batch_size=args.batch_size)
    if args.json:
        print(json.dumps(rep, sort_keys=True))
        return 0
    print(f"{rep['run_dir']} -> {rep['out_dir']}")
    for name, before in rep["widths_before"].items():
        print(f"  {name:<10} {before:>6} -> {rep['widths_after'][name]:>6} units")
    print(f"parameters {rep['params_before']:,} -> {rep['params_after']:,} "
          f"(compression {100 * rep['compression_rate']:.2f} %)")
    if "ops_before" in rep:
        b, a = rep["ops_before"], rep["ops_after"]
        print(f"SOPs/sample {b['sops']:.4g} -> {a['sops']:.4g}   energy {b['energy_pj'] / 1e6:.4g} -> "
              f"{a['energy_pj'] / 1e6:.4g} uJ/sample")
    print(f"max |output difference| on {rep['samples']} test samples (float64): "
          f"{rep['max_abs_output_diff']:.3g}")
    return 0
