"""``spikeforge export RUN_DIR --out FILE.nir``: write a trained SNN as a NIR graph."""

from __future__ import annotations

import argparse
import json
import sys

from ..export.neuron_map import DEFAULT_DT
from .outputs import Output

OUTPUT = Output("out", ("run_dir",), "file")  # --force, and where it may not write: commands/outputs.py


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run directory of a pure SNN (also structurally developed or compacted runs)")
    p.add_argument("--out", required=True, help="NIR file to write (HDF5), e.g. model.nir")
    p.add_argument("--dt", type=float, default=DEFAULT_DT,
                   help="forward-Euler time step the NIR neuron parameters are computed for (default 1.0)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from ..export import export_run

    try:
        rep = export_run(args.run_dir, args.out, args.dt)
    except (ValueError, ImportError, OSError) as e:  # FileNotFoundError is an OSError
        print(f"spikeforge export: error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(rep, sort_keys=True))
        return 0
    types = ", ".join(f"{k} {v}" for k, v in rep["node_types"].items())
    print(f"exported {rep['run_dir']} ({rep['model']}) -> {rep['out']} ({rep['bytes']:,} bytes)")
    print(f"  {rep['nodes']} nodes ({types}), {rep['edges']} edges")
    print(f"  {rep['neurons']:,} neurons in {len(rep['neuron_sites'])} sites, "
          f"{rep['nonzero_weights']:,} / {rep['weights']:,} weights nonzero, dt = {rep['dt']:g}")
    print(f"  readout {rep['readout']!r}: average its output over the run's {rep['time_steps']} time steps")
    return 0
