"""Bad recipes and arguments: one error line naming the key and what was expected, exit 1, nothing written.

Every case is refused before any data is loaded (``--data`` points at a folder that does not even
exist, and still the recipe's error is the one reported) and before the run directory is created.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from develop_helpers import synthetic_splits, tiny_recipe
from reliability_helpers import cli, mnist_folder

from spikeforge.train.engine import train
from spikeforge.train.recipe import RecipeError

PACKAGED = "packaged recipe mnist-sdsnn"
CASES = [  # (--set overrides or other arguments, the message after "spikeforge train: error: ")
    (["--set", "train.batch_size=0"], f"{PACKAGED}: train.batch_size: expected an integer >= 1, got 0"),
    (["--set", "train.eval_batch_size=0"], f"{PACKAGED}: train.eval_batch_size: expected an integer >= 1, got 0"),
    (["--epochs", "0"], f"{PACKAGED}: train.epochs: expected an integer >= 1, got 0"),
    (["--set", "model.neuron.beta=0", "--set", "model.neuron.tau=0"],
     f"{PACKAGED}: model.neuron.tau: expected a number > 0 (or model.neuron.beta in (0, 1]), got 0.0"),
    (["--set", "model.neuron.beta=1.5"], f"{PACKAGED}: model.neuron.beta: expected a number in (0, 1], or 0 to use "
                                         "tau, got 1.5"),
    (["--set", "model.neuron.kind=plif", "--set", "model.neuron.tau=0.5"],
     f"{PACKAGED}: model.neuron.tau: expected a number > 1 for a PLIF neuron, got 0.5"),
    (["--set", "train.optimizer.lr=nan"], f"{PACKAGED}: train.optimizer.lr: expected a finite number, got nan"),
    (["--set", "train.schedule.min_lr=inf"], f"{PACKAGED}: train.schedule.min_lr: expected a finite number, got inf"),
    (["--set", "train.optimizer.lr=-0.1"], f"{PACKAGED}: train.optimizer.lr: expected a finite number > 0, got -0.1"),
    (["--set", "model.width=0"], f"{PACKAGED}: model.width: expected a number > 0 (the channel multiplier; every "
                                 "layer keeps at least 1 channel), got 0.0"),
    (["--set", "data.time_steps=0"], f"{PACKAGED}: data.time_steps: expected an integer >= 1, got 0"),
    (["--set", "train.keep_checkpoints=0"], f"{PACKAGED}: train.keep_checkpoints: expected an integer >= 1, got 0"),
    (["--set", "train.epoch=3"], f"{PACKAGED}: train.epoch: unknown key; expected one of ['amp', 'batch_size', "
                                 "'compile', 'device', 'epochs', 'eval_batch_size', 'grad_clip', 'keep_checkpoints', "
                                 "'label_smoothing', 'loss', 'optimizer', 'precision', 'schedule', 'seed', "
                                 "'skip_nonfinite_steps', 'threads']"),
    (["--set", "train.epochs=2.5"], f"{PACKAGED}: train.epochs: expected int, got float 2.5"),
    (["--set", "train=5"], "--set train=5: train is a section of settings, not a value; set one of its keys, e.g. "
                           "--set train.KEY=VALUE"),
    (["--set", "train.optimizer=sgd"], "--set train.optimizer='sgd': train.optimizer is a section of settings, not a "
                                       "value; set one of its keys, e.g. --set train.optimizer.KEY=VALUE"),
    (["--device", "tpu"], "--device: unknown device 'tpu'; expected auto, cpu, cuda or cuda:N"),
    (["--set", "train.device=tpu"], f"{PACKAGED}: train.device: expected auto, cpu, cuda or cuda:N, got 'tpu'"),
    (["--set", "train.optimizer.name=rmsprop"],
     f"{PACKAGED}: train.optimizer.name: expected one of ['sgd', 'adam', 'adamw'], got 'rmsprop'"),
    (["--set", "hybrid.sites=bogus:1"], f"{PACKAGED}: hybrid.sites: hybrid policy 'bogus:1': unknown policy 'bogus'; "
                                        "expected none, all, last:K, first:K, every:N[@O], auto:BUDGET or "
                                        "comma-separated site names/globs"),
    (["--set", "model.name=resnet19", "--set", "model.residual=dense"],
     f"{PACKAGED}: model: residual style must be one of ('standard', 'sew', 'ms'), got 'dense'"),
]


@pytest.mark.parametrize(("args", "message"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_values_are_one_line_before_data_and_nothing_is_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    out = tmp_path / "run"
    res = cli(capsys, "train", "--recipe", "mnist-sdsnn", "--data", tmp_path / "no-such-data", "--out", out,
              "--quiet", *args)
    assert res.code == 1 and res.error_line == f"spikeforge train: error: {message}"
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_missing_cuda_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    res = cli(capsys, "train", "--recipe", "mnist-sdsnn", "--out", tmp_path / "run", "--device", "cuda")
    assert res.code == 1
    assert res.error_line.startswith("spikeforge train: error: device 'cuda' requested but CUDA is not available on "
                                     "this machine (torch ")
    assert res.error_line.endswith("; use --device cpu") and not (tmp_path / "run").exists()


def test_recipe_files_that_are_not_recipes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    binary = tmp_path / "weights.toml"
    binary.write_bytes(bytes(range(256)))
    res = cli(capsys, "train", "--recipe", binary, "--out", tmp_path / "run")
    assert res.error_line == f"spikeforge train: error: recipe file {binary}: not a text file (a recipe is UTF-8 TOML)"
    res = cli(capsys, "train", "--recipe", tmp_path, "--out", tmp_path / "run")
    assert res.error_line == f"spikeforge train: error: recipe file {tmp_path} is not a file"
    broken = tmp_path / "broken.toml"
    broken.write_text("[train\nepochs = 1\n")
    res = cli(capsys, "train", "--recipe", broken, "--out", tmp_path / "run")
    assert res.code == 1 and res.error_line.startswith(f"spikeforge train: error: {broken}: invalid TOML: ")
    res = cli(capsys, "train", "--recipe", tmp_path / "missing.toml", "--out", tmp_path / "run")
    assert res.error_line == f"spikeforge train: error: recipe file {tmp_path / 'missing.toml'} does not exist"


def test_out_and_data_pointing_at_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    afile = tmp_path / "notes.txt"
    afile.write_text("keep me")
    data = mnist_folder(tmp_path / "mnist")
    res = cli(capsys, "train", "--recipe", "mnist-sdsnn", "--data", data, "--out", afile, *_tiny())
    assert res.error_line == f"spikeforge train: error: --out {afile} is a file; expected a run directory (a new or " \
                             "empty folder)"
    res = cli(capsys, "train", "--recipe", "mnist-sdsnn", "--data", afile, "--out", tmp_path / "run", *_tiny())
    assert res.error_line == f"spikeforge train: error: dataset 'mnist': {afile} (--data) is a file; expected the " \
                             "dataset folder"
    assert afile.read_text() == "keep me" and not (tmp_path / "run").exists()


def test_the_library_validates_recipes_built_in_python(tmp_path: Path) -> None:
    recipe = tiny_recipe(2)
    recipe.train.eval_batch_size = 0  # before: failed only after a whole epoch
    with pytest.raises(RecipeError, match=r"^train.eval_batch_size: expected an integer >= 1, got 0$"):
        train(recipe, tmp_path / "run", quiet=True, splits=synthetic_splits())
    recipe = tiny_recipe(2)
    recipe.section(type(recipe.methods["develop"])).contraction = 1.5  # type: ignore[union-attr]
    with pytest.raises(RecipeError, match=r"^develop.contraction: expected a number in \(0, 1\], got 1.5$"):
        train(recipe, tmp_path / "run", quiet=True, splits=synthetic_splits())
    assert not (tmp_path / "run").exists()


def _tiny() -> list[str]:
    from reliability_helpers import TINY_SETS

    return [a for s in TINY_SETS for a in ("--set", s)] + ["--quiet", "--device", "cpu"]
