"""Neuron layer forward+backward throughput and memory, spikeforge vs SpikingJelly vs snnTorch.

    python bench/neurons.py                      # T = 4, 8, 16; B = 64; N = 4096
    python bench/neurons.py --steps 8 --repeats 5 --warmup 2   # a short pass

Each cell runs ``spikes = neuron(x); spikes.sum().backward()`` on ``x [T, B, N]`` (requires grad)
and reports million neuron-steps per second (T·B·N / time) with the ratio to SpikingJelly, and
the memory held for backward (CPU: saved-tensor bytes; CUDA: peak allocated). All columns run
in the same process, one after the other, so their ratios are comparable even on a noisy host.

Neurons compared (hard reset to 0, θ = 1, sigmoid surrogate with α = 4 where selectable):
  IF:  spikeforge IFNode(v_reset=0) · SpikingJelly IFNode(step_mode="m") · snnTorch Leaky(β=1)
  LIF: spikeforge LIFNode(τ=2, v_reset=0) · SpikingJelly LIFNode(τ=2, step_mode="m") ·
       snnTorch Leaky(β=0.5, reset_mechanism="zero") stepped in a Python loop (as its docs do).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from common import (
    NOT_INSTALLED,
    describe_device,
    fmt_ratio,
    markdown_table,
    peak_memory,
    peer,
    time_call,
)

from spikeforge.neurons import IFNode, LIFNode, Sigmoid
from spikeforge.neurons import fused as fused_mod

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


def snntorch_runner(kind: str) -> Runner | None:
    snn = peer("snntorch")
    snn_sg = peer("snntorch.surrogate")
    if snn is None or snn_sg is None:
        return None
    beta = 1.0 if kind == "IF" else 1.0 - 1.0 / LIF_TAU
    node = snn.Leaky(beta=beta, threshold=1.0, reset_mechanism="zero",
                     spike_grad=snn_sg.sigmoid(slope=SURROGATE_ALPHA))

    def run(x: torch.Tensor) -> torch.Tensor:
        mem = node.init_leaky()
        out = []
        for x_t in x:
            spk, mem = node(x_t, mem)
            out.append(spk)
        return torch.stack(out)

    return run


def runners(kind: str, compile_fused: bool) -> dict[str, Runner | None]:
    cols: dict[str, Runner | None] = {
        "spikeforge reference": spikeforge_runner(kind, "reference"),
        "spikeforge fused (eager)": spikeforge_runner(kind, "fused"),
    }
    if compile_fused:
        cols["spikeforge fused (compiled)"] = spikeforge_runner(kind, "fused")
    cols["SpikingJelly"] = spikingjelly_runner(kind)
    cols["snnTorch"] = snntorch_runner(kind)
    return cols


def measure(run: Runner, x: torch.Tensor, warmup: int, repeats: int) -> tuple[float, float]:
    def step() -> None:
        x.grad = None
        run(x).sum().backward()

    seconds = time_call(step, x.device, warmup, repeats)
    mem = peak_memory(lambda: run(x), x.device)
    return x.numel() / seconds / 1e6, mem


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
    ap.add_argument("--no-compile", action="store_true", help="skip the compiled fused column")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"# neurons fwd+bwd — {describe_device(device)}; B={args.batch}, N={args.neurons}\n")
    speed_rows, mem_rows, header = [], [], ["neuron", "T"]
    for kind in args.kinds:
        for steps in args.steps:
            x = torch.randn(steps, args.batch, args.neurons, device=device).mul_(0.8).add_(0.6)
            x.requires_grad_()
            results: dict[str, tuple[float, float] | None] = {}
            for name, run in runners(kind, not args.no_compile).items():
                if run is None:
                    results[name] = None
                    continue
                if name.startswith("spikeforge fused"):
                    fused_mod.set_compile("on" if "compiled" in name else "off")
                results[name] = measure(run, x, args.warmup, args.repeats)
            fused_mod.set_compile("auto")
            header = ["neuron", "T", *results]
            base = results.get("SpikingJelly")
            speed_rows.append([kind, str(steps)] + [
                NOT_INSTALLED if r is None else fmt_ratio(r[0], base[0] if base else None)
                for r in results.values()])
            mem_rows.append([kind, str(steps)] + [
                NOT_INSTALLED if r is None else fmt_ratio(r[1], base[1] if base else None)
                for r in results.values()])
            print(f"done {kind} T={steps}", flush=True)
    print("\n## M neuron-steps/s (ratio vs SpikingJelly)\n")
    print(markdown_table(header, speed_rows))
    print("\n## memory held for backward, MiB (ratio vs SpikingJelly)\n")
    print(markdown_table(header, mem_rows))


if __name__ == "__main__":
    main()
