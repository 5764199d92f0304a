"""One full training step (forward, backward, SGD) per library, plus the data path.

    python bench/train_step.py                         # both models, all columns
    python bench/train_step.py --repeats 3 --warmup 1  # a short pass

Models (T = 4, LIF τ = 2, hard reset to 0, sigmoid surrogate α = 4, direct encoding):
  sdsnn_convnet on MNIST-size input (B = 64, 1×28×28);
  resnet19 at width 0.25 on CIFAR-size input (B = 32, 3×32×32).
spikeforge builds them with ``build_model``; SpikingJelly with its multi-step
``layer.Conv2d/BatchNorm2d/...`` and ``neuron.LIFNode``; snnTorch with ``torch.nn`` layers and
``Leaky(init_hidden=True)`` neurons stepped over T in a Python loop (so its batch norm sees
one step at a time). Reports samples/s with the ratio to SpikingJelly and the memory held for
backward (CPU: saved-tensor bytes; CUDA: peak allocated during the step).

Data path: spikeforge's own pipeline — ``iterate_batches`` (shuffled gather from an in-memory
uint8 ``ArrayDataset``), ``BatchAugment`` (CIFAR: random crop with 4-pixel padding +
horizontal flip; MNIST: none), ``normalize`` and ``encode(..., "direct", T)`` — per batch,
timed against the spikeforge (fused) train step; the target is < 10 % of the step.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import peer_models
import torch
import torch.nn.functional as F
from common import NOT_INSTALLED, describe_device, fmt_ratio, markdown_table, peak_memory, time_call
from torch import nn

from spikeforge.data.augment import BatchAugment, normalize
from spikeforge.data.base import ArrayDataset
from spikeforge.data.encode import encode
from spikeforge.data.loader import iterate_batches
from spikeforge.models import ModelConfig, build_model
from spikeforge.neurons import NeuronConfig
from spikeforge.neurons import fused as fused_mod

TIME_STEPS = 4
LEARNING_RATE = 0.05
MOMENTUM = 0.9
CROP_PAD = 4
DATASET_SIZE = 2048
CLASSES = 10
MNIST_STATS = ((0.1307,), (0.3081,))
CIFAR_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
MODELS = {  # name: (width, in_channels, input size, batch)
    "sdsnn_convnet": (1.0, 1, 28, 64),
    "resnet19": (0.25, 3, 32, 32),
}
Runner = Callable[[torch.Tensor], torch.Tensor]


def spikeforge_model(name: str, backend: str) -> tuple[nn.Module, Runner]:
    width, cin, size, _ = MODELS[name]
    neuron = NeuronConfig(kind="lif", tau=peer_models.LIF_TAU, reset="hard", v_reset=0.0, surrogate="sigmoid",
                          surrogate_params={"alpha": peer_models.SURROGATE_ALPHA}, backend=backend)
    net = build_model(ModelConfig(name=name, num_classes=CLASSES, in_channels=cin, input_size=size,
                                  width=width, neuron=neuron))
    return net, net


def columns(name: str, compile_fused: bool) -> dict[str, Callable[[], tuple[nn.Module, Runner] | None]]:
    width, cin, size, _ = MODELS[name]
    cols: dict[str, Callable[[], tuple[nn.Module, Runner] | None]] = {
        "spikeforge reference": lambda: spikeforge_model(name, "reference"),
        "spikeforge fused (eager)": lambda: spikeforge_model(name, "fused"),
    }
    if compile_fused:
        cols["spikeforge fused (compiled)"] = lambda: spikeforge_model(name, "fused")
    cols["SpikingJelly"] = lambda: peer_models.spikingjelly_model(name, width, cin, size)
    cols["snnTorch"] = lambda: peer_models.snntorch_model(name, width, cin, size)
    return cols


def train_step_fn(net: nn.Module, run: Runner, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    opt = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(run(x).mean(0), y)
        loss.backward()
        opt.step()

    return step


# ----------------------------------------------------------------------------------------------
# data path: spikeforge's own loader, augmentation and encoding


def make_uint8_dataset(cin: int, size: int, seed: int = 0) -> ArrayDataset:
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (DATASET_SIZE, cin, size, size), generator=gen, dtype=torch.uint8)
    return ArrayDataset(images, torch.randint(0, CLASSES, (DATASET_SIZE,), generator=gen))


def data_pass(ds: ArrayDataset, batch: int, augment: BatchAugment, stats: tuple[tuple[float, ...], ...],
              gen: torch.Generator, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of batches: gather (shuffled) -> augment -> normalise -> direct-encode over T."""
    out = []
    for x, y in iterate_batches(ds, batch, shuffle=True, generator=gen, device=device, drop_last=True):
        if augment.active:
            x = augment(x, gen)
        out.append((encode(normalize(x, *stats), "direct", TIME_STEPS), y))
    return out


