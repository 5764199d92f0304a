"""A run directory is always resumable: killed (SIGKILL) at a file write, a run resumes from its newest committed
epoch and ends bit-identical to an uninterrupted run; ``--resume`` refuses what it cannot continue exactly.

The kills here are a few of ``bench/crash_harness.py``'s (which kills at every write event and at random times,
through the CLI): a forked child trains with ``SPIKEFORGE_KILL_AT_WRITE=N`` and dies at its N-th write event.
"""

from __future__ import annotations

import json
import os
import signal
import warnings
from pathlib import Path

import pytest
import torch
from develop_helpers import synthetic_splits, tiny_recipe
from reliability_helpers import TINY_SETS, cli, mnist_folder, snapshot, weights

from spikeforge import atomic
from spikeforge.train.engine import train
from spikeforge.train.run_files import RunDir
from spikeforge.train.start import ResumeWarning

EPOCHS = 3
TIME_KEYS = ("train_time_s", "epoch_time_s", "train_samples_per_s")
# write events to die at (label, occurrence): mid-epoch-2 commit, the commit itself, a torn metrics line
KILLS = [("written model.safetensors", 2), ("renamed latest", 2), ("appending to metrics.jsonl", 3)]


def _train(run: Path, resume: bool = False) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # stale lock taken over, leftovers removed: reported, expected here
        train(tiny_recipe(EPOCHS, hybrid=True), run, quiet=True, splits=synthetic_splits(), resume=resume)


def _records(run: Path) -> list[dict[str, object]]:
    return [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in RunDir(run).read_metrics()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """An uninterrupted run and the labels of its write events."""
    base = tmp_path_factory.mktemp("resume")
    events = base / "events.txt"
    os.environ[atomic.COUNT_ENV] = str(events)
    atomic.reset_write_events()
    try:
        _train(base / "reference")
    finally:
        del os.environ[atomic.COUNT_ENV]
    return base / "reference", [line.split("\t")[1] for line in events.read_text().splitlines()]


def _killed_at(run: Path, event: int) -> None:
    pid = os.fork()
    if pid == 0:  # the child trains until it kills itself
        try:
            atomic.reset_write_events()
            os.environ[atomic.KILL_AT_ENV] = str(event)
            _train(run)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"child not killed at event {event}"


@pytest.mark.parametrize(("label", "occurrence"), KILLS, ids=[f"{a} #{b}" for a, b in KILLS])
def test_killed_at_a_write_resumes_bit_identical(reference: tuple[Path, list[str]], tmp_path: Path, label: str,
                                                 occurrence: int) -> None:
    ref, labels = reference
    event = [i for i, x in enumerate(labels, start=1) if x == label][occurrence - 1]
    run = tmp_path / "run"
    _killed_at(run, event)
    assert (run / RunDir.LOCK).exists()  # the dead process's lock
    _train(run, resume=True)
    got, want = weights(run), weights(ref)
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    assert _records(run) == _records(ref)
    assert not [p for p in run.rglob(".*")] and not (run / RunDir.LOCK).exists()


def test_resume_semantics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = mnist_folder(tmp_path / "mnist")
    run = tmp_path / "run"
    base = ["train", "--recipe", "mnist-sdsnn", "--data", data, "--out", run, "--quiet", "--device", "cpu",
            *[a for s in TINY_SETS for a in ("--set", s)]]
    res = cli(capsys, *base, "--resume")
    assert res.error_line == f"spikeforge train: error: --resume: {run} does not exist (nothing to resume)"
    run.mkdir()
    res = cli(capsys, *base, "--resume")  # an empty folder (a run killed before its first checkpoint)
    assert res.code == 0 and res.err.strip() == (f"spikeforge train: warning: --resume: {run} has no committed "
                                                 "checkpoint yet; training starts at epoch 1")
    before = snapshot(run)
    res = cli(capsys, *base, "--resume", "--set", "train.optimizer.name=sgd")
    assert res.error_line == (
        f"spikeforge train: error: --resume: the recipe differs from the one {run} was trained with: "
        "train.optimizer.name = 'sgd' here, 'adam' in the run; resume with the run's own recipe (--recipe "
        "RUN/recipe.toml; only epochs, device, precision and checkpoint settings may change)")
    res = cli(capsys, *base, "--resume")
    assert res.code == 0 and json.loads(res.out)["epoch"] == 1 and res.err.strip() == (
        f"spikeforge train: warning: --resume: {run} already holds all 1 epochs; nothing to train (pass --epochs N "
        "to continue it)")
    assert snapshot(run) == before
    res = cli(capsys, "train", "--recipe", run / "recipe.toml", "--out", run, "--resume", "--epochs", "2", "--quiet")
    assert res.code == 0 and json.loads(res.out)["epoch"] == 2  # the run's own recipe, more epochs
    res = cli(capsys, *base, "--resume")
    assert res.error_line == (f"spikeforge train: error: --resume: {run} is at epoch 2, beyond train.epochs = 1; pass "
                              "--epochs 2 or more")
    res = cli(capsys, "evaluate", run, "--best", "--json")
    assert res.code == 0 and json.loads(res.out)["epoch"] in (1, 2)


def test_a_damaged_latest_checkpoint_falls_back_with_a_warning(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _train(run)
    weights_file = RunDir(run).weights_path()
    weights_file.write_bytes(weights_file.read_bytes()[:-8])  # truncated (e.g. a disk that lost data)
    with pytest.warns(ResumeWarning, match=r"removed what an interrupted run left: epoch-0003"):
        with pytest.warns(UserWarning, match=r"passed over damaged checkpoint\(s\) epoch-0003 \(model.safetensors "):
            train(tiny_recipe(EPOCHS, hybrid=True), run, quiet=True, splits=synthetic_splits(), resume=True)
    assert RunDir(run).committed_epoch() == 3 and [r["epoch"] for r in RunDir(run).read_metrics()] == [1, 2, 3]
