"""``development.png``: pruning and accuracy per epoch of a developed run (from its metrics).

Left: the overall pruning rate (effectively zero weights / all weights) and, per pruned layer,
the fraction of its neurons that are pruned, in percent. Right: test accuracy in percent.
"""

from __future__ import annotations

from pathlib import Path

from ..plots import PERCENT, new_figure, save_figure, series
from ..train.run_files import RunDir

DEVELOPMENT_PLOT = "development.png"
DEVELOPMENT_FIGSIZE = (10, 3.6)
PREFIX = "develop."


def plot_development(run: RunDir) -> Path:
    """Write ``development.png`` into the run directory and return its path."""
    records = run.read_metrics()
    epochs = [r["epoch"] for r in records]
    layers = sorted({k[len(PREFIX):-len(".neurons")] for r in records for k in r
                     if k.startswith(PREFIX) and k.endswith(".neurons")})
    fig = new_figure(DEVELOPMENT_FIGSIZE)
    left, right = fig.subplots(1, 2)
    left.plot(epochs, series(records, PREFIX + "pruning_rate", PERCENT), label="weights (network)", linewidth=2)
    for name in layers:
        frac = [PERCENT * (1 - r[f"{PREFIX}{name}.neurons_alive"] / r[f"{PREFIX}{name}.neurons"])
                if f"{PREFIX}{name}.neurons" in r else float("nan") for r in records]
        left.plot(epochs, frac, label=f"{name} neurons")
    left.set_title("pruned (%)")
    right.plot(epochs, series(records, "test_accuracy", PERCENT), label="test")
    right.plot(epochs, series(records, "train_accuracy", PERCENT), label="train")
    right.set_title("accuracy (%)")
    for ax in (left, right):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, run.artifact(DEVELOPMENT_PLOT))
