"""Event-driven training convolutions vs oneDNN's dense float32 ones, per layer shape and input firing rate.

    python bench/spike_conv.py                       # ResNet-19 × 0.25's conv shapes, B·T = 128
    python bench/spike_conv.py --rates 0.05 0.1 --repeats 9 --json spike_conv.json
    python bench/spike_conv.py --run runs/cifar10-resnet19   # the input firing of a trained run's convs

For each shape and rate: the forward (``spikeforge::spike_conv2d`` vs ``F.conv2d`` on channels-last
input) and the weight gradient (``spikeforge::spike_conv2d_backward`` vs aten's ``convolution_backward``,
both asked for the weight gradient only), both with every rate limit lifted, so the
event path runs whatever the rate; timed interleaved in one process (median ms; ratio = dense time /
event time per round, median and range). The rate limits of ``SpikeConvConfig`` come from where these
ratios cross 1. The input gradient is oneDNN's in both paths and is not timed.

``--run RUN_DIR`` instead reports, for a trained run on its own test data (``--samples`` images, the model
in training mode as during training), each convolution's input: its firing rate, or "not spikes" (an
image, a quantized-ReLU site), and so which path ``model.spike_convs = "auto"`` takes there.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform

import torch
import torch.nn.functional as F
from common import load_average, markdown_table, time_interleaved

from spikeforge import layers, spike_conv
from spikeforge.data.encode import prepare_batch
from spikeforge.spike_conv import SpikeConvConfig, backward_op, spike_conv2d_op
from spikeforge.train import load_run

SHAPES = [  # (in channels, out channels, input size, kernel, stride, padding): ResNet-19 × 0.25 on 32×32
    (32, 32, 32, 3, 1, 1),
    (32, 64, 32, 3, 2, 1),
    (32, 64, 32, 1, 2, 0),
    (64, 64, 16, 3, 1, 1),
    (64, 128, 16, 3, 2, 1),
    (128, 128, 8, 3, 1, 1),
]
CL = torch.channels_last


def run_rates(run_dir: str, samples: int) -> None:
    """Each convolution's input firing on ``samples`` test images of a run (training mode, no grad)."""
    run = load_run(run_dir)
    data = run.load_data()
    batch = prepare_batch(data.test.x[:samples], data.info, run.recipe.data, None, None, train=False)
    found: list[tuple[str, float | None, tuple[int, ...], bool]] = []

    def record(name: str):  # noqa: ANN202 - a forward hook
        def hook(m: layers.Conv2d, inputs: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
            x = inputs[0]
            binary = bool(((x == 0) | (x == 1)).all())
            step = x[0] if x.stride(0) == 0 else x.flatten(0, 1)  # what the layer convolves
            takes = spike_conv.applies(step.contiguous(memory_format=CL), m.weight, m.stride, m.padding,
                                       m.dilation, m.groups, m.padding_mode)
            found.append((name, float((x != 0).float().mean()) if binary else None, tuple(x.shape[2:]), takes))
        return hook

    for name, m in run.model.named_modules():
        if isinstance(m, layers.Conv2d):
            m.register_forward_hook(record(name))
    run.model.train()
    with torch.no_grad():
        run.model(batch)
    cfg = SpikeConvConfig()
    rows = []
    for name, rate, shape, takes in found:
        path = ("dense (not spikes)" if rate is None else "dense (kernel, layout or dtype)" if not takes
                else "events" if rate <= cfg.forward_max_rate else "dense (busy)")
        grad = "" if rate is None or not takes else "events" if rate <= cfg.weight_grad_max_rate else "dense"
        rows.append([name, "×".join(map(str, shape)), "not spikes" if rate is None else f"{rate:.1%}", path, grad])
    print(f"# conv inputs of {run_dir} on {samples} test images (training mode), {run.recipe.name}\n")
    print(markdown_table(["conv", "input [C×H×W]", "input firing", "forward (auto)", "weight grad (auto)"], rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=128, help="images per call (B·T: 32 × 4 in the train-step bench)")
    ap.add_argument("--rates", type=float, nargs="+", default=[0.02, 0.05, 0.1, 0.15, 0.3])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--run", default=None, help="report a trained run's conv-input firing instead")
    ap.add_argument("--samples", type=int, default=128, help="test images for --run")
    args = ap.parse_args()
    if args.run:
        run_rates(args.run, args.samples)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    before = load_average()
    gen = torch.Generator().manual_seed(0)
    rows, results = [], []
    for ci, co, size, k, s, p in SHAPES:
        w = (torch.randn(co, ci, k, k, generator=gen) * 0.1).contiguous(memory_format=CL)
        for rate in args.rates:
            x = (torch.rand(args.batch, ci, size, size, generator=gen) < rate).float().contiguous(memory_format=CL)
            y = F.conv2d(x, w, None, s, p)
            g = torch.randn(y.shape, generator=gen).contiguous(memory_format=CL)
            events = spike_conv2d_op(x, w, None, [s, s], [p, p], 1.0, 1.0)[1]
            assert int(events) >= 0, "the event path must run here"
            fns = {
                "dense fwd": lambda x=x, w=w, s=s, p=p: F.conv2d(x, w, None, s, p),
                "event fwd": lambda x=x, w=w, s=s, p=p: spike_conv2d_op(x, w, None, [s, s], [p, p], 1.0, 1.0),
                "dense wgrad": lambda x=x, w=w, g=g, s=s, p=p: torch.ops.aten.convolution_backward(
                    g, x, w, None, [s, s], [p, p], [1, 1], False, [0, 0], 1, [False, True, False]),
                "event wgrad": lambda x=x, w=w, g=g, s=s, p=p, e=events: backward_op(
                    g, x, w, e, [s, s], [p, p], 1.0, [False, True, False]),
            }
            t = time_interleaved(fns, torch.device("cpu"), args.warmup, args.repeats)
            fwd, wgrad = t.ratio("event fwd", "dense fwd"), t.ratio("event wgrad", "dense wgrad")
            ms = {c: 1e3 * t.median(c) for c in fns}
            results.append({"shape": [ci, co, size, k, s, p], "rate": rate, "ms": ms, "forward": fwd,
                            "weight_grad": wgrad})
            rows.append([f"{ci}→{co}, {size}², {k}×{k}/{s}", f"{rate:.0%}",
                         f"{ms['dense fwd']:.2f} / {ms['event fwd']:.2f}",
                         f"**{fwd[0]:.2f}×** ({fwd[1]:.2f}–{fwd[2]:.2f})",
                         f"{ms['dense wgrad']:.2f} / {ms['event wgrad']:.2f}",
                         f"**{wgrad[0]:.2f}×** ({wgrad[1]:.2f}–{wgrad[2]:.2f})"])
            print(" | ".join(rows[-1]), flush=True)
    after = load_average()
    head = (f"# spike convs — CPU, {torch.get_num_threads()} threads, torch {torch.__version__}, batch {args.batch}; "
            f"load {before} → {after}; {args.repeats} interleaved rounds; "
            f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}")
    print("\n" + head + "\n")
    print(markdown_table(["conv (in→out, input, kernel/stride)", "input firing", "fwd ms dense / events",
                          "fwd × dense", "weight grad ms dense / events", "weight grad × dense"], rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"header": head, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
