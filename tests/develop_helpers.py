"""Tiny models and recipes shared by the structural-development tests."""

from __future__ import annotations

import torch
from torch import nn

from spikeforge import layers as L
from spikeforge.data.base import ArrayDataset, DatasetInfo, DataSplits
from spikeforge.develop.constraint import attach_ranges
from spikeforge.develop.masking import attach_mask
from spikeforge.develop.regeneration import attach_regeneration
from spikeforge.models import ModelConfig, build_model
from spikeforge.neurons import NeuronConfig
from spikeforge.train.recipe import Recipe, recipe_from_dict

TINY_SIZE = 8
LOW_THRESHOLD = 0.2


def tiny_config(name: str = "sdsnn_convnet") -> ModelConfig:
    in_ch, width = (1, 0.1) if name == "sdsnn_convnet" else (3, 1 / 32)
    return ModelConfig(name=name, in_channels=in_ch, input_size=TINY_SIZE, width=width, num_classes=3,
                       neuron=NeuronConfig(threshold=LOW_THRESHOLD))


def tiny_model(name: str = "sdsnn_convnet", seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(tiny_config(name))


def developing_linear(weight: torch.Tensor, bias: bool = False) -> nn.Module:
    """A masked, ranged, regenerating ``Linear`` with the given weights."""
    layer = L.Linear(weight.shape[1], weight.shape[0], bias=bias)
    with torch.no_grad():
        layer.weight.copy_(weight)
    attach_mask(layer)
    attach_ranges(layer)
    attach_regeneration(layer)
    return layer


def developing_conv(weight: torch.Tensor) -> nn.Module:
    layer = L.Conv2d(weight.shape[1], weight.shape[0], weight.shape[2], bias=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    attach_mask(layer)
    attach_ranges(layer)
    attach_regeneration(layer)
    return layer


def synthetic_splits(n_train: int = 96, n_test: int = 48, classes: int = 3, channels: int = 1,
                     seed: int = 0) -> DataSplits:
    """Images whose class sets which horizontal band is bright (learnable in a few epochs)."""
    gen = torch.Generator().manual_seed(seed)

    def make(n: int) -> ArrayDataset:
        y = torch.arange(n) % classes
        x = torch.randint(0, 60, (n, channels, TINY_SIZE, TINY_SIZE), generator=gen)
        band = TINY_SIZE // classes
        for c in range(classes):
            x[y == c, :, c * band:(c + 1) * band] += 190
        return ArrayDataset(x.to(torch.uint8), y)

    info = DatasetInfo("synthetic", classes, channels, TINY_SIZE)
    return DataSplits(make(n_train), make(n_test), info)


def tiny_recipe(epochs: int = 4, hybrid: bool = False) -> Recipe:
    """A short rate-coded SD-SNN run of the tiny convnet with structural development."""
    doc = {
        "name": "tiny-develop",
        "model": {"name": "sdsnn_convnet", "width": 0.1, "spiking_output": True,
                  "neuron": {"kind": "lif", "beta": 0.2, "threshold": 0.5, "surrogate": "rectangle"}},
        "data": {"name": "mnist", "time_steps": 4, "encoding": "rate"},
        "train": {"epochs": epochs, "batch_size": 32, "loss": "mse_rate", "precision": "fp32", "device": "cpu",
                  "optimizer": {"name": "adam", "lr": 0.01, "weight_decay": 0.0},
                  "schedule": {"name": "constant"}},
        "develop": {"fc_initial_rate": 35.0, "fc_min_inputs": 4, "conv_min_inputs": 2, "min_consecutive_epochs": 1},
    }
    if hybrid:
        doc["hybrid"] = {"sites": "first:1", "levels": 15}
    return recipe_from_dict(doc)
