"""Plots of a run directory's ``metrics.jsonl`` (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TRAINING_PLOT = "training.png"
FIGURE_SIZE = (11, 3.6)
FIGURE_DPI = 120


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics (is this a run directory?)")
    records = []
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{i}: not valid JSON ({e})") from None
    return records


def plot_training(run_dir: str | Path) -> Path:
    """Loss, accuracy and per-site firing rates per epoch → ``training.png``."""
    records = read_metrics(run_dir)
    epochs = [r["epoch"] for r in records]
    fig, axes = plt.subplots(1, 3, figsize=FIGURE_SIZE)
    axes[0].plot(epochs, [r["train_loss"] for r in records], label="train")
    axes[0].plot(epochs, [r["test_loss"] for r in records], label="test")
    axes[0].set_title("loss")
    axes[1].plot(epochs, [100 * r["train_accuracy"] for r in records], label="train")
    axes[1].plot(epochs, [100 * r["test_accuracy"] for r in records], label="test")
    axes[1].set_title("accuracy (%)")
    sites = list(records[-1].get("firing_rates", {}))
    for site in sites:
        axes[2].plot(epochs, [r.get("firing_rates", {}).get(site, float("nan")) for r in records], label=site)
    axes[2].set_title("activity per site")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[1].legend()
    if 0 < len(sites) <= 12:
        axes[2].legend(fontsize=6)
    fig.tight_layout()
    out = Path(run_dir) / TRAINING_PLOT
    fig.savefig(out, dpi=FIGURE_DPI)
    plt.close(fig)
    return out


def plot_run(run_dir: str | Path) -> list[Path]:
    """Every plot that applies to the run (training curves; structural development if present)."""
    paths = [plot_training(run_dir)]
    if any(k.endswith("pruning_rate") for r in read_metrics(run_dir) for k in r):
        from .develop.plot import plot_development

        paths.append(plot_development(run_dir))
    return paths
