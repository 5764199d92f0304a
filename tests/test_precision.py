"""``train.precision``: bf16 autocast on CPU, the deprecated ``train.amp`` alias, and a bf16
training run whose neurons keep a float32 membrane."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from spikeforge.models import ModelConfig, build_model
from spikeforge.neurons import NeuronConfig
from spikeforge.train.config import TrainConfig
from spikeforge.train.devices import autocast_context as _autocast
from spikeforge.train.engine import train
from spikeforge.train.recipe import RecipeError, load_recipe, recipe_from_dict, to_toml


def test_precision_values_and_the_deprecated_amp_alias() -> None:
    assert TrainConfig().precision == "auto"
    assert TrainConfig(precision="bf16").amp == "bf16"  # the alias mirrors precision for old readers
    assert TrainConfig(precision="fp32").amp == "off"
    with pytest.warns(DeprecationWarning, match="train.precision"):
        assert TrainConfig(amp="off").precision == "fp32"
    with pytest.warns(DeprecationWarning):
        assert TrainConfig(amp="bf16").precision == "bf16"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert TrainConfig(amp="bf16", precision="bf16").precision == "bf16"  # consistent: no warning
    with pytest.raises(ValueError, match="contradicts train.precision"):
        TrainConfig(amp="off", precision="bf16")
    with pytest.raises(ValueError, match="train.precision must be one of"):
        TrainConfig(precision="fp16")
    with pytest.raises(ValueError, match="train.amp"):
        TrainConfig(amp="yes")


def test_recipes_round_trip_and_old_runs_load() -> None:
    recipe = load_recipe("mnist-sdsnn", ["train.precision=\"bf16\""])
    assert recipe.train.precision == "bf16"
    text = to_toml(recipe)
    assert 'precision = "bf16"' in text and 'amp = "bf16"' in text
    old = {"train": {"amp": "off"}}  # a run directory written before train.precision existed
    with pytest.warns(DeprecationWarning):
        assert recipe_from_dict(old).train.precision == "fp32"
    with pytest.raises((RecipeError, ValueError), match="precision"):
        load_recipe("mnist-sdsnn", ["train.precision=\"half\""])


def test_autocast_runs_convolutions_in_bf16_on_cpu() -> None:
    cpu = torch.device("cpu")
    conv = torch.nn.Conv2d(2, 3, 3)
    x = torch.randn(1, 2, 5, 5)
    with _autocast(cpu, "bf16"):
        assert conv(x).dtype == torch.bfloat16
    for precision in ("fp32", "auto", "off"):
        with _autocast(cpu, precision):
            assert conv(x).dtype == torch.float32
    with pytest.raises(ValueError, match="train.precision"):
        _autocast(cpu, "fp16")


@pytest.mark.parametrize("backend", ("fused", "reference"))
def test_bf16_forward_keeps_spikes_binary_and_close_to_fp32(backend: str) -> None:
    neuron = NeuronConfig(kind="lif", tau=2.0, surrogate="sigmoid", backend=backend)
    model = build_model(ModelConfig(name="cifar_convnet", in_channels=3, input_size=8, width=0.0625,
                                    neuron=neuron))
    x = torch.randn(2, 4, 3, 8, 8).requires_grad_()
    with _autocast(torch.device("cpu"), "bf16"):
        out = model(x)
    out.float().sum().backward()
    assert out.dtype == torch.bfloat16 and x.grad is not None and torch.isfinite(x.grad).all()
    fp32 = model(x.detach())
    assert (out.float() - fp32).abs().max() < 0.5  # bf16 rounding of the convolutions, not a blow-up


def test_bf16_training_run_on_cpu(tmp_path: Path) -> None:
    from spikeforge.data.base import ArrayDataset, DatasetInfo, DataSplits

    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (32, 1, 28, 28), generator=gen, dtype=torch.uint8)
    labels = torch.arange(32) % 10
    info = DatasetInfo(name="tiny", num_classes=10, in_channels=1, input_size=28)
    splits = DataSplits(ArrayDataset(images, labels), ArrayDataset(images[:8], labels[:8]), info)
    recipe = load_recipe("mnist-sdsnn", ["train.epochs=1", "train.batch_size=8", "train.eval_batch_size=8",
                                         "data.time_steps=2", "train.precision=\"bf16\"", "train.loss=\"ce\""])
    record = train(recipe, tmp_path / "run", splits=splits, quiet=True)
    assert 0.0 <= record["test_accuracy"] <= 1.0 and record["train_loss"] == record["train_loss"]
    assert 'precision = "bf16"' in (tmp_path / "run" / "recipe.toml").read_text()
