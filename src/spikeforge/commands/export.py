"""``spikeforge export DIR --out FILE.nir``: write a trained model (or a converted one) as a NIR graph."""

from __future__ import annotations

import argparse
import json

from ..export.neuron_map import DEFAULT_DT
from ..export.nir_build import DTYPES, POOL_NODES, SCALE_NODES, THRESHOLD_NODES
from .outputs import Output

OUTPUT = Output("out", ("run_dir",), "file")  # --force, and where it may not write: commands/outputs.py


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run directory (pure SNN, hybrid, developed or compacted run) or a directory "
                                   "written by `spikeforge convert`")
    p.add_argument("--out", required=True, help="NIR file to write (HDF5), e.g. model.nir")
    p.add_argument("--dt", type=float, default=DEFAULT_DT,
                   help="forward-Euler time step the NIR neuron parameters are computed for (default 1.0; "
                        "snnTorch's importer assumes 1e-4)")
    p.add_argument("--coding", choices=("bitplane", "unary"), default="bitplane",
                   help="hybrid sites' levels as bit-plane threshold units (successive approximation) or unary")
    p.add_argument("--input-encoding", choices=("analog", "bitplane"), default="analog",
                   help="analog: the graph reads the encoded input; bitplane: 8-bit pixels through threshold units")
    p.add_argument("--data", default=None, help="dataset folder (bitplane: to read the normalisation stats)")
    p.add_argument("--dtype", choices=DTYPES, default="float64", help="dtype of every array in the file")
    p.add_argument("--threshold-node", choices=THRESHOLD_NODES, default="lif",
                   help="threshold units as LIF with tau = dt (portable) or NIR Threshold")
    p.add_argument("--scale-node", choices=SCALE_NODES, default="synapse",
                   help="weighted edges as diagonal 1x1 Conv2d / Affine (portable) or NIR Scale")
    p.add_argument("--pool-node", choices=POOL_NODES, default="avg", help="AvgPool2d or SumPool2d")
    p.add_argument("--unit-r", action="store_true", help="fold every neuron's R into its incoming weights (R = 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from ..export import ExportOptions, export_run

    options = ExportOptions(dt=args.dt, dtype=args.dtype, threshold_node=args.threshold_node,
                            scale_node=args.scale_node, pool_node=args.pool_node, unit_r=args.unit_r)
    rep = export_run(args.run_dir, args.out, options, args.coding, args.input_encoding, args.data)
    if args.json:
        print(json.dumps(rep, sort_keys=True))
        return 0
    types = ", ".join(f"{k} {v}" for k, v in rep["node_types"].items())
    print(f"exported {rep['run_dir']} ({rep['model']}) -> {rep['out']} ({rep['bytes']:,} bytes)")
    print(f"  {rep['nodes']} nodes ({types}), {rep['edges']} edges")
    print(f"  {rep['neurons']:,} neurons and threshold units in {len(rep['neuron_sites'])} nodes, "
          f"{rep['nonzero_weights']:,} / {rep['weights']:,} weights nonzero, dt = {rep['dt']:g}")
    print(f"  readout {rep['readout']!r}: average the output over the run's {rep['time_steps']} time steps")
    return 0
