"""Benchmark: dense converted model vs the event-driven runtime at controlled firing rates.

Models: an FC-heavy MLP ``784 → H → H → 10`` (``mlp``), SD-SNN's MNIST convnet (``sdsnn``:
two 3×3 convs with folded average pools, two linear layers) and SD-SNN's CIFAR-10 conv stack
(``cifar``: 3×32×32 input, 6 conv+BN layers at ``--width``, two linear layers). Each is converted
(:func:`spikeforge.reparam.convert_model`) and fed synthetic Bernoulli spike inputs at rate ``r``;
every neuron threshold is then bisected, layer by layer on the same batch, until that layer fires
at about ``r`` too (the table reports the measured mean synaptic input rate). For each rate the
script times ``ConvertedModel`` (dense float64 conv/matmul) and ``EventRuntime`` (float64; per
layer sparse or dense by the density crossover), checks that they agree (≤ 1e-9) and prints the
whole-model times, their ratio, and the time spent in the linear and in the conv layers of each
executor (per layer the best of ``--repeats`` runs of each, summed by kind). ``--layers`` adds a
per-layer table (method, rate, dense vs event time);
``--stream-steps N`` measures the peak memory (peak-RSS growth, in a fresh subprocess) of a
streamed run of ``N`` single steps against a whole-sequence run, for the first model; ``--json``
prints one JSON object instead of markdown.

    python bench/event_runtime.py [--model mlp sdsnn cifar] [--hidden 2048] [--width 0.25] [--batch 32]
                                  [--time-steps 4] [--repeats 3] [--rates 0.005 0.01 ...] [--threads N]
                                  [--kernel auto|native|torch]
                                  [--layers] [--stream-steps 1000] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from spikeforge import layers as L
from spikeforge.models.common import Net
from spikeforge.models.sdsnn import cifar_convnet, sdsnn_convnet
from spikeforge.neurons import NeuronConfig
from spikeforge.reparam import ConvertedModel, InputSpec, convert_model
from spikeforge.reparam.executor import module_key
from spikeforge.reparam.graph import ConvertedGraph
from spikeforge.reparam.ops import neuron_op
from spikeforge.runtime import EventRuntime, RuntimeConfig, StreamingRuntime

RATES = (0.005, 0.01, 0.02, 0.05, 0.10, 0.15, 0.30)
SHAPES = {"mlp": (1, 28, 28), "sdsnn": (1, 28, 28), "cifar": (3, 32, 32)}
CLASSES = 10
TOLERANCE = 1e-9
BISECT_STEPS = 40
THRESHOLD_FLOOR = 1e-6
MS = 1e3
KIB_PER_MIB = 1024.0  # ru_maxrss is in KiB on Linux
WHOLE_STEPS_CAP = 200  # the whole-sequence memory comparison runs at most this many steps
STREAM_RATE = 0.05


def build(model: str, hidden: int, width: float) -> Net:
    neuron = NeuronConfig(kind="if", threshold=1.0, reset="soft", backend="reference")
    if model == "sdsnn":
        return sdsnn_convnet(num_classes=CLASSES, in_channels=1, input_size=28, neuron=neuron)
    if model == "cifar":
        return cifar_convnet(num_classes=CLASSES, in_channels=3, input_size=32, width=width, neuron=neuron)
    d = SHAPES["mlp"][0] * SHAPES["mlp"][1] * SHAPES["mlp"][2]
    return Net(OrderedDict([("flatten", L.Flatten()), ("fc1", L.Linear(d, hidden)), ("sn1", neuron.build()),
                            ("fc2", L.Linear(hidden, hidden)), ("sn2", neuron.build()),
                            ("fc3", L.Linear(hidden, CLASSES))]))


def spikes(shape: tuple[int, ...], rate: float, t: int, b: int, gen: torch.Generator) -> torch.Tensor:
    return (torch.rand(t, b, *shape, generator=gen) < rate).to(torch.float64)


@torch.no_grad()
def set_rates(graph: ConvertedGraph, x: torch.Tensor, rate: float) -> None:
    """Each neuron node's threshold, layer by layer, bisected (geometrically) until it fires at ≈ ``rate``."""
    for n in graph.nodes:
        if n.op != "neuron":
            continue
        rec: dict[str, torch.Tensor] = {}
        ConvertedModel(graph)(x, lambda node, _xs, y, store=rec: store.__setitem__(node.name, y))
        h = rec[n.inputs[0]]
        lo, hi = THRESHOLD_FLOOR, float(h.abs().max()) * h.shape[0] + 1.0
        for _ in range(BISECT_STEPS):
            mid = (lo * hi) ** 0.5
            if float(neuron_op(h, {**n.attrs, "threshold": mid}).mean()) > rate:
                lo = mid
            else:
                hi = mid
        n.attrs["threshold"] = hi


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Best wall time of ``repeats`` calls after one untimed warm-up call (layer preparation, caches)."""
    out = fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


class LayerTimer:
    """Wall time per synaptic module of a dense :class:`ConvertedModel` (forward pre/post hooks)."""

    def __init__(self, model: ConvertedModel, graph: ConvertedGraph) -> None:
        self.seconds: dict[str, float] = {}
        self._t0 = 0.0
        for n in graph.synaptic():
            mod = model.synapses[module_key(n.name)]
            mod.register_forward_pre_hook(self._start)
            mod.register_forward_hook(self._stop(n.name))

    def _start(self, _m: nn.Module, _i: object) -> None:
        self._t0 = time.perf_counter()

    def _stop(self, name: str) -> Callable[[nn.Module, object, object], None]:
        def hook(_m: nn.Module, _i: object, _o: object) -> None:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - self._t0
        return hook


def measure(args: argparse.Namespace, model: str, net: Net, rate: float, gen: torch.Generator) -> dict[str, Any]:
    shape = SHAPES[model]
    graph = convert_model(net, InputSpec(shape, args.time_steps))
    x = spikes(shape, rate, args.time_steps, args.batch, gen)
    set_rates(graph, x, rate)
    dense, runtime = ConvertedModel(graph), EventRuntime(graph, config=RuntimeConfig(kernel=args.kernel))
    with torch.no_grad():
        t_dense, y_dense = timed(lambda: dense(x), args.repeats)
        t_event, (y_event, rep) = timed(lambda: runtime.run(x), args.repeats)
        timer = LayerTimer(dense, graph)  # per layer: the best of `repeats` more (hooked) runs of each
        layer_dense: dict[str, float] = {}
        layer_event: dict[str, float] = {}
        for _ in range(args.repeats):
            timer.seconds = {}
            dense(x)
            _, one = runtime.run(x)
            for c in one.layers:
                layer_dense[c.name] = min(layer_dense.get(c.name, float("inf")), timer.seconds[c.name])
                layer_event[c.name] = min(layer_event.get(c.name, float("inf")), c.seconds)
    diff = float((y_dense - y_event).abs().max())
    if diff > TOLERANCE:
        raise SystemExit(f"{model} at rate {rate}: the runtime differs from the dense model by {diff}")
    ops = {n.name: n.op for n in graph.synaptic()}
    layers = [{"name": c.name, "op": ops[c.name], "method": c.method, "rate": c.rate, "events": c.events,
               "accumulations": c.accumulations, "dense_macs": c.dense_macs, "dense_ms": layer_dense[c.name] * MS,
               "event_ms": layer_event[c.name] * MS} for c in one.layers]
    by_op = {f"{op}_{k}_ms": sum(lay[f"{k}_ms"] for lay in layers if lay["op"] == op)
             for op in ("linear", "conv") for k in ("dense", "event")}
    return {"model": model, "rate": rate, "mean_layer_rate": sum(c.rate for c in rep.layers) / len(rep.layers),
            "dense_ms": t_dense * MS, "event_ms": t_event * MS, "ratio": t_dense / t_event,
            "accumulations": rep.accumulations, "dense_macs": rep.dense_macs, "max_abs_diff": diff,
            **by_op, "layers": layers}


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "–"


def print_table(rows: list[dict[str, Any]], layers: bool) -> None:
    print("| input rate | mean layer input rate | dense (ms) | event-driven (ms) | dense / event | "
          "linear: dense / event | conv: dense / event | accumulations | dense MACs |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['rate']:.1%} | {r['mean_layer_rate']:.3f} | {r['dense_ms']:.2f} | {r['event_ms']:.2f} | "
              f"{r['ratio']:.2f} | {_ratio(r['linear_dense_ms'], r['linear_event_ms'])} | "
              f"{_ratio(r['conv_dense_ms'], r['conv_event_ms'])} | {r['accumulations']:,} | {r['dense_macs']:,} |")
    if not layers:
        return
    print("\n| input rate | layer | op | method | layer input rate | dense (ms) | event (ms) | dense / event |")
    print("|---:|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        for lay in r["layers"]:
            print(f"| {r['rate']:.1%} | {lay['name']} | {lay['op']} | {lay['method']} | {lay['rate']:.4f} | "
                  f"{lay['dense_ms']:.2f} | {lay['event_ms']:.2f} | {_ratio(lay['dense_ms'], lay['event_ms'])} |")


def memory_child(args: argparse.Namespace) -> None:
    """In a fresh process: peak RSS growth of a streamed or whole-sequence run of ``--stream-steps`` steps."""
    model, steps, mode = args.memory_child[0], int(args.memory_child[1]), args.memory_child[2]
    torch.manual_seed(0)
    shape = SHAPES[model]
    graph = convert_model(build(model, args.hidden, args.width), InputSpec(shape, steps))
    gen = torch.Generator().manual_seed(0)
    runtime = EventRuntime(graph, config=RuntimeConfig(kernel=args.kernel))
    step = spikes(shape, STREAM_RATE, 1, args.batch, gen)[0]
    with torch.no_grad():
        runtime.run(step[None])  # prepares the layers (weight tables), so only the run's memory is measured
    gc.collect()
    before = reset_peak()
    t0 = time.perf_counter()
    with torch.no_grad():
        if mode == "stream":
            stream = StreamingRuntime(runtime)
            for _ in range(steps):
                stream.step(step)  # the same spikes each step: the memory, not the input, is measured
        else:
            runtime.run(step.unsqueeze(0).expand(steps, *step.shape))
    peak = peak_rss_kib()
    print(json.dumps({"model": model, "mode": mode, "steps": steps, "batch": args.batch,
                      "seconds": time.perf_counter() - t0, "rss_growth_mb": (peak - before) / KIB_PER_MIB,
                      "peak_rss_mb": peak / KIB_PER_MIB}))


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak() -> int:
    """Reset the peak RSS (Linux ``clear_refs`` 5) and return the baseline (KiB): the current RSS, or the
    old peak (``ru_maxrss``) where the peak cannot be reset — then the growth shows only above that peak."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        rss = _status_kib("VmRSS")
        if rss is not None:
            return rss
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def peak_rss_kib() -> int:
    """The peak RSS since :func:`reset_peak` (``VmHWM``), else the process's ``ru_maxrss``."""
    hwm = _status_kib("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def stream_memory(args: argparse.Namespace, model: str) -> list[dict[str, Any]]:
    out = []
    whole = min(args.stream_steps, WHOLE_STEPS_CAP)
    for steps, mode in ((args.stream_steps, "stream"), (whole, "stream"), (whole, "whole")):
        cmd = [sys.executable, __file__, "--hidden", str(args.hidden), "--width", str(args.width),
               "--batch", str(args.batch), "--kernel", args.kernel, "--memory-child", model, str(steps), mode]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", nargs="+", choices=tuple(SHAPES), default=["mlp"])
    p.add_argument("--hidden", type=int, default=2048)
    p.add_argument("--width", type=float, default=0.25, help="cifar: channel width multiplier")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--time-steps", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rates", type=float, nargs="+", default=list(RATES))
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave as is)")
    p.add_argument("--kernel", choices=("auto", "native", "torch"), default="auto",
                   help="the runtime's event kernels: compiled C (native), torch/numpy, or auto (native if it builds)")
    p.add_argument("--layers", action="store_true", help="also print the per-layer table")
    p.add_argument("--stream-steps", type=int, default=0, help="measure streaming memory over N steps (0 = skip)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--memory-child", nargs=3, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args)
        return
    result: dict[str, Any] = {"threads": torch.get_num_threads(), "kernel": args.kernel, "time_steps": args.time_steps,
                              "batch": args.batch, "repeats": args.repeats, "models": {}}
    for model in args.model:
        torch.manual_seed(0)
        net = build(model, args.hidden, args.width)
        gen = torch.Generator().manual_seed(0)
        rows = [measure(args, model, net, rate, gen) for rate in args.rates]
        result["models"][model] = rows
        if not args.json:
            size = f"hidden {args.hidden}" if model == "mlp" else f"width {args.width}" if model == "cifar" else ""
            print(f"\nmodel {model} {size}, T = {args.time_steps}, batch {args.batch}, float64, "
                  f"{torch.get_num_threads()} threads, kernel {args.kernel}, best of {args.repeats}\n")
            print_table(rows, args.layers)
    if args.stream_steps:
        result["stream_memory"] = mem = stream_memory(args, args.model[0])
        if not args.json:
            print(f"\nstreaming memory ({args.model[0]}, batch {args.batch}, fresh process each)\n")
            print("| mode | steps | RSS growth (MiB) | peak RSS (MiB) | seconds |\n|---|---:|---:|---:|---:|")
            for m in mem:
                print(f"| {m['mode']} | {m['steps']} | {m['rss_growth_mb']:.1f} | {m['peak_rss_mb']:.1f} | "
                      f"{m['seconds']:.2f} |")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
