"""Time-distributed layers equal the per-time-step application of the plain layer."""

from __future__ import annotations

import torch
from torch import nn

from spikeforge import layers as L


def _per_step(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.stack([module(xt) for xt in x])


def test_conv_pool_linear_match_per_step() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 2, 4, 8, 8)
    conv = L.Conv2d(4, 5, 3, padding=1)
    plain = nn.Conv2d(4, 5, 3, padding=1)
    plain.load_state_dict(conv.state_dict())
    assert torch.allclose(conv(x), _per_step(plain, x), atol=1e-6)
    assert torch.equal(L.AvgPool2d(2)(x), _per_step(nn.AvgPool2d(2), x))
    assert torch.equal(L.MaxPool2d(2)(x), _per_step(nn.MaxPool2d(2), x))
    assert torch.equal(L.AdaptiveAvgPool2d(1)(x), _per_step(nn.AdaptiveAvgPool2d(1), x))
    flat = L.Flatten()(x)
    assert flat.shape == (3, 2, 4 * 8 * 8)
    lin = L.Linear(256, 7)
    assert lin(flat).shape == (3, 2, 7)


def test_batchnorm_statistics_shared_over_time() -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 3, 2, 5, 5) * 3 + 1
    bn = L.BatchNorm2d(2)
    y = bn(x)
    # training-mode statistics are taken over T*B*H*W jointly
    assert torch.allclose(y.mean(dim=(0, 1, 3, 4)), torch.zeros(2), atol=1e-5)
    ref = nn.BatchNorm2d(2)
    assert torch.allclose(ref(x.flatten(0, 1)).unflatten(0, (4, 3)), y, atol=1e-6)


def test_dropout_mask_shared_across_time() -> None:
    torch.manual_seed(0)
    drop = L.Dropout(0.5)
    x = torch.ones(6, 4, 10)
    y = drop(x)
    assert torch.equal(y[0], y[5])
    assert set(y.unique().tolist()) <= {0.0, 2.0}
    drop.eval()
    assert torch.equal(drop(x), x)
