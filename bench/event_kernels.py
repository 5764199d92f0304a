"""Benchmark: one synaptic layer, dense float64 product vs the event runtime's kernels, side by side.

For each layer shape and input density: the time of ``F.linear``/``F.conv2d`` on float 0/1 spikes
(what the dense executor does) divided by the time of the compiled kernel (:mod:`spikeforge.runtime.native`)
and by the time of torch's CSR path (:mod:`spikeforge.runtime.kernels`, ``RuntimeConfig(kernel="torch")``),
timed side by side (``common.time_interleaved``: one call of each per round, rotating order, one warm-up;
the median of the ``--repeats`` per-round ratios), ``T·B = --rows`` rows of Bernoulli spikes. The outputs are
checked against the dense product (≤ 1e-9). These ratios set ``RuntimeConfig``'s ``native_*`` crossovers.

    python bench/event_kernels.py [--threads N] [--rows 128] [--repeats 9] [--rates 0.01 0.1 0.3]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from common import load_average, time_interleaved

from spikeforge.runtime import native
from spikeforge.runtime.indices import conv_geometry
from spikeforge.runtime.kernels import event_conv, event_linear, weight_tiles

LINEAR = ((2048, 2048), (784, 2048), (7840, 300), (8192, 128), (2048, 10), (300, 10))  # (inputs, outputs)
CONV = ((64, 64, 16, 3, 1, 1), (15, 40, 14, 3, 1, 1), (1, 15, 28, 3, 1, 1), (3, 16, 32, 3, 1, 1))  # C, O, H, k, s, p
TOLERANCE = 1e-9
TILE_FROM = 0.02  # the torch linear path's column tiles from this density (RuntimeConfig.linear_tile_density)


CPU = torch.device("cpu")


def ratios(repeats: int, dense: Callable[[], Any], compiled: Callable[[], Any], csr: Callable[[], Any]) -> str:
    """``dense time / compiled time`` and ``dense time / CSR time`` (median of the per-round ratios)."""
    timing = time_interleaved({"dense": dense, "compiled": compiled, "csr": csr}, CPU, warmup=1, repeats=repeats)
    return " / ".join(f"{timing.ratio(col, 'dense')[0]:.2f}×" for col in ("compiled", "csr"))


def _agree(y: torch.Tensor, ref: torch.Tensor, what: str) -> None:
    diff = float((y - ref).abs().max())
    if diff > TOLERANCE:
        raise SystemExit(f"{what}: the kernel differs from the dense product by {diff}")


def linear_row(fan_in: int, outputs: int, args: argparse.Namespace, gen: torch.Generator) -> list[str]:
    w = torch.randn(outputs, fan_in, dtype=torch.float64, generator=gen)
    b = torch.randn(outputs, dtype=torch.float64, generator=gen)
    w_t = w.t().contiguous()
    tiles, tiled = weight_tiles(w_t), native.tiled(w_t, b)
    cells = []
    for rate in args.rates:
        x = torch.rand(args.rows, fan_in, generator=gen) < rate
        xf = x.double()
        t_tiles = tiles if rate > TILE_FROM else None
        _agree(native.linear(x, tiled, args.threads)[0], F.linear(xf, w, b), f"linear {fan_in}→{outputs} {rate}")
        cells.append(ratios(args.repeats, partial(F.linear, xf, w, b), partial(native.linear, x, tiled, args.threads),
                            partial(event_linear, x, w, b, w_t, "csr", None, t_tiles)))
    return [f"linear {fan_in} → {outputs}", *cells]


def conv_row(spec: tuple[int, ...], args: argparse.Namespace, gen: torch.Generator) -> list[str]:
    c, o, h, k, s, p = spec
    w = torch.randn(o, c, k, k, dtype=torch.float64, generator=gen)
    b = torch.randn(o, dtype=torch.float64, generator=gen)
    geom = conv_geometry((h, h), (k, k), [s, s], [p, p], [1, 1], torch.device("cpu"))
    taps = w.permute(2, 3, 1, 0).contiguous()
    tiled = native.tiled(taps.reshape(-1, o), b)
    cells = []
    for rate in args.rates:
        x = torch.rand(args.rows, c, h, h, generator=gen) < rate
        xf = x.double()
        _agree(native.conv(x, tiled, geom, args.threads)[0], F.conv2d(xf, w, b, s, p), f"conv {spec} {rate}")
        csr = partial(event_conv, x, w, b, None, [s, s], [p, p], [1, 1], taps, "csr", geom)
        cells.append(ratios(args.repeats, partial(F.conv2d, xf, w, b, s, p),
                            partial(native.conv, x, tiled, geom, args.threads), csr))
    return [f"conv {c} → {o}, {h}×{h}, {k}×{k}", *cells]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=0, help="torch and kernel threads (0 = torch's default)")
    p.add_argument("--rows", type=int, default=128, help="T·B rows per call")
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--rates", type=float, nargs="+", default=[0.01, 0.1, 0.3])
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.threads = torch.get_num_threads()
    kernels = native.load()
    gen = torch.Generator().manual_seed(0)
    print(f"{args.threads} threads, {args.rows} rows, median of {args.repeats} interleaved rounds, float64, load "
          f"{load_average()}; compiled kernels "
          f"{kernels.path.name} (OpenMP: {kernels.openmp}); cells: dense / compiled and dense / torch CSR\n")
    print("| layer | " + " | ".join(f"{r:.0%}" for r in args.rates) + " |")
    print("|---|" + "---:|" * len(args.rates))
    rows = [linear_row(f, o, args, gen) for f, o in LINEAR] + [conv_row(spec, args, gen) for spec in CONV]
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
