"""Benchmark: dense converted model vs the event-driven runtime at controlled firing rates.

An FC-heavy spiking model (an MLP ``784 → H → H → 10``, or SD-SNN's convnet with ``--model sdsnn``)
is converted (:func:`spikeforge.reparam.convert_model`) and fed synthetic Bernoulli spike inputs
at rate ``r``; every neuron threshold is then bisected, layer by layer on the same batch, until
that layer fires at about ``r`` too (the table reports the measured mean synaptic input rate).
For each rate the script times ``ConvertedModel`` (dense float64 conv/matmul) and
``EventRuntime`` (sparse sums of the active inputs' weight rows, float64), checks that they
agree (≤ 1e-9) and prints a markdown table with the accumulations the runtime performed and
the dense MACs of the same layers.

    python bench/event_runtime.py [--model mlp|sdsnn] [--hidden 2048] [--batch 32] [--time-steps 4]
                                  [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import time
from collections import OrderedDict

import torch

from spikeforge import layers as L
from spikeforge.models.common import Net
from spikeforge.models.sdsnn import sdsnn_convnet
from spikeforge.neurons import NeuronConfig
from spikeforge.reparam import ConvertedModel, InputSpec, convert_model
from spikeforge.reparam.graph import ConvertedGraph
from spikeforge.reparam.ops import neuron_op
from spikeforge.runtime import EventRuntime

RATES = (0.01, 0.05, 0.15, 0.30)
MNIST_SHAPE = (1, 28, 28)
CLASSES = 10
TOLERANCE = 1e-9
BISECT_STEPS = 40
THRESHOLD_FLOOR = 1e-6
MS = 1e3


def build(model: str, hidden: int) -> Net:
    neuron = NeuronConfig(kind="if", threshold=1.0, reset="soft", backend="reference")
    if model == "sdsnn":
        return sdsnn_convnet(num_classes=CLASSES, in_channels=1, input_size=28, neuron=neuron)
    d = MNIST_SHAPE[0] * MNIST_SHAPE[1] * MNIST_SHAPE[2]
    return Net(OrderedDict([("flatten", L.Flatten()), ("fc1", L.Linear(d, hidden)), ("sn1", neuron.build()),
                            ("fc2", L.Linear(hidden, hidden)), ("sn2", neuron.build()),
                            ("fc3", L.Linear(hidden, CLASSES))]))


def spikes(rate: float, t: int, b: int, gen: torch.Generator) -> torch.Tensor:
    return (torch.rand(t, b, *MNIST_SHAPE, generator=gen) < rate).to(torch.float64)


@torch.no_grad()
def set_rates(graph: ConvertedGraph, x: torch.Tensor, rate: float) -> None:
    """Each neuron node's threshold, layer by layer, bisected (geometrically) until it fires at ≈ ``rate``."""
    for n in graph.nodes:
        if n.op != "neuron":
            continue
        rec: dict[str, torch.Tensor] = {}
        ConvertedModel(graph)(x, rec.__setitem__)
        h = rec[n.inputs[0]]
        lo, hi = THRESHOLD_FLOOR, float(h.abs().max()) * h.shape[0] + 1.0
        for _ in range(BISECT_STEPS):
            mid = (lo * hi) ** 0.5
            if float(neuron_op(h, {**n.attrs, "threshold": mid}).mean()) > rate:
                lo = mid
            else:
                hi = mid
        n.attrs["threshold"] = hi


def timed(fn, repeats: int) -> tuple[float, object]:  # noqa: ANN001
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=("mlp", "sdsnn"), default="mlp")
    p.add_argument("--hidden", type=int, default=2048)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--time-steps", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave as is)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = build(args.model, args.hidden)
    gen = torch.Generator().manual_seed(0)
    print(f"model {args.model} (hidden {args.hidden}), T = {args.time_steps}, batch {args.batch}, float64, "
          f"{torch.get_num_threads()} threads, best of {args.repeats}\n")
    print("| input rate | mean layer input rate | dense (ms) | event-driven (ms) | dense / event | "
          "accumulations | dense MACs |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for rate in RATES:
        graph = convert_model(net, InputSpec(MNIST_SHAPE, args.time_steps))
        x = spikes(rate, args.time_steps, args.batch, gen)
        set_rates(graph, x, rate)
        dense = ConvertedModel(graph)
        runtime = EventRuntime(graph)
        with torch.no_grad():
            t_dense, y_dense = timed(lambda: dense(x), args.repeats)  # noqa: B023
            t_event, (y_event, rep) = timed(lambda: runtime.run(x), args.repeats)  # noqa: B023
        diff = float((y_dense - y_event).abs().max())
        if diff > TOLERANCE:
            raise SystemExit(f"runtime differs from the dense model by {diff}")
        dense_ops = sum(c.dense_macs for c in rep.layers)
        mean_rate = sum(c.rate for c in rep.layers) / len(rep.layers)
        print(f"| {rate:.0%} | {mean_rate:.3f} | {t_dense * MS:.2f} | {t_event * MS:.2f} | "
              f"{t_dense / t_event:.2f} | {rep.accumulations:,} | {dense_ops:,} |")


if __name__ == "__main__":
    main()
