"""Numbers that go bad: a non-finite loss or gradient stops training naming the epoch and step (or is skipped up
to ``train.skip_nonfinite_steps``); a non-finite model is never saved over a finite checkpoint; every command that
loads tensors refuses non-finite ones naming the tensor and the file."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from develop_helpers import synthetic_splits, tiny_recipe
from reliability_helpers import TINY_SETS, cli, mnist_folder, snapshot, tiny_run, weights
from torch import nn

from spikeforge.atomic import write_json
from spikeforge.train.checkpoint import NonFiniteError, load_tensors, save_tensors
from spikeforge.train.checkpoint_store import CheckpointStore, Manifest, sha256_file
from spikeforge.train.engine import train
from spikeforge.train.hooks import Metadata, Method, Metrics, TrainContext, TrainHook
from spikeforge.train.numerics import NonFiniteWarning
from spikeforge.train.registry import register_method, unregister_method
from spikeforge.train.run_files import RunDir
from spikeforge.train.schema import Recipe

SECTION = "poison"


@dataclass
class PoisonConfig:
    steps: list[str]  # "EPOCH.STEP": that step's output becomes NaN (a NaN loss; the weights stay finite)
    weights_at_epoch: int = 0  # > 0: a weight becomes NaN at the end of this epoch


class PoisonHook(TrainHook):
    def __init__(self, cfg: PoisonConfig, model: nn.Module) -> None:
        self.cfg, self.model, self.step = cfg, model, 0

    def before_step(self, ctx: TrainContext) -> None:
        self.step += 1
        if f"{ctx.epoch}.{self.step}" in self.cfg.steps:
            handle = self.model.register_forward_hook(lambda _m, _i, out: (handle.remove(), out * float("nan"))[1])

    def end_epoch(self, ctx: TrainContext) -> Metrics:
        self.step = 0
        if ctx.epoch == self.cfg.weights_at_epoch:
            with torch.no_grad():
                next(self.model.parameters()).view(-1)[0] = float("inf")
        return {}


class Poison(Method[PoisonConfig]):
    section = SECTION
    config_type = PoisonConfig

    def prepare(self, ctx: TrainContext, saved: Metadata | None = None) -> PoisonHook:
        return PoisonHook(self.config(ctx.recipe), ctx.model)

    def restore(self, recipe: Recipe, model: nn.Module, meta: Metadata) -> None:
        pass


@pytest.fixture
def poison() -> Iterator[None]:
    register_method(Poison())
    yield
    unregister_method(SECTION)


def _recipe(epochs: int, steps: list[str], weights_at_epoch: int = 0, skip: int = 0) -> Recipe:
    recipe = tiny_recipe(epochs, hybrid=True)
    recipe.methods[SECTION] = PoisonConfig(steps, weights_at_epoch)
    recipe.train.skip_nonfinite_steps = skip
    return recipe


def _train(recipe: Recipe, run: Path) -> dict[str, object]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="develop: a")
        return train(recipe, run, quiet=True, splits=synthetic_splits())


def test_a_nan_loss_stops_training_naming_epoch_and_step(tmp_path: Path, poison: None) -> None:
    run = tmp_path / "run"
    expected = (rf"^epoch 2, step 2 of 3: the loss is nan \(learning rate 0.01\); training stopped, nothing of epoch 2 "
                rf"was saved and {run} keeps its checkpoint of epoch 1. Lower train.optimizer.lr, set "
                r"train.grad_clip, or allow N such steps with --set train.skip_nonfinite_steps=N$")
    with pytest.raises(NonFiniteError, match=expected):
        _train(_recipe(3, ["2.2"]), run)
    rd = RunDir(run)
    assert rd.committed_epoch() == 1 and [r["epoch"] for r in rd.read_metrics()] == [1]
    assert all(torch.isfinite(t).all() for t in weights(run).values() if t.is_floating_point())
    assert not (run / RunDir.LOCK).exists()


def test_nonfinite_steps_are_skipped_up_to_the_configured_count(tmp_path: Path, poison: None) -> None:
    with pytest.warns(NonFiniteWarning, match=r"^epoch 2, step 1 of 3: the loss is nan; step skipped \(1 of "
                                              r"train.skip_nonfinite_steps = 1\)$"):
        record = _train(_recipe(3, ["2.1"], skip=1), tmp_path / "run")
    assert record["epoch"] == 3
    assert [r["nonfinite_steps_skipped"] for r in RunDir(tmp_path / "run").read_metrics()] == [0, 1, 0]
    with pytest.raises(NonFiniteError, match=r"^epoch 2, step 2 of 3: the loss is nan .*; 1 skipped steps used up; "):
        with pytest.warns(NonFiniteWarning):
            _train(_recipe(3, ["2.1", "2.2"], skip=1), tmp_path / "run2")


def test_a_non_finite_model_is_never_saved(tmp_path: Path, poison: None) -> None:
    run = tmp_path / "run"
    expected = (rf"^the model at the end of epoch 2 \(not saved; {run} keeps its checkpoint of epoch 1\): tensor "
                r"'conv1.weight' \(1 of \d+ values\) holds NaN or infinite values; it is not a usable state$")
    with pytest.raises(NonFiniteError, match=expected):
        _train(_recipe(3, [], weights_at_epoch=2), run)
    assert RunDir(run).committed_epoch() == 1 and [r["epoch"] for r in RunDir(run).read_metrics()] == [1]
    assert all(torch.isfinite(t).all() for t in weights(run).values() if t.is_floating_point())


def test_an_overflowing_input_stops_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A normalisation whose std is a float32 denormal turns pixels into infinities: the first step stops."""
    data = mnist_folder(tmp_path / "mnist")
    sets = [a for s in [*TINY_SETS, "data.std=[1e-45]", "data.encoding=direct"] for a in ("--set", s)]
    res = cli(capsys, "train", "--recipe", "mnist-sdsnn", "--data", data, "--out", tmp_path / "run", "--quiet", *sets)
    assert res.code == 1 and res.error_line == (
        "spikeforge train: error: epoch 1, step 1 of 2: the gradient norm is nan (learning rate 0.001); training "
        f"stopped, nothing of epoch 1 was saved and {tmp_path / 'run'} has no checkpoint. Lower train.optimizer.lr, "
        "set train.grad_clip, or allow N such steps with --set train.skip_nonfinite_steps=N")
    assert RunDir(tmp_path / "run").committed_epoch() is None and not (tmp_path / "run" / RunDir.LOCK).exists()


