"""The figures of a run directory: training curves, then each of its methods' own plots."""

from __future__ import annotations

from pathlib import Path

from ..plots import plot_training
from .registry import active_methods
from .run_files import RunDir
from .rundir import stored_recipe


def plot_run(run: str | Path | RunDir) -> list[Path]:
    """Every plot that applies to the run; returns the files written."""
    run = run if isinstance(run, RunDir) else RunDir(run)
    paths = [plot_training(run.read_metrics(), run.artifact(RunDir.TRAINING_PLOT))]
    for method in active_methods(stored_recipe(run)):
        paths += method.plots(run)
    return paths
