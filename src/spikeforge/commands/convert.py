"""``spikeforge convert RUN_DIR --out DIR``: reparameterize a hybrid run into an all-spiking model."""

from __future__ import annotations

import argparse

from .outputs import Output

OUTPUT = Output("out", ("run_dir",))  # --force, and where it may not write: commands/outputs.py


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run directory written by `spikeforge train`")
    p.add_argument("--out", required=True, help="output folder (graph.json + model.safetensors)")
    p.add_argument("--coding", choices=("bitplane", "unary"), default="bitplane",
                   help="multi-level values as bit planes (ceil(log2(L+1)) planes) or unary (L planes)")
    p.add_argument("--input-encoding", choices=("analog", "bitplane"), default="analog",
                   help="analog: keep an analog first layer (costs MACs); bitplane: feed 8-bit pixels as 8 "
                        "binary planes with the normalisation folded in (the first layer only accumulates)")
    p.add_argument("--data", default=None, help="dataset folder (bitplane: to read the normalisation stats)")


def run(args: argparse.Namespace) -> int:
    from ..reparam import convert_run

    if args.data is not None:  # another folder than the run's: compared with the data the run recorded
        from ..train.rundir import load_run

        load_run(args.run_dir).load_data(args.data)
    graph = convert_run(args.run_dir, args.out, args.coding, args.input_encoding, args.data)
    ops: dict[str, int] = {}
    for n in graph.nodes:
        ops[n.op] = ops.get(n.op, 0) + 1
    print(f"converted {args.run_dir} -> {args.out}: {len(graph.nodes)} nodes "
          f"({', '.join(f'{k} {v}' for k, v in ops.items())}); coding {args.coding}, "
          f"input {args.input_encoding}")
    others = graph.non_neuron()
    print("only synapses, neurons, threshold units, sum pools and sums: exportable to NIR (spikeforge export)"
          if not others else f"not neuron-only: {', '.join(others)} (max pool of a real value; no NIR export)")
    if args.input_encoding == "analog":
        from ..train.rundir import RunDir, stored_recipe

        encoding = stored_recipe(RunDir(args.run_dir)).data.encoding
        if encoding == "rate":
            print("note: the input is rate-coded (binary spikes): the first layer only accumulates")
        else:
            print(f"note: the first layer reads the {encoding}-encoded input, which is not binary in general, "
                  "and costs MACs (static images: --input-encoding bitplane gives an accumulate-only first layer)")
    return 0
