"""Threshold-unit codes: clamp and half-even ties come out of the neurons exactly; the certificate's verdicts."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch

from spikeforge import layers as L
from spikeforge.hybrid.spiking_relu import SpikingReLU
from spikeforge.models.common import Net
from spikeforge.reparam import Batch, ConvertedModel, InputSpec, convert_model, verify_models
from spikeforge.reparam.units import code, level_threshold, levels_from_spikes, plane_count, represent

F64 = torch.float64
T, B = 2, 3
MAX_LEVEL = 40


@pytest.mark.parametrize("coding", ["bitplane", "unary"])
def test_codes_represent_every_clamped_integer(coding: str) -> None:
    for levels in range(1, MAX_LEVEL + 1):
        for n in range(-3, levels + 4):
            z = represent(n, levels, coding)
            assert levels_from_spikes(z, levels, coding) == min(max(n, 0), levels), (levels, n, z)


def test_bitplane_digits_ties_and_unit_counts() -> None:
    for levels in range(1, MAX_LEVEL + 1):
        units = code(levels, "bitplane")
        expected = levels.bit_length() if levels % 2 else (levels - 1).bit_length() + 1
        assert len(units) == plane_count(levels, "bitplane") == expected
        assert sum(u.digit for u in units) == levels
        for u in units:
            # the tie goes up iff the integer just above it is even, whatever the higher units did
            parities = {(u.boundary + sum(units[j].digit * zj for j, zj in zip(u.laterals, zs, strict=True))) % 2
                        for zs in np.ndindex(*([2] * len(u.laterals)))}
            assert parities == {0 if u.tie_up else 1}, (levels, u)
    assert [u.digit for u in code(15, "bitplane")] == [8, 4, 2, 1]  # L = 2^P − 1: ordinary bit planes


@pytest.mark.parametrize("step", [0.351, 0.1, 1 / 3, 0.5, 7.3e-3, 2.0, 1e-5])
def test_level_threshold_matches_the_hybrid_rounding(step: float) -> None:
    """x > θ ⟺ round_half_even(fl(x/s)) ≥ m for every float x near the boundary (ties included)."""
    for m in range(1, 18):
        theta = level_threshold(step, m)
        xs = [theta]
        for _ in range(6):
            xs = [np.nextafter(xs[0], -np.inf), *xs, np.nextafter(xs[-1], np.inf)]
        x = torch.tensor(xs, dtype=F64)
        assert torch.equal(x > theta, torch.round(x / step) >= m), (step, m)


def _identity_site(levels: int, step: float, size: int) -> Net:
    """input → Linear(identity) → SpikingReLU: the site reads exactly the input values."""
    fc = L.Linear(size, size)
    with torch.no_grad():
        fc.weight.copy_(torch.eye(size))
        fc.bias.zero_()
    site = SpikingReLU(levels)
    with torch.no_grad():
        site.step.fill_(step)
    out = L.Linear(size, 2)
    return Net(OrderedDict([("flatten", L.Flatten()), ("fc", fc), ("sr", site), ("out", out)])).to(F64).eval()


def _site_levels(graph_model: ConvertedModel, x: torch.Tensor) -> torch.Tensor:
    rec: dict[str, torch.Tensor] = {}
    graph_model(x, lambda node, _xs, y: rec.__setitem__(node.name, y))
    q = sum(int(n.attrs["digit"]) * rec[n.name] for n in graph_model.graph.nodes
            if n.op == "threshold" and n.attrs["site"] == "sr")
    assert isinstance(q, torch.Tensor)
    return q


@pytest.mark.parametrize("coding", ["bitplane", "unary"])
@pytest.mark.parametrize("levels", [1, 2, 5, 6, 7, 12, 15])
def test_exact_ties_and_clamp_from_neurons(coding: str, levels: int) -> None:
    """Integer inputs with s = 2 hit every boundary (2k + 1 = (k + ½)·s) exactly; beyond L the units clamp."""
    step = 2.0
    values = torch.arange(-4.0, 2 * levels + 6.0)  # every tie, both parities, below 0 and above L
    model = _identity_site(levels, step, values.numel())
    x = values.reshape(1, 1, 1, 1, -1).expand(T, B, 1, 1, -1).to(F64)
    graph = convert_model(model, InputSpec((1, 1, values.numel()), T), coding)
    q = _site_levels(ConvertedModel(graph), x)
    expected = torch.round(x.flatten(2) / step).clamp(0, levels)
    assert torch.equal(q, expected)
    assert (values / step % 1 == 0.5).sum() >= levels  # the check covered the ties
    res = verify_models(model, graph, [Batch(x, x)])
    assert res["spike_flips"] == 0 and res["exact"]
    assert res["certificate"]["guarantee"] == "exact-arithmetic", res["certificate"]
    assert res["certificate"]["near_boundary"] > 0  # decided at margin 0, by identical arithmetic


@pytest.mark.parametrize("coding", ["bitplane", "unary"])
def test_float_ties_of_the_division_are_decided_as_the_hybrid_decides(coding: str) -> None:
    """s = 0.1: inputs a few ulps around every (k + ½)·s, where fl(x/s) itself lands on k + ½."""
    step, levels = float(torch.tensor(0.1, dtype=torch.float32)), 7  # the site stores its step in float32
    xs: list[float] = []
    for m in range(1, levels + 2):
        theta = level_threshold(step, m)
        around = [theta]
        for _ in range(3):
            around = [np.nextafter(around[0], -np.inf), *around, np.nextafter(around[-1], np.inf)]
        xs += around
    values = torch.tensor(xs, dtype=F64)
    assert bool(((values / step) % 1 == 0.5).any())  # genuine float ties of the division
    model = _identity_site(levels, step, values.numel())
    x = values.reshape(1, 1, 1, 1, -1).expand(T, B, 1, 1, -1).contiguous()
    graph = convert_model(model, InputSpec((1, 1, values.numel()), T), coding)
    q = _site_levels(ConvertedModel(graph), x)
    top_or_unary = coding == "unary"
    expected = torch.round(x.flatten(2) / step).clamp(0, levels)
    if top_or_unary:
        assert torch.equal(q, expected)  # every unit reads x itself: identical decisions
    res = verify_models(model, graph, [Batch(x, x)])
    cert = res["certificate"]
    assert cert["margin"] < 1e-15 and cert["near_boundary"] > 0
    assert res["spike_flips"] == 0
    # unary units read x itself: certified; lower bit-plane units subtract s·c_j in float (s is not a
    # power of two): no flip on this data, but nothing proves it
    assert cert["certified"] == top_or_unary
