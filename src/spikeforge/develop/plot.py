"""``development.png``: pruning and accuracy per epoch of a developed run (from ``metrics.jsonl``).

Left: the overall pruning rate (effectively zero weights / all weights) and, per pruned layer,
the fraction of its neurons that are pruned, in percent. Right: test accuracy in percent.
"""

from __future__ import annotations

from pathlib import Path

from ..plots import FIGURE_DPI, plt, read_metrics

DEVELOPMENT_PLOT = "development.png"
DEVELOPMENT_FIGSIZE = (10, 3.6)
PERCENT = 100.0
PREFIX = "develop."


def plot_development(run_dir: str | Path) -> Path:
    """Write ``development.png`` into ``run_dir`` and return its path."""
    records = read_metrics(run_dir)
    epochs = [r["epoch"] for r in records]
    layers = sorted({k[len(PREFIX):-len(".neurons")] for r in records for k in r
                     if k.startswith(PREFIX) and k.endswith(".neurons")})
    fig, (left, right) = plt.subplots(1, 2, figsize=DEVELOPMENT_FIGSIZE)
    left.plot(epochs, [PERCENT * r.get(PREFIX + "pruning_rate", float("nan")) for r in records],
              label="weights (network)", linewidth=2)
    for name in layers:
        frac = [PERCENT * (1 - r[f"{PREFIX}{name}.neurons_alive"] / r[f"{PREFIX}{name}.neurons"])
                if f"{PREFIX}{name}.neurons" in r else float("nan") for r in records]
        left.plot(epochs, frac, label=f"{name} neurons")
    left.set_title("pruned (%)")
    right.plot(epochs, [PERCENT * r.get("test_accuracy", float("nan")) for r in records], label="test")
    right.plot(epochs, [PERCENT * r.get("train_accuracy", float("nan")) for r in records], label="train")
    right.set_title("accuracy (%)")
    for ax in (left, right):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    out = Path(run_dir) / DEVELOPMENT_PLOT
    fig.savefig(out, dpi=FIGURE_DPI)
    plt.close(fig)
    return out
