"""``spikeforge import FILE.nir --out RUN_DIR``: a NIR graph (any producer) as a run directory."""

from __future__ import annotations

import argparse
import json

from .outputs import Output

OUTPUT = Output("out", ("nir_file",))  # --force, and where it may not write: commands/outputs.py


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..nir.semantics import FIRES, PROFILES, RESETS, SPIKES

    p.add_argument("nir_file", help="a NIR graph (HDF5), e.g. written by snnTorch, Norse, Sinabs or spikeforge export")
    p.add_argument("--out", required=True, help="run directory to write")
    p.add_argument("--recipe", default=None,
                   help="recipe whose data/train sections the run uses (packaged name or TOML file); the model "
                        "section is the graph's")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set data.time_steps=300 (repeatable)")
    p.add_argument("--profile", choices=sorted(PROFILES), default=None,
                   help="how the producing library discretises NIR (dt, Euler/exact decay, threshold comparison, "
                        "reset); default: spikeforge for graphs spikeforge wrote, else nir (the spec)")
    p.add_argument("--dt", type=float, default=None, help="time step (overrides the profile's / the graph's)")
    p.add_argument("--reset", choices=RESETS, default=None, help="reset to v_reset (value) or subtract θ")
    p.add_argument("--fire", choices=FIRES, default=None, help="spike at v > θ (gt) or v ≥ θ (ge)")
    p.add_argument("--spikes", choices=SPIKES, default=None,
                   help="one spike per step, or floor(v/θ) (Sinabs' MultiSpike; needs --reset subtract)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from ..nir.rundir import import_run

    rep = import_run(args.nir_file, args.out, args.recipe, args.overrides, args.profile,
                     dt=args.dt, reset=args.reset, fire=args.fire, spikes=args.spikes)
    if args.json:
        print(json.dumps(rep, sort_keys=True))
        return 0
    types = ", ".join(f"{k} {v}" for k, v in rep["node_types"].items())
    sem = rep["semantics"]
    print(f"imported {rep['source']} -> {rep['run_dir']} ({rep['model_class']}, {rep['parameters']:,} parameters)")
    print(f"  {rep['nodes']} nodes ({types}), {rep['edges']} edges; input {rep['input_shape']}, "
          f"output {rep['output_shape']}")
    dt = sem["dt"] if sem["dt"] is not None else (
        "per node, from R (Rockpool's record of dt)" if sem.get("resistance") == "dt" else "not set")
    print(f"  profile {sem['profile']}: dt={dt}, decay {sem['decay']}, fire {sem['fire']}, "
          f"reset {sem['reset']}, spikes {sem['spikes']}")
    return 0
