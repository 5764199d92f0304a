"""One full training step (forward, backward, SGD) per library and per spikeforge setting.

    python bench/train_step.py                              # both models, the main table
    python bench/train_step.py --preset levers              # each speed lever, one at a time
    python bench/train_step.py --preset bf16                # bf16 autocast vs fp32
    python bench/train_step.py --beside 1 --preset threads  # another CPU-bound job beside it
    python bench/train_step.py --columns sj sf-compiled --repeats 5 --warmup 1   # a short pass
    python bench/train_step.py --models resnet19 --columns sj sf-compiled --profile sf-compiled  # the ceiling

Models (T = 4, LIF τ = 2, hard reset to 0, sigmoid surrogate α = 4, direct encoding):
  sdsnn_convnet on MNIST-size input (B = 64, 1×28×28);
  resnet19 at width 0.25 on CIFAR-size input (B = 32, 3×32×32).
spikeforge builds them with ``build_model``; SpikingJelly with its multi-step
``layer.Conv2d/BatchNorm2d/...`` and ``neuron.LIFNode``; snnTorch with ``torch.nn`` layers and
``Leaky(init_hidden=True)`` neurons stepped over T in a Python loop.

Measuring on a shared machine: every column is built and warmed up first, then the columns run
one step each per round, in an order that rotates every round, for ``--repeats`` rounds. The
table gives each column's median step time and its speed relative to SpikingJelly as the median
(and range) of the per-round ratios, so load that drifts during the run hits both sides of a
ratio alike. The load average before and after is printed; ``--beside N`` runs N CPU-bound
single-threaded jobs next to the benchmark (the "loaded" mode). Absolute numbers still need a
quiet machine; ratios and A/B comparisons are what a busy one can give.

On CUDA, SpikingJelly's neuron implementation is chosen at import by its environment variable
``SJ_LIF_CUDA_IMPLEMENTATION`` (auto = native CUDA kernel, then Triton, then torch); run the
script once per value to compare them (``bench/gpu_check.sh`` does).

Columns (``--columns``; see ``VARIANTS``): the peers, and spikeforge with one setting changed
at a time — neuron backend (``reference``/``fused``/``compiled``), activation memory format,
direct input as an expanded view (one step convolved once) or copied over T, whole-step
``torch.compile``, bf16 autocast, threads. Memory: bytes autograd holds for backward (CPU) or
the peak allocated (CUDA), from one extra forward after the timing.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import peer_models
import torch
import torch.nn.functional as F
from common import (
    NOT_INSTALLED,
    auto_threads,
    busy_beside,
    describe_device,
    load_average,
    markdown_table,
    peak_memory,
    time_interleaved,
)
from torch import nn

from spikeforge.models import ModelConfig, build_model
from spikeforge.neurons import NeuronConfig, compile_report

TIME_STEPS = 4
LEARNING_RATE = 0.05
MOMENTUM = 0.9
CLASSES = 10
MODELS = {  # name: (width, in_channels, input size, batch)
    "sdsnn_convnet": (1.0, 1, 28, 64),
    "resnet19": (0.25, 3, 32, 32),
}
Runner = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Variant:
    """One column: a library and, for spikeforge, its settings."""

    label: str
    library: str = "spikeforge"  # "spikeforge" | "spikingjelly" | "snntorch"
    backend: str = "compiled"  # spikeforge neuron backend
    memory_format: str = "channels_last"
    expanded_input: bool = True  # direct input as x.expand(T, ...) (no copies over T)
    precision: str = "fp32"  # "fp32" | "bf16" (autocast)
    whole_compile: bool = False  # torch.compile the model
    threads: int = 0  # intra-op threads for this column (0: the process setting; -1: auto from free cores)
    spike_convs: str = "auto"  # "auto": event-driven convolutions on sparse spikes | "dense": oneDNN only


SF = Variant("spikeforge compiled")  # the defaults of a training run with backend "compiled"
BEFORE = replace(SF, label="spikeforge before (compiled loops, contiguous, input copied over T, dense convs)",
                 memory_format="contiguous", expanded_input=False, spike_convs="dense")
VARIANTS: dict[str, Variant] = {
    "sj": Variant("SpikingJelly", "spikingjelly", expanded_input=False),
    "sj-bf16": Variant("SpikingJelly bf16", "spikingjelly", expanded_input=False, precision="bf16"),
    "snntorch": Variant("snnTorch", "snntorch", expanded_input=False),
    "sf-reference": replace(SF, label="spikeforge reference", backend="reference"),
    "sf-fused": replace(SF, label="spikeforge fused (eager)", backend="fused"),
    "sf-compiled": SF,
    "sf-triton": replace(SF, label="spikeforge triton", backend="triton"),
    "sf-before": BEFORE,
    "sf+channels-last": replace(BEFORE, label="+ channels-last", memory_format="channels_last"),
    "sf+expanded-input": replace(BEFORE, label="+ input expanded over T", expanded_input=True),
    "sf-dense-convs": replace(SF, label="spikeforge compiled, dense convolutions only", spike_convs="dense"),
    "sf-dense-whole-compile": replace(SF, label="spikeforge dense convolutions + whole-step torch.compile",
                                      spike_convs="dense", whole_compile=True),
    "sf-whole-compile": replace(SF, label="spikeforge + whole-step torch.compile", whole_compile=True),
    "sf-bf16": replace(SF, label="spikeforge bf16", precision="bf16"),
    "sf-fused-bf16": replace(SF, label="spikeforge fused (eager) bf16", backend="fused", precision="bf16"),
    "sf-bf16-whole-compile": replace(SF, label="spikeforge bf16 + whole-step torch.compile", precision="bf16",
                                     whole_compile=True),
    "sf-1-thread": replace(SF, label="spikeforge, 1 thread", threads=1),
    "sf-auto-threads": replace(SF, label="spikeforge, threads from free cores", threads=-1),
    "sj-1-thread": Variant("SpikingJelly, 1 thread", "spikingjelly", expanded_input=False, threads=1),
}
PRESETS: dict[str, list[str]] = {
    "table": ["sj", "snntorch", "sf-reference", "sf-fused", "sf-compiled"],
    "levers": ["sj", "sf-before", "sf+channels-last", "sf+expanded-input", "sf-dense-convs", "sf-compiled",
               "sf-whole-compile"],
    "bf16": ["sj", "sj-bf16", "sf-compiled", "sf-bf16", "sf-fused-bf16", "sf-bf16-whole-compile"],
    "threads": ["sj", "sj-1-thread", "sf-compiled", "sf-1-thread", "sf-auto-threads"],
    "gpu": ["sj", "sj-bf16", "sf-fused", "sf-compiled", "sf-triton", "sf-bf16"],
}
BASELINE = "sj"
PROFILE_STEPS = 3
PROFILE_TOP = 12


def neuron_config(backend: str) -> NeuronConfig:
    return NeuronConfig(kind="lif", tau=peer_models.LIF_TAU, reset="hard", v_reset=0.0, surrogate="sigmoid",
                        surrogate_params={"alpha": peer_models.SURROGATE_ALPHA}, backend=backend)


def build(name: str, v: Variant, device: torch.device) -> tuple[nn.Module, Runner] | None:
    """The model and its ``[T, B, ...] -> [T, B, classes]`` runner, or None if not available."""
    width, cin, size, _ = MODELS[name]
    if v.library == "spikingjelly":
        built = peer_models.spikingjelly_model(name, width, cin, size)
    elif v.library == "snntorch":
        built = peer_models.snntorch_model(name, width, cin, size)
    else:
        if v.backend == "triton" and device.type != "cuda":
            return None
        net = build_model(ModelConfig(name=name, num_classes=CLASSES, in_channels=cin, input_size=size,
                                      width=width, neuron=neuron_config(v.backend),
                                      memory_format=v.memory_format, spike_convs=v.spike_convs))
        built = (net, torch.compile(net, dynamic=False) if v.whole_compile else net)
    if built is None:
        return None
    built[0].to(device).train()
    return built


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_step_fn(net: nn.Module, run: Runner, x: torch.Tensor, y: torch.Tensor, device: torch.device,
                  precision: str) -> Callable[[], None]:
    opt = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast(device, precision):
            out = run(x)
        F.cross_entropy(out.float().mean(0), y).backward()
        opt.step()

    return step


def bench_model(name: str, cols: list[str], args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Build, warm up and time every column on one model (interleaved); returns a result dict."""
    _, cin, size, batch = MODELS[name]
    gen = torch.Generator().manual_seed(0)
    image = torch.randn(batch, cin, size, size, generator=gen).to(device)
    y = torch.randint(0, CLASSES, (batch,), generator=gen).to(device)
    expanded = image.unsqueeze(0).expand(TIME_STEPS, *image.shape)  # what direct encoding means
    copied = expanded.contiguous()
    steps: dict[str, Callable[[], None]] = {}
    inputs: dict[str, torch.Tensor] = {}
    runners: dict[str, Runner] = {}
    missing: list[str] = []
    failed: dict[str, str] = {}
    first_call: dict[str, float] = {}  # seconds of each column's first step (compiles included)
    for col in cols:
        v = VARIANTS[col]
        built = build(name, v, device)
        if built is None:
            missing.append(col)
            continue
        net, run = built
        step = train_step_fn(net, run, expanded if v.expanded_input else copied, y, device, v.precision)
        start = time.perf_counter()
        try:
            step()  # first call: compiles what the column compiles; a failure drops the column, not the run
        except Exception as err:  # noqa: BLE001 - reported in the table
            failed[col] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
            print(f"failed {name}: {v.label}: {failed[col]}", flush=True)
            continue
        first_call[col] = time.perf_counter() - start
        inputs[col] = expanded if v.expanded_input else copied
        runners[col] = run
        steps[col] = step
    default_threads = torch.get_num_threads()
    chosen: dict[str, int] = {}

    def set_threads(col: str) -> None:
        t = VARIANTS[col].threads
        if t == -1:
            t = chosen.setdefault(col, auto_threads())
        torch.set_num_threads(t if t > 0 else default_threads)

    timing = time_interleaved(steps, device, args.warmup, args.repeats, before=set_threads, clock=args.clock)
    torch.set_num_threads(default_threads)
    rows: dict[str, dict[str, Any]] = {}
    for col in steps:
        v = VARIANTS[col]
        with autocast(device, v.precision):
            mem = peak_memory(lambda r=runners[col], x=inputs[col]: r(x), device)
        row: dict[str, Any] = {"label": v.label, "ms": 1e3 * timing.median(col), "first_step_s": first_call[col],
                               "samples_per_s": batch / timing.median(col), "memory_mib": mem}
        if v.library == "spikeforge":
            row["settings"] = asdict(v)
        if col in chosen:
            row["threads_chosen"] = chosen[col]
        if BASELINE in steps:
            row["vs_sj"] = timing.ratio(col, BASELINE)
        rows[col] = row
        print(f"done {name}: {v.label} {row['samples_per_s']:.1f} samples/s", flush=True)
    result = {"model": name, "batch": batch, "time_steps": TIME_STEPS, "columns": rows, "missing": missing,
              "failed": failed}
    if args.profile in steps:
        result["profile"] = profile_step(steps[args.profile], rows, args.profile)
    return result


