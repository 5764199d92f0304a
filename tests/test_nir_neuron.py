"""Imported neurons: exact threshold comparison (v > θ via the next float), resets, multi-spikes,
per-neuron parameters, the fast path's equality with the general loop, surrogate gradients."""

from __future__ import annotations

import pytest
import torch

from spikeforge.nir.neuron import Carry, CubaNeuron, Integrator, NirNeuron, above
from spikeforge.nir.ops import Delay

IF = {"decay": 1.0, "gain": 1.0, "bias": 0.0, "threshold": 1.0, "v_reset": 0.0, "rest": 0.0}


def constant(value: float, steps: int = 4, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.full((steps, 1, 1), value, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gt_is_exact_at_the_threshold(dtype: torch.dtype) -> None:
    """A membrane exactly at θ fires with ``ge`` (spikeforge, Sinabs) and not with ``gt`` (NIR)."""
    x = constant(0.5, dtype=dtype)  # v = 0.5, 1.0 (= θ), ...
    ge = NirNeuron((1,), IF, fire="ge")(x).flatten().tolist()
    gt = NirNeuron((1,), IF, fire="gt")(x).flatten().tolist()
    assert ge == [0.0, 1.0, 0.0, 1.0]
    assert gt == [0.0, 0.0, 1.0, 0.0]  # 1.0 is not > 1.0; 1.5 is
    theta = torch.tensor(1.0, dtype=dtype)
    nxt = above(1.0, theta)
    assert nxt > 1.0 and torch.tensor(nxt, dtype=dtype) == torch.nextafter(theta, torch.tensor(2.0, dtype=dtype))


def test_subtract_reset_and_multi_spikes() -> None:
    x = constant(2.5, steps=3)
    single = NirNeuron((1,), IF, fire="ge", reset="subtract")
    s, v = single.run(x)
    assert s.flatten().tolist() == [1.0, 1.0, 1.0] and float(v) == pytest.approx(4.5)
    multi = NirNeuron((1,), IF, fire="ge", reset="subtract", spikes="multi")
    s, v = multi.run(x)
    assert s.flatten().tolist() == [2.0, 3.0, 2.0] and float(v) == pytest.approx(0.5)  # 2.5, 3.0→3, 2.5


def test_value_reset_and_rest() -> None:
    values = dict(IF, v_reset=-0.25, rest=0.3)
    s, v = NirNeuron((1,), values, fire="gt").run(constant(0.4, steps=3))
    assert s.flatten().tolist() == [0.0, 1.0, 0.0]  # 0.7, 1.1 → reset to -0.25, 0.15
    assert float(v) == pytest.approx(0.15)


def test_fast_path_equals_general_loop() -> None:
    torch.manual_seed(0)
    x = torch.rand(20, 8, 5) * 1.5
    lif = {"decay": 0.8, "gain": 0.7, "bias": 0.05, "threshold": 0.9, "v_reset": 0.0, "rest": 0.0}
    fast = NirNeuron((5,), lif, fire="gt")
    per = NirNeuron((5,), dict(lif, threshold=None), fire="gt")
    per.coefs.threshold.fill_(0.9)
    assert fast.fast_path() and not per.fast_path()
    torch.testing.assert_close(fast(x), per(x), rtol=0, atol=0)
    assert 0 < float(fast(x).mean()) < 1


def test_params_and_refusals() -> None:
    p = NirNeuron((1,), IF, fire="gt").params()
    assert p.threshold > 1.0 and p.threshold == above(1.0, torch.empty(()))
    assert NirNeuron((1,), IF, fire="ge", reset="subtract").params().v_reset is None
    with pytest.raises(ValueError, match="per-neuron"):
        NirNeuron((3,), dict(IF, decay=None)).params()
    with pytest.raises(ValueError, match="multiple spikes"):
        NirNeuron((1,), IF, reset="subtract", spikes="multi").params()


def test_surrogate_gradients_reach_the_synapse() -> None:
    torch.manual_seed(1)
    fc = torch.nn.Linear(4, 3)
    site = NirNeuron((3,), dict(IF, threshold=None), fire="gt")
    site.coefs.threshold.copy_(torch.tensor([0.5, 1.0, 1.5]))
    out = site(fc(torch.rand(10, 2, 4))).sum()
    out.backward()
    assert fc.weight.grad is not None and fc.weight.grad.abs().sum() > 0


def test_carry_continues_a_sequence() -> None:
    """Running T steps in two calls with a carry equals one call (neurons, integrators, currents, delays)."""
    torch.manual_seed(2)
    x = torch.rand(10, 2, 3)
    li = {"decay": 0.7, "gain": 0.3, "bias": 0.1, "rest": 0.2}
    mods = [NirNeuron((3,), dict(IF, threshold=0.8)), Integrator((3,), li),
            CubaNeuron(Integrator((3,), dict(li, bias=0.0, rest=0.0)), NirNeuron((3,), IF)),
            Delay((3,), 3, 3)]
    for m in mods:
        whole = m(x)
        carry = Carry()
        parts = torch.cat([m(x[:4], carry), m(x[4:], carry)])
        torch.testing.assert_close(parts, whole, rtol=0, atol=0)
