"""The event index lists (runtime/indices.py): numpy and torch builders agree, the fast nonzero is exact,
and the neurons' one-step update (reparam/ops.py) is bit for bit the equation it replaced."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from spikeforge.reparam.ops import neuron_op, neuron_update
from spikeforge.runtime.indices import (
    BRANCH_FREE_FROM,
    BUILDERS,
    NUMPY_BRANCHY_UP_TO,
    builder_for,
    conv_geometry,
    flat_events,
)

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
F64 = torch.float64
DENSITIES = (0.0, 0.01, BRANCH_FREE_FROM + 0.005, 0.05, NUMPY_BRANCHY_UP_TO, 0.3, 1.0)


@pytest.mark.parametrize("density", DENSITIES)
def test_flat_events_equals_flatnonzero(density: float) -> None:
    rng = np.random.default_rng(int(density * 1000))
    for n in (1, 7, 1000, 20_011):
        a = rng.random(n) < density
        np.testing.assert_array_equal(flat_events(a), np.flatnonzero(a))


@pytest.mark.parametrize("density", DENSITIES)
def test_linear_lists_agree_and_are_the_events(density: float) -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(13, 300, generator=gen) < density
    crow_n, cols_n = BUILDERS["numpy"].linear(x)
    crow_t, cols_t = BUILDERS["torch"].linear(x)
    assert torch.equal(crow_n, crow_t) and torch.equal(cols_n, cols_t)
    ones = torch.ones(cols_n.numel())
    rebuilt = torch.sparse_csr_tensor(crow_n, cols_n, ones, x.shape, check_invariants=True).to_dense()
    assert torch.equal(rebuilt.bool(), x)
    assert BUILDERS["numpy"].count(x) == BUILDERS["torch"].count(x) == int(x.sum())


@pytest.mark.parametrize("density", (0.0, 0.02, 0.05, 0.3))
@pytest.mark.parametrize(("kernel", "stride", "padding", "dilation", "size"),
                         [(3, 1, 1, 1, 9), (4, 2, 1, 1, 10), (3, 2, 0, 2, 11), (1, 1, 0, 1, 5)])
def test_conv_lists_agree_and_build_the_sparse_im2col(density: float, kernel: int, stride: int, padding: int,
                                                      dilation: int, size: int) -> None:
    gen = torch.Generator().manual_seed(kernel + 10 * stride)
    c = 5
    x = torch.rand(3, c, size, size + 2, generator=gen) < density
    geom = conv_geometry((size, size + 2), (kernel, kernel), [stride] * 2, [padding] * 2, [dilation] * 2, x.device)
    crow_n, cols_n = BUILDERS["numpy"].conv(x, geom)
    crow_t, cols_t = BUILDERS["torch"].conv(x, geom)
    assert torch.equal(crow_n, crow_t) and torch.equal(cols_n, cols_t)
    # the CSR is the binary im2col: row = output position, column = tap·C + channel
    unfold = torch.nn.functional.unfold(x.to(F64), kernel, dilation, padding, stride)  # [n, C·K, P] (c-major)
    im2col = unfold.reshape(3, c, kernel * kernel, -1).permute(0, 3, 2, 1).reshape(-1, kernel * kernel * c)
    rows = torch.sparse_csr_tensor(crow_n, cols_n, torch.ones(cols_n.numel(), dtype=F64), im2col.shape,
                                   check_invariants=True).to_dense()  # sorted, unique columns per row
    assert torch.equal(rows, im2col)
    # a second batch size through the same geometry (its batched source is cached per size)
    crow_1, _ = BUILDERS["numpy"].conv(x[:1], geom)
    assert torch.equal(crow_1, crow_n[: crow_1.numel()])


def test_builder_choice_is_by_device_and_named() -> None:
    assert builder_for(torch.device("cpu")) is BUILDERS["numpy"]
    assert builder_for(torch.device("cpu"), "torch") is BUILDERS["torch"]
    with pytest.raises(ValueError, match="index builder must be auto or one of numpy, torch, got 'fast'"):
        builder_for(torch.device("cpu"), "fast")
    with pytest.raises(ValueError, match="numpy index builder runs on the CPU, not on meta"):
        builder_for(torch.device("meta"), "numpy")


def _reference_neuron(x: torch.Tensor, attrs: dict) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The neuron equation as it was written before the select form (module docstring of reparam/ops)."""
    a, b, c = attrs["decay"], attrs["input_gain"], attrs["bias"]
    theta, v_reset = attrs["threshold"], attrs["v_reset"]
    v = torch.full_like(x[0], 0.0 if v_reset is None else v_reset)
    spikes, membranes = [], []
    for xt in x:
        h = a * v + b * xt
        if c != 0.0:
            h = h + c
        s = (h - theta >= 0).to(x.dtype)
        v = h - theta * s if v_reset is None else h * (1.0 - s) + v_reset * s
        spikes.append(s)
        membranes.append(v)
    return torch.stack(spikes), membranes


@pytest.mark.parametrize("attrs", [
    {"decay": 1.0, "input_gain": 1.0, "bias": 0.0, "threshold": 1.0, "v_reset": None},
    {"decay": 0.5, "input_gain": 0.5, "bias": 0.0, "threshold": 1.0, "v_reset": 0.0},
    {"decay": 0.9, "input_gain": 1.0, "bias": 0.125, "threshold": 0.7, "v_reset": None},
    {"decay": 1.0, "input_gain": 0.3, "bias": -0.2, "threshold": 0.5, "v_reset": -0.25},
])
def test_neuron_update_is_the_equation_bit_for_bit(attrs: dict) -> None:
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(16, 4, 33, generator=gen, dtype=F64)
    x[3] = 0.0  # exact zeros and exact threshold crossings happen in converted graphs
    x[5, 0, :4] = torch.tensor([float("inf"), float("-inf"), float("nan"), 1e308], dtype=F64)
    x[6, 0, :4] = torch.tensor([0.5, 0.5, 0.5, 1e308], dtype=F64)  # an infinite membrane stays NaN (hard reset)
    ref_s, ref_v = _reference_neuron(x, attrs)
    assert torch.equal(neuron_op(x, attrs), ref_s)  # (NaN membranes never fire: spikes stay comparable)
    assert torch.equal(neuron_op(x, attrs, torch.bool), ref_s.bool())
    v = torch.full_like(x[0], 0.0 if attrs["v_reset"] is None else attrs["v_reset"])
    for t in range(x.shape[0]):
        s, v = neuron_update(x[t], v, attrs)
        assert torch.equal(s, ref_s[t].bool())
        assert torch.equal(v + 0.0, ref_v[t] + 0.0) if not ref_v[t].isnan().any() else \
            torch.allclose(v, ref_v[t], rtol=0, atol=0, equal_nan=True)  # values equal (a zero's sign may differ)


def test_batched_sources_are_safe_from_threads() -> None:
    geom = conv_geometry((6, 7), (3, 3), [1, 1], [1, 1], [1, 1], torch.device("cpu"))
    sizes = [1 + (i % 13) for i in range(200)]  # more sizes than the cache keeps: it is cleared meanwhile
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(geom.batched, sizes))
    for n, src in zip(sizes, got, strict=True):
        assert src.shape == (n * 6 * 7 * 9,) and int(src.max()) == n * 42
