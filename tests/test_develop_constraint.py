"""Dendritic-spine constraint: range initialisation, expansion and contraction after exactly C epochs."""

from __future__ import annotations

import pytest
import torch
from develop_helpers import developing_linear

from spikeforge.develop.constraint import project, remember, update_ranges

C = 3
KAPPA = 0.75


def _layer() -> torch.nn.Module:
    return developing_linear(torch.tensor([[0.5, -1.0], [0.25, 0.75]]))


def test_ranges_start_at_plus_minus_max_abs_weight() -> None:
    layer = _layer()
    assert torch.equal(layer.range_hi, torch.full((2, 2), 1.0))
    assert torch.equal(layer.range_lo, torch.full((2, 2), -1.0))


def test_upper_bound_moves_out_by_mean_excess_after_exactly_c_epochs() -> None:
    layer = _layer()
    excesses = [0.1, 0.2, 0.3]
    for epoch, ex in enumerate(excesses, start=1):
        with torch.no_grad():
            layer.weight[1, 1] = 1.0 + ex
        upd = update_ranges(layer, C, KAPPA)
        if epoch < C:
            assert float(layer.range_hi[1, 1]) == 1.0 and upd.expanded == 0
    assert upd.expanded == 1
    assert float(layer.range_hi[1, 1]) == pytest.approx(1.0 + sum(excesses) / C)
    assert float(layer.range_lo[1, 1]) == -1.0  # only the crossed bound moves
    assert float(layer.range_hi[0, 0]) == 1.0  # other synapses untouched
    assert int(layer.excess_streak[1, 1]) == 0 and float(layer.excess_sum[1, 1]) == 0.0


def test_lower_bound_mirror_rule_and_interrupted_streak_resets() -> None:
    layer = _layer()
    for w in (-1.2, -1.2, -0.9, -1.1, -1.1):  # streak broken at the third epoch
        with torch.no_grad():
            layer.weight[0, 1] = w
        update_ranges(layer, C, KAPPA)
    assert float(layer.range_lo[0, 1]) == -1.0
    with torch.no_grad():
        layer.weight[0, 1] = -1.4
    update_ranges(layer, C, KAPPA)  # third consecutive epoch below: excess 0.1, 0.1, 0.4
    assert float(layer.range_lo[0, 1]) == pytest.approx(-1.0 - 0.6 / C)


def test_bounds_contract_when_magnitude_shrinks_for_c_epochs() -> None:
    layer = _layer()
    for epoch, w in enumerate((0.4, 0.3, 0.2), start=1):
        with torch.no_grad():
            layer.weight[0, 0] = w
        upd = update_ranges(layer, C, KAPPA)
        expected = 1.0 if epoch < C else KAPPA
        assert float(layer.range_hi[0, 0]) == pytest.approx(expected)
        assert float(layer.range_lo[0, 0]) == pytest.approx(-expected)
    assert upd.contracted >= 1
    # a weight that did not shrink keeps its range
    assert float(layer.range_hi[1, 0]) == 1.0


def test_projection_clamps_weights_into_their_ranges() -> None:
    layer = _layer()
    with torch.no_grad():
        layer.range_hi[0, 0] = 0.3
        layer.range_lo[0, 1] = -0.5
    project(layer)
    remember(layer)
    assert float(layer.weight.detach()[0, 0]) == pytest.approx(0.3)
    assert float(layer.weight.detach()[0, 1]) == pytest.approx(-0.5)
    assert float(layer.weight.detach()[1, 1]) == pytest.approx(0.75)
    assert torch.equal(layer.prev_weight, layer.weight.detach())
