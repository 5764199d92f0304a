"""Train a small N-MNIST CNN in snnTorch, export it with snnTorch's own NIR exporter, record its accuracy.

The evidence for "an N-MNIST CNN from another library imports into spikeforge and evaluates on real
events with the accuracy that library measured" (BENCHMARKS.md, section NIR import):

    nice -n 10 env OMP_NUM_THREADS=1 python bench/nmnist_snntorch_nir.py --data ../shared/data/nmnist-1k \\
        --out runs/nmnist-snntorch --epochs 3
    spikeforge import runs/nmnist-snntorch/model.nir --out runs/nmnist-snntorch-import --recipe nmnist-sdsnn \\
        --profile snntorch --set data.time_steps=100 --set data.events.split_by=window \\
        --set data.events.window_us=1000 --set data.events.crop=0 --set train.loss=ce
    spikeforge evaluate runs/nmnist-snntorch-import --data ../shared/data/nmnist-1k

Frames: 1 ms event-count frames from the first event (snnTorch's N-MNIST tutorial bins with tonic's
``ToFrame(sensor_size, time_window=1000)``), the first 100 frames (a sample lasts 300–313 ms, three
saccades; 100 ms keeps CPU training to minutes), full 34×34 sensor, both polarities — read here
with spikeforge's own N-MNIST reader and the same ``split_by = "window"`` binning, so both sides
see the same tensors. Network (snnTorch, zero reset without reset delay, i.e. NIR's LIF; parameters
shaped like each layer so ``export_to_nir`` passes nir's type checks): conv 2→8 (5×5) → avgpool 2 →
Leaky → conv 8→16 (5×5) → avgpool 2 → Leaky → flatten → linear 400→10 → Leaky (β = 0.9, θ = 1);
loss snnTorch's ``ce_rate_loss``, accuracy = argmax of output spike counts (ties → lowest class, as
``torch.argmax``). Writes OUT/model.nir, OUT/snntorch.json (accuracy,
settings) and OUT/predictions.npz (test predictions and spike counts).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

SEED = 0
T_FRAMES = 100  # the first 100 ms (the first of N-MNIST's three saccades): 1 ms frames, CPU-affordable
WINDOW_US = 1000
BETA = 0.9
C1, C2 = 8, 16  # conv channels
THRESHOLD = 1.0


def leaky(shape: tuple[int, ...]) -> nn.Module:
    import snntorch as snn

    return snn.Leaky(beta=torch.full(shape, BETA), threshold=torch.full(shape, THRESHOLD), init_hidden=True,
                     reset_mechanism="zero", reset_delay=False)


def network() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(2, C1, 5), nn.AvgPool2d(2), leaky((C1, 15, 15)),
                         nn.Conv2d(C1, C2, 5), nn.AvgPool2d(2), leaky((C2, 5, 5)),
                         nn.Flatten(), nn.Linear(C2 * 5 * 5, 10), leaky((10,)))


def forward(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x [T, B, 2, 34, 34] -> spikes [T, B, 10]`` from rest."""
    from snntorch import utils

    utils.reset(net)
    return torch.stack([net(x[t]) for t in range(x.shape[0])])


def frames(data: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from spikeforge.data import DataConfig, load_dataset
    from spikeforge.data.events.config import EventConfig

    cfg = DataConfig(name="nmnist", time_steps=T_FRAMES, encoding="frames",
                     events=EventConfig(split_by="window", window_us=WINDOW_US))
    s = load_dataset(cfg, data)
    return s.train.x, s.train.y, s.test.x, s.test.y


def evaluate(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> tuple[float, np.ndarray, np.ndarray]:
    preds, counts = [], []
    with torch.no_grad():
        for i in range(0, len(y), batch):
            xb = x[i:i + batch].float().transpose(0, 1)
            c = forward(net, xb).sum(0)
            counts.append(c)
            preds.append(c.argmax(1))
    p = torch.cat(preds)
    return float((p == y).float().mean()), p.numpy(), torch.cat(counts).numpy()


def main() -> None:
    import nir
    import snntorch
    import snntorch.functional as SF
    from snntorch.export_nir import export_to_nir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/nmnist-1k")
    ap.add_argument("--out", default="runs/nmnist-snntorch")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    xtr, ytr, xte, yte = frames(args.data)
    net = network()
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    loss_fn = SF.ce_rate_loss()
    t0 = time.time()
    for epoch in range(1, args.epochs + 1):
        perm = torch.randperm(len(ytr), generator=torch.Generator().manual_seed(SEED + epoch))
        net.train()
        total, correct = 0.0, 0
        for i in range(0, len(ytr), args.batch_size):
            idx = perm[i:i + args.batch_size]
            xb, yb = xtr[idx].float().transpose(0, 1), ytr[idx]
            spk = forward(net, xb)
            loss = loss_fn(spk, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            correct += int((spk.sum(0).argmax(1) == yb).sum())
        acc, _, _ = evaluate(net.eval(), xte, yte, args.batch_size)
        print(f"epoch {epoch}: loss {total / len(ytr):.4f}  train acc {correct / len(ytr):.4f}  test acc {acc:.4f}  "
              f"({time.time() - t0:.0f} s)", flush=True)
    net.eval()
    acc, preds, counts = evaluate(net, xte, yte, args.batch_size)
    with torch.no_grad():
        from snntorch import utils

        utils.reset(net)
        graph = export_to_nir(net, xte[:1, 0].float(), ignore_dims=[0])
    nir.write(out / "model.nir", graph)
    np.savez_compressed(out / "predictions.npz", predictions=preds, spike_counts=counts, labels=yte.numpy())
    report = {"library": "snntorch", "version": snntorch.__version__, "test_accuracy": acc, "test_samples": len(yte),
              "train_samples": len(ytr), "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
              "time_steps": T_FRAMES, "window_us": WINDOW_US, "seed": SEED, "train_time_s": time.time() - t0}
    (out / "snntorch.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
