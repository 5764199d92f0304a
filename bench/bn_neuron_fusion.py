"""Lever "BN + neuron fusion", measured: training-mode batch norm and the LIF sequence in one
autograd node (inductor-compiled forward and backward) against the layers spikeforge runs
(``BatchNorm2d`` then the ``compiled`` LIF backend), on a ResNet-19 × 0.25 activation.

    python bench/bn_neuron_fusion.py                 # layer1 shape [T=4, B=32, 32, 32, 32], channels-last
    python bench/bn_neuron_fusion.py --threads 1 --clock cpu --repeats 15

Folding BN into the convolution is exact only with fixed statistics (eval mode); in training the
statistics come from the convolution's output, so the fusion candidate here is BN-apply + neuron:
the fused node computes the per-channel mean/variance, applies γ·x̂ + β inside the neuron loop
(the normalised tensor is never written), saves the conv output and ``h``, and in backward runs
BPTT and the batch-norm backward (two per-channel sums) in one compiled function. Both columns
compute the same numbers (checked before timing). The result decides whether the models use it.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from common import CLOCKS, load_average, markdown_table, time_interleaved
from torch import nn

from spikeforge.neurons import LIFNode, Sigmoid
from spikeforge.neurons.fused import backward_loop, forward_loop
from spikeforge.neurons.fused_spec import Spec

BN_EPS = 1e-5
TAU, ALPHA = 2.0, 4.0
MAX_DIFFERING = 1e-4


def _fused_forward(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, a: float, b: float,
                   spec: Spec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x [T, N, H, W, C]`` (NHWC steps) → spikes, h, per-channel mean and 1/std."""
    dims = tuple(range(x.dim() - 1))
    mean = x.mean(dims)
    rstd = torch.rsqrt(x.var(dims, unbiased=False) + BN_EPS)
    scale = gamma * rstd
    y = x * scale + (beta - mean * scale)
    spikes, hs, _ = forward_loop(y, torch.zeros_like(y[0]), a, b, 0.0, spec)
    return spikes, hs, mean, rstd


def _fused_backward(gs: torch.Tensor, x: torch.Tensor, hs: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor,
                    gamma: torch.Tensor, a: float, b: float,
                    spec: Spec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gy, *_ = backward_loop(gs, None, None, hs, None, a, b, spec, False, False, False)
    dims = tuple(range(x.dim() - 1))
    xhat = (x - mean) * rstd
    n = x.numel() // x.shape[-1]
    g_beta = gy.sum(dims)
    g_gamma = (gy * xhat).sum(dims)
    gx = (gamma * rstd) * (gy - g_beta / n - xhat * (g_gamma / n))
    return gx, g_gamma, g_beta


_compiled_fwd = torch.compile(_fused_forward)
_compiled_bwd = torch.compile(_fused_backward)


class BatchNormLIF(torch.autograd.Function):
    """Training-mode BN (batch statistics; running statistics not updated here) + LIF, one node."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, a: float, b: float,
                spec: Spec) -> torch.Tensor:
        spikes, hs, mean, rstd = _compiled_fwd(x, gamma, beta, a, b, spec)
        ctx.save_for_backward(x, hs, mean, rstd, gamma)
        ctx.consts = (a, b, spec)
        return spikes

    @staticmethod
    def backward(ctx: Any, gs: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, hs, mean, rstd, gamma = ctx.saved_tensors
        gx, g_gamma, g_beta = _compiled_bwd(gs.contiguous(), x, hs, mean, rstd, gamma, *ctx.consts)
        return gx, g_gamma, g_beta, None, None, None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", type=int, nargs=5, default=[4, 32, 32, 32, 32], metavar=("T", "B", "C", "H", "W"))
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--clock", default="wall", choices=list(CLOCKS))
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    t, b, c, h, w = args.shape
    gen = torch.Generator().manual_seed(0)
    conv_out = torch.randn(t * b, c, h, w, generator=gen).contiguous(memory_format=torch.channels_last)
    bn = nn.BatchNorm2d(c)
    lif = LIFNode(tau=TAU, v_reset=0.0, surrogate=Sigmoid(ALPHA), backend="compiled")
    p = lif.params()
    spec = Spec(p.threshold, p.v_reset, p.detach_reset, p.surrogate)
    grad = torch.randn(t, b, c, h, w, generator=gen)

    def separate() -> torch.Tensor:
        x = conv_out.detach().requires_grad_()
        s = lif(bn(x).unflatten(0, (t, b)))
        (s * grad).sum().backward()
        return x.grad

    def fused() -> torch.Tensor:
        x = conv_out.detach().requires_grad_()
        nhwc = x.unflatten(0, (t, b)).permute(0, 1, 3, 4, 2)
        s = BatchNormLIF.apply(nhwc, bn.weight, bn.bias, float(p.decay), float(p.input_gain), spec)
        (s.permute(0, 1, 4, 2, 3) * grad).sum().backward()
        return x.grad

    # the same numbers up to float32 reassociation of the statistics, which flips a few spikes sitting
    # on the threshold (and so their gradients): at most 1 element in 10^4 may differ
    differ = ~torch.isclose(fused(), separate(), rtol=1e-3, atol=1e-4)
    assert float(differ.float().mean()) < MAX_DIFFERING, f"fused and separate differ at {int(differ.sum())} elements"
    timing = time_interleaved({"separate": separate, "fused": fused}, torch.device("cpu"), args.warmup,
                              args.repeats, clock=args.clock)
    load = load_average()
    print(f"# BN + LIF fwd+bwd, shape {args.shape} channels-last, {torch.get_num_threads()} threads, "
          f"{args.clock} clock, load average {load}\n")
    med, lo, hi = timing.ratio("fused", "separate")
    rows = [["BatchNorm2d + LIF (compiled backend)", f"{1e3 * timing.median('separate'):.2f}", "1.00×"],
            ["BN + LIF fused node (inductor)", f"{1e3 * timing.median('fused'):.2f}",
             f"{med:.2f}× ({lo:.2f}–{hi:.2f})"]]
    print(markdown_table(["variant", "ms (median)", "speed vs separate: median (range)"], rows))


if __name__ == "__main__":
    main()
