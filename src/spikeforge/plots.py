"""Drawing figures from metrics records (no knowledge of runs or methods).

Figures use matplotlib's object-oriented API (:class:`matplotlib.figure.Figure`): no pyplot, so no
global backend is chosen or changed — a PNG is rendered by Agg when it is saved, and a user's own
backend (a notebook's, a GUI's) is left alone. matplotlib itself is imported on the first figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FIGURE_DPI = 120
TRAINING_FIGSIZE = (11, 3.6)
MAX_LEGEND_SITES = 12  # more sites than this: no legend on the activity panel
PERCENT = 100.0
Record = dict[str, Any]


def new_figure(figsize: tuple[float, float]) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def save_figure(fig: Figure, path: Path) -> Path:
    """Lay out and write ``fig`` as a PNG at :data:`FIGURE_DPI`."""
    fig.tight_layout()
    fig.savefig(path, dpi=FIGURE_DPI)
    return path


def series(records: Sequence[Record], key: str, scale: float = 1.0) -> list[float]:
    """``scale · record[key]`` per record (NaN where the record lacks it)."""
    return [scale * r[key] if key in r else float("nan") for r in records]


def plot_training(records: Sequence[Record], path: Path) -> Path:
    """Loss, accuracy and per-site activity per epoch → ``path``."""
    epochs = [r["epoch"] for r in records]
    fig = new_figure(TRAINING_FIGSIZE)
    loss, acc, activity = fig.subplots(1, 3)
    loss.plot(epochs, series(records, "train_loss"), label="train")
    loss.plot(epochs, series(records, "test_loss"), label="test")
    loss.set_title("loss")
    acc.plot(epochs, series(records, "train_accuracy", PERCENT), label="train")
    acc.plot(epochs, series(records, "test_accuracy", PERCENT), label="test")
    acc.set_title("accuracy (%)")
    sites = list(records[-1].get("firing_rates", {})) if records else []
    for site in sites:
        activity.plot(epochs, [r.get("firing_rates", {}).get(site, float("nan")) for r in records], label=site)
    activity.set_title("activity per site")
    for ax in (loss, acc, activity):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    loss.legend()
    acc.legend()
    if 0 < len(sites) <= MAX_LEGEND_SITES:
        activity.legend(fontsize=6)
    return save_figure(fig, path)