def _poison_checkpoint(run: Path) -> tuple[Path, str]:
    """Put NaN into the latest checkpoint's weights and keep its manifest consistent (as a NaN-saving tool would)."""
    folder = RunDir(run).checkpoint_folder()
    path = folder / RunDir.MODEL_WEIGHTS
    tensors = load_tensors(path)
    name = next(k for k, v in tensors.items() if k.endswith("weight") and v.is_floating_point())
    tensors[name].view(-1)[:3] = float("nan")
    save_tensors(path, tensors)
    manifest = Manifest.read(folder / CheckpointStore.MANIFEST)
    manifest.files[RunDir.MODEL_WEIGHTS] = (path.stat().st_size, sha256_file(path))
    write_json(folder / CheckpointStore.MANIFEST, manifest.to_dict())
    return path, name


def test_non_finite_tensors_are_refused_by_every_command_that_loads_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tiny_run(tmp_path / "run", hybrid=False)
    path, name = _poison_checkpoint(run)
    before = snapshot(run)
    n = load_tensors(path)[name].numel()
    expected = f"{path}: tensor {name!r} (3 of {n} values) holds NaN or infinite values; it is not a usable state"
    for command in (["evaluate", run], ["convert", run, "--out", tmp_path / "c"], ["compact", run, "--out",
                    tmp_path / "k"], ["export", run, "--out", tmp_path / "m.nir"], ["verify", run]):
        res = cli(capsys, *command)
        if command[0] == "verify":  # verify reads a converted directory first
            assert res.code == 1
            continue
        assert res.code == 1 and res.error_line == f"spikeforge {command[0]}: error: {expected}", command
    with pytest.raises(NonFiniteError, match=rf"^{path}: tensor {name!r}"):
        train(tiny_recipe(3), run, quiet=True, splits=synthetic_splits(), resume=True)
    assert snapshot(run) == {k: v for k, v in snapshot(run).items() if k in before} == before
    assert not (tmp_path / "c").exists() and not (tmp_path / "k").exists() and not (tmp_path / "m.nir").exists()


def test_an_imported_graph_with_nan_weights_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nir = pytest.importorskip("nir")
    import numpy as np

    weight = np.ones((2, 4))
    weight[0, 0] = np.nan
    graph = nir.NIRGraph(nodes={"input": nir.Input(np.array([4])), "fc": nir.Affine(weight=weight, bias=np.zeros(2)),
                                "lif": nir.LIF(tau=np.ones(2) * 2, r=np.ones(2), v_leak=np.zeros(2),
                                               v_threshold=np.ones(2)), "output": nir.Output(np.array([2]))},
                         edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")])
    nir.write(tmp_path / "g.nir", graph)
    res = cli(capsys, "import", tmp_path / "g.nir", "--out", tmp_path / "run", "--dt", "1")
    assert res.code == 1 and "NaN or infinite" in res.error_line and str(tmp_path / "g.nir") in res.error_line
    assert not (tmp_path / "run").exists()