Rows = tuple[list[str], list[str], list[str], list[str] | None]


def bench_model(name: str, args: argparse.Namespace, device: torch.device) -> Rows:
    """Time every column on one model; returns (header, speed row, memory row, data-path row)."""
    _, cin, size, batch = MODELS[name]
    augment = BatchAugment(crop_padding=CROP_PAD, flip=True) if cin == 3 else BatchAugment()
    stats = CIFAR_STATS if cin == 3 else MNIST_STATS
    ds = make_uint8_dataset(cin, size)
    gen = torch.Generator().manual_seed(1)
    x, y = data_pass(ds, batch, augment, stats, gen, device)[0]
    results: dict[str, tuple[float, float] | None] = {}
    fused_seconds: dict[str, float] = {}
    for col, make in columns(name, not args.no_compile).items():
        if col.startswith("spikeforge fused"):
            fused_mod.set_compile("on" if "compiled" in col else "off")
        built = make()
        if built is None:
            results[col] = None
            continue
        net, run = built
        net.to(device).train()
        if args.channels_last and col.startswith("spikeforge"):
            net.to(memory_format=torch.channels_last)
        seconds = time_call(train_step_fn(net, run, x, y), device, args.warmup, args.repeats)
        mem = peak_memory(lambda run=run: F.cross_entropy(run(x).mean(0), y), device)
        results[col] = (batch / seconds, mem)
        if col.startswith("spikeforge fused"):
            fused_seconds[col] = seconds
        print(f"done {name}: {col} {batch / seconds:.1f} samples/s", flush=True)
    fused_mod.set_compile("auto")
    base = results.get("SpikingJelly")
    speed = [name, str(batch)] + [NOT_INSTALLED if r is None else fmt_ratio(r[0], base[0] if base else None)
                                  for r in results.values()]
    mem_row = [name, str(batch)] + [NOT_INSTALLED if r is None else fmt_ratio(r[1], base[1] if base else None)
                                    for r in results.values()]
    batches_per_pass = DATASET_SIZE // batch
    data_s = time_call(lambda: data_pass(ds, batch, augment, stats, gen, device), device, 1,
                       max(args.repeats, 3)) / batches_per_pass
    step_s = fused_seconds.get("spikeforge fused (compiled)", fused_seconds.get("spikeforge fused (eager)"))
    data = None if step_s is None else [name, str(batch), f"{data_s * 1e3:.2f}", f"{step_s * 1e3:.1f}",
                                        f"{100 * data_s / step_s:.1f} %"]
    return ["model", "B", *results], speed, mem_row, data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--no-compile", action="store_true", help="skip the compiled fused column")
    ap.add_argument("--channels-last", action="store_true", help="spikeforge models in channels_last")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(f"# train step (T={TIME_STEPS}) — {describe_device(device)}\n")
    header: list[str] = []
    speed_rows, mem_rows, data_rows = [], [], []
    for name in args.models:
        header, speed, mem, data = bench_model(name, args, device)
        speed_rows.append(speed)
        mem_rows.append(mem)
        if data is not None:
            data_rows.append(data)
    print("\n## samples/s (ratio vs SpikingJelly)\n")
    print(markdown_table(header, speed_rows))
    print("\n## memory held for backward, MiB (ratio vs SpikingJelly)\n")
    print(markdown_table(header, mem_rows))
    if data_rows:
        print("\n## data path: load + augment + encode one batch vs the spikeforge fused train step\n")
        print(markdown_table(["model", "B", "data ms", "step ms", "data / step"], data_rows))


if __name__ == "__main__":
    main()
