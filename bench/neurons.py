"""Neuron layer forward+backward throughput and memory, spikeforge vs SpikingJelly vs snnTorch.

    python bench/neurons.py                      # T = 4, 8, 16; B = 64; N = 4096
    python bench/neurons.py --steps 8 --repeats 5 --warmup 2   # a short pass

Each cell runs ``spikes = neuron(x); spikes.sum().backward()`` on ``x [T, B, N]`` (requires grad)
and reports million neuron-steps per second (T·B·N / median time) with the ratio to
SpikingJelly (median of per-round ratios), and the memory held for backward (CPU: saved-tensor
bytes; CUDA: peak allocated). All columns run in the same process, interleaved round by round
(``common.time_interleaved``), so their ratios hold even on a busy host; the load average is
printed. ``fused`` runs the eager loops, ``compiled`` the torch.compile-d ones (compile time
excluded: it happens in the warm-up calls and is printed once).

Neurons compared (hard reset to 0, θ = 1, sigmoid surrogate with α = 4 where selectable):
  IF:  spikeforge IFNode(v_reset=0) · SpikingJelly IFNode(step_mode="m") · snnTorch Leaky(β=1)
  LIF: spikeforge LIFNode(τ=2, v_reset=0) · SpikingJelly LIFNode(τ=2, step_mode="m") ·
       snnTorch Leaky(β=0.5, reset_mechanism="zero") stepped in a Python loop (as its docs do).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

import torch
from common import (
    CLOCKS,
    NOT_INSTALLED,
    describe_device,
    fmt_ratio,
    load_average,
    markdown_table,
    peak_memory,
    peer,
    time_interleaved,
)

from spikeforge.neurons import IFNode, LIFNode, Sigmoid, compile_report

SURROGATE_ALPHA = 4.0
LIF_TAU = 2.0
Runner = Callable[[torch.Tensor], torch.Tensor]


def spikeforge_runner(kind: str, backend: str) -> Runner:
    sg = Sigmoid(SURROGATE_ALPHA)
    node = (IFNode(v_reset=0.0, surrogate=sg, backend=backend) if kind == "IF"
            else LIFNode(tau=LIF_TAU, v_reset=0.0, surrogate=sg, backend=backend))
    return node


def spikingjelly_runner(kind: str) -> Runner | None:
    sj = peer("spikingjelly.activation_based.neuron")
    sj_sg = peer("spikingjelly.activation_based.surrogate")
    sj_fn = peer("spikingjelly.activation_based.functional")
    if sj is None or sj_sg is None or sj_fn is None:
        return None
    sg = sj_sg.Sigmoid(alpha=SURROGATE_ALPHA)
    node = (sj.IFNode(v_reset=0.0, surrogate_function=sg, step_mode="m") if kind == "IF"
            else sj.LIFNode(tau=LIF_TAU, v_reset=0.0, surrogate_function=sg, step_mode="m"))

    def run(x: torch.Tensor) -> torch.Tensor:
        sj_fn.reset_net(node)
        return node(x)

    return run


def snntorch_runner(kind: str, device: torch.device) -> Runner | None:
    snn = peer("snntorch")
    snn_sg = peer("snntorch.surrogate")
    if snn is None or snn_sg is None:
        return None
    beta = 1.0 if kind == "IF" else 1.0 - 1.0 / LIF_TAU
    node = snn.Leaky(beta=beta, threshold=1.0, reset_mechanism="zero",
                     spike_grad=snn_sg.sigmoid(slope=SURROGATE_ALPHA)).to(device)  # beta is a tensor: on the GPU too

    def run(x: torch.Tensor) -> torch.Tensor:
        mem = node.init_leaky()
        out = []
        for x_t in x:
            spk, mem = node(x_t, mem)
            out.append(spk)
        return torch.stack(out)

    return run


def runners(kind: str, compile_fused: bool, device: torch.device) -> dict[str, Runner | None]:
    cols: dict[str, Runner | None] = {
        "spikeforge reference": spikeforge_runner(kind, "reference"),
        "spikeforge fused (eager)": spikeforge_runner(kind, "fused"),
    }
    if compile_fused:
        cols["spikeforge compiled"] = spikeforge_runner(kind, "compiled")
    if device.type == "cuda":
        cols["spikeforge triton"] = spikeforge_runner(kind, "triton")
    cols["SpikingJelly"] = spikingjelly_runner(kind)
    cols["snnTorch"] = snntorch_runner(kind, device)
    return cols


def bench_cell(kind: str, steps: int, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """All columns on one (neuron, T) cell, interleaved; M neuron-steps/s, ratios and memory."""
    x = torch.randn(steps, args.batch, args.neurons, device=device).mul_(0.8).add_(0.6)
    x.requires_grad_()
    cols = runners(kind, not args.no_compile, device)
    fns: dict[str, Callable[[], None]] = {}
    for name, run in cols.items():
        if run is not None:
            def step(run: Runner = run) -> None:
                x.grad = None
                run(x).sum().backward()
            fns[name] = step
    timing = time_interleaved(fns, device, args.warmup, args.repeats, clock=args.clock)
    out: dict[str, Any] = {"neuron": kind, "T": steps, "columns": {}}
    for name in cols:
        if name not in fns:
            out["columns"][name] = None
            continue
        run = cols[name]
        assert run is not None
        col = {"m_steps_per_s": x.numel() / timing.median(name) / 1e6,
               "memory_mib": peak_memory(lambda run=run: run(x), device)}
        if "SpikingJelly" in fns:
            col["vs_sj"] = timing.ratio(name, "SpikingJelly")
        out["columns"][name] = col
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--neurons", type=int, default=4096)
    ap.add_argument("--kinds", nargs="+", default=["IF", "LIF"], choices=["IF", "LIF"])
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--no-compile", action="store_true", help="skip the compiled column")
    ap.add_argument("--clock", default="wall", choices=list(CLOCKS))
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load_before = load_average()
    cells = [bench_cell(kind, steps, args, device) for kind in args.kinds for steps in args.steps]
    result = {"device": describe_device(device), "batch": args.batch, "neurons": args.neurons,
              "repeats": args.repeats, "clock": args.clock, "load_before": load_before,
              "load_after": load_average(), "compile": compile_report(), "cells": cells}
    print(f"# neurons fwd+bwd — {result['device']}; B={args.batch}, N={args.neurons}; load average "
          f"before {load_before}, after {result['load_after']}; {args.repeats} interleaved rounds, "
          f"{args.clock} clock\n")
    header = ["neuron", "T", *cells[0]["columns"]]
    speed_rows, mem_rows = [], []
    for cell in cells:
        cols = cell["columns"].values()
        speed_rows.append([cell["neuron"], str(cell["T"])] + [
            NOT_INSTALLED if c is None else f"{c['m_steps_per_s']:,.1f}" + (
                f" ({c['vs_sj'][0]:.2f}×)" if "vs_sj" in c else "") for c in cols])
        base = cell["columns"].get("SpikingJelly")
        mem_rows.append([cell["neuron"], str(cell["T"])] + [
            NOT_INSTALLED if c is None else fmt_ratio(c["memory_mib"], base["memory_mib"] if base else None)
            for c in cols])
    print("## M neuron-steps/s (median of per-round ratios vs SpikingJelly)\n")
    print(markdown_table(header, speed_rows))
    print("\n## memory held for backward, MiB (ratio vs SpikingJelly)\n")
    print(markdown_table(header, mem_rows))
    print(f"\nneuron compiles: {result['compile']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
