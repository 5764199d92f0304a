"""Synaptic regeneration: a pruned synapse above the rising percentile for R epochs comes back."""

from __future__ import annotations

import pytest
import torch
from develop_helpers import developing_conv, developing_linear

from spikeforge.develop.regeneration import percentile, regenerate, threshold_percentile

R = 3
Q = 80.0


def _fc() -> torch.nn.Module:
    w = torch.linspace(-1, 1, 20).reshape(4, 5)
    layer = developing_linear(w)
    layer.weight_mask[3] = 0  # neuron 3 pruned; its shadow weights are the largest of the layer
    return layer


def test_percentile_is_nearest_rank() -> None:
    x = torch.arange(1.0, 101.0)
    assert float(percentile(x, 80.0)) == 80.0
    assert float(percentile(x, 100.0)) == 100.0


def test_fc_synapse_restored_after_exactly_r_epochs() -> None:
    layer = _fc()
    # P80 of the 20 weights is the 16th smallest; the 4 weights of row 3 above it are candidates
    for epoch in range(1, R):
        assert regenerate(layer, Q, R) == 0, f"restored too early at epoch {epoch}"
    restored = regenerate(layer, Q, R)
    assert restored == 4
    assert layer.weight_mask[3].tolist() == [0.0, 1.0, 1.0, 1.0, 1.0]  # w[3,0] is exactly P80: not above
    assert int(layer.regen_streak.sum()) == 0


def test_streak_resets_when_a_candidate_drops_below_the_threshold() -> None:
    layer = _fc()
    regenerate(layer, Q, R)
    regenerate(layer, Q, R)
    with torch.no_grad():
        layer.weight[3, 4] = -5.0  # no longer a candidate
    regenerate(layer, Q, R)
    assert float(layer.weight_mask[3, 4]) == 0.0
    assert int(layer.regen_streak[3, 4]) == 0


def test_conv_regenerates_whole_fully_masked_kernels_by_kernel_sum() -> None:
    w = torch.zeros(2, 3, 3, 3)
    w[0, 1] = 1.0  # kernel (0, 1) has the largest sum
    layer = developing_conv(w)
    layer.weight_mask[0] = 0  # output channel 0 pruned
    assert regenerate(layer, 50.0, 1) == 9
    assert torch.equal(layer.weight_mask[0, 1], torch.ones(3, 3))
    assert torch.equal(layer.weight_mask[0, 0], torch.zeros(3, 3))


def test_threshold_rises_to_its_cap() -> None:
    assert threshold_percentile(60.0, 1.1, 99.0, 0.0) == pytest.approx(61.0)
    qs = [threshold_percentile(60.0, 1.1, 99.0, k) for k in range(0, 60, 5)]
    assert qs == sorted(qs) and qs[-1] == 99.0
    assert threshold_percentile(60.0, 1.1, 99.0, 1e6) == 99.0