def profile_step(step: Callable[[], None], rows: dict[str, dict[str, Any]], col: str) -> dict[str, Any]:
    """Where one column's step goes (torch.profiler, self CPU time over PROFILE_STEPS steps), and the
    ceiling that sets: SpikingJelly's step time over this column's convolution time alone."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(PROFILE_STEPS):
            step()
    ops = sorted(((e.key, e.self_cpu_time_total) for e in prof.key_averages()), key=lambda kv: -kv[1])
    total = sum(t for _, t in ops)
    conv = sum(t for k, t in ops if "convolution" in k or "spike_conv" in k)
    out: dict[str, Any] = {"column": col, "conv_share": conv / total,
                           "top_ops": [(k, round(100 * t / total, 1)) for k, t in ops[:PROFILE_TOP]]}
    if BASELINE in rows:
        out["ceiling_vs_sj"] = rows[BASELINE]["ms"] / (rows[col]["ms"] * out["conv_share"])
    return out


def markdown(result: dict[str, Any]) -> str:
    base = result["columns"].get(BASELINE)
    header = ["column", "ms/step (median)", "samples/s", "× SpikingJelly: median (min–max of rounds)", "MiB held",
              "first step s"]
    rows = []
    for r in result["columns"].values():
        ratio = "—" if "vs_sj" not in r else "{:.2f}× ({:.2f}–{:.2f})".format(*r["vs_sj"])
        mem = f"{r['memory_mib']:,.1f}" + (f" ({r['memory_mib'] / base['memory_mib']:.2f}×)" if base else "")
        label = r["label"] + (f" [{r['threads_chosen']} threads]" if "threads_chosen" in r else "")
        rows.append([label, f"{r['ms']:,.1f}", f"{r['samples_per_s']:,.1f}", ratio, mem, f"{r['first_step_s']:.1f}"])
    rows += [[VARIANTS[c].label, NOT_INSTALLED, "", "", "", ""] for c in result["missing"]]
    rows += [[VARIANTS[c].label, f"failed: {err}", "", "", "", ""] for c, err in result["failed"].items()]
    title = f"### {result['model']}, B = {result['batch']}, T = {result['time_steps']}"
    return title + "\n\n" + markdown_table(header, rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--preset", default="table", choices=list(PRESETS))
    ap.add_argument("--columns", nargs="+", choices=list(VARIANTS), help="explicit columns (overrides --preset)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", default="0", help="torch threads for the process: N, 0 (torch's default) or auto")
    ap.add_argument("--beside", type=int, default=0, help="CPU-bound jobs to run beside the benchmark")
    ap.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                    help="wall time (default) or this process's CPU time (A/B on a busy machine, 1 thread)")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    ap.add_argument("--profile", default=None, choices=list(VARIANTS),
                    help="after timing, profile this column: op shares and the convolution-bound ceiling vs SJ")
    args = ap.parse_args()
    if args.threads == "auto":
        torch.set_num_threads(auto_threads())
    elif int(args.threads) > 0:
        torch.set_num_threads(int(args.threads))
    device = torch.device(args.device)
    torch.manual_seed(0)
    cols = args.columns or PRESETS[args.preset]
    results: dict[str, Any] = {"date": datetime.date.today().isoformat(), "machine": platform.processor() or
                               platform.machine(), "device": describe_device(device), "beside": args.beside,
                               "repeats": args.repeats, "clock": args.clock, "load_before": load_average(),
                               "models": []}
    with busy_beside(args.beside):
        results["load_start"] = load_average()
        for name in args.models:
            results["models"].append(bench_model(name, cols, args, device))
    results["load_after"] = load_average()
    results["compile"] = compile_report()
    print(f"\n# train step — {results['device']}; {args.beside} CPU-bound jobs beside; load average (1/5/15 min) "
          f"before {results['load_before']}, after {results['load_after']}; {args.repeats} interleaved rounds; "
          f"{args.clock} clock\n")
    for res in results["models"]:
        print(markdown(res) + "\n")
        if "profile" in res:
            prof = res["profile"]
            print(f"profile of {prof['column']}: convolutions (fwd + bwd) {100 * prof['conv_share']:.1f} % of the "
                  "step" + (f"; if everything else were free: {prof['ceiling_vs_sj']:.2f}× SpikingJelly"
                            if "ceiling_vs_sj" in prof else ""))
            print(markdown_table(["op", "% of self CPU time"], [[k, f"{v}"] for k, v in prof["top_ops"]]) + "\n")
    print(f"neuron compiles: {results['compile']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
