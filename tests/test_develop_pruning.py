"""Neuronal pruning: scores from range widths, lowest-importance neurons go first, cumulative rates."""

from __future__ import annotations

import torch
from develop_helpers import developing_conv, developing_linear

from spikeforge.develop.pruning import neuron_importance, prune_neurons, surviving_neurons, synapse_scores


def _fc() -> torch.nn.Module:
    torch.manual_seed(0)
    layer = developing_linear(torch.randn(4, 3))
    widths = torch.tensor([[1.0, 1.0, 1.0],   # importance 1.5 after normalisation (see below)
                           [2.0, 2.0, 2.0],
                           [0.5, 0.5, 0.6],   # the least important neuron
                           [1.5, 1.5, 1.5]])
    with torch.no_grad():
        layer.range_hi.copy_(widths / 2)
        layer.range_lo.copy_(-widths / 2)
    return layer


def test_scores_are_min_max_normalised_range_widths_times_mask() -> None:
    layer = _fc()
    s = synapse_scores(layer)
    assert float(s.min()) == 0.0 and float(s.max()) == 1.0
    assert torch.allclose(s[0], torch.full((3,), (1.0 - 0.5) / 1.5))
    layer.weight_mask[1, 0] = 0
    assert float(synapse_scores(layer)[1, 0]) == 0.0
    assert torch.allclose(neuron_importance(layer), synapse_scores(layer).sum(1))


def test_pruning_removes_the_lowest_importance_neuron_and_gates_its_bias() -> None:
    layer = _fc()
    pruned = prune_neurons(layer, rate=25.0)  # floor(4 * 25 / 100) = 1 neuron
    assert pruned == [2]
    assert torch.equal(layer.weight_mask[2], torch.zeros(3))
    assert int(layer.weight_mask.sum()) == 9
    x = torch.randn(5, 3)
    layer.bias = torch.nn.Parameter(torch.ones(4))
    assert torch.equal(layer(x)[:, 2], torch.zeros(5))  # dead neuron: no input, no bias


def test_rates_are_cumulative() -> None:
    layer = _fc()
    assert prune_neurons(layer, 25.0) == [2]
    assert prune_neurons(layer, 25.0) == []  # same rate: nothing new
    assert prune_neurons(layer, 50.0) == [0]  # next lowest; neuron 2 stays pruned
    assert sorted(torch.nonzero(layer.weight_mask.sum(1) == 0).flatten().tolist()) == [0, 2]


def test_conv_importance_is_per_output_channel_and_ties_break_by_weight_norm() -> None:
    w = torch.ones(3, 2, 3, 3)
    w[1] *= 0.1  # equal ranges everywhere: the channel with the smallest L1 weight goes first
    layer = developing_conv(w)
    assert neuron_importance(layer).shape == (3,)
    assert prune_neurons(layer, 34.0) == [1]
    assert torch.equal(layer.weight_mask[1], torch.zeros(2, 3, 3))


def test_survivors_count_neurons_with_enough_active_inputs() -> None:
    layer = _fc()
    layer.weight_mask[0, :2] = 0  # 1 input left
    layer.weight_mask[2] = 0
    assert surviving_neurons(layer, min_inputs=2) == 2
    assert surviving_neurons(layer, min_inputs=1) == 3


def test_exempt_neurons_are_skipped_and_the_next_least_important_goes() -> None:
    layer = _fc()
    exempt = torch.tensor([False, False, True, False])  # neuron 2 (the least important) regrew this epoch
    assert prune_neurons(layer, 25.0, exempt) == [0]
    assert float(layer.weight_mask[2].sum()) == 3.0
