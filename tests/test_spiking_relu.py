"""SpikingReLU: forward values, LSQ gradients, STE, initialisation and integer levels."""

from __future__ import annotations

import math

import pytest
import torch

from spikeforge.hybrid.spiking_relu import BatchShare, SpikingReLU, quantize_levels

# values chosen away from rounding ties (x/s never ends in .5)
X = torch.tensor([-0.7, -0.01, 0.0, 0.04, 0.26, 0.49, 1.13, 1.61, 3.0])
STEP = 0.2
LEVELS = 7


def _unit(levels: int = LEVELS, step: float = STEP) -> SpikingReLU:
    m = SpikingReLU(levels, init_step=step)
    m.initialized.fill_(True)  # keep the given step (no data-driven init)
    return m


def test_forward_values_match_formula() -> None:
    m = _unit()
    y = m(X).detach()
    # 1.61/0.2 = 8.05 → clamp 7
    expected = torch.tensor([0, 0, 0, 0, 1, 2, 6, 7, 7], dtype=torch.float32) * STEP
    torch.testing.assert_close(y, expected)
    # ReLU-like: non-negative, monotone, saturates at s·L
    assert float(y.min()) == 0.0 and float(y.max()) == pytest.approx(STEP * LEVELS)


def test_integer_levels() -> None:
    m = _unit()
    q = m.integer_levels(X)
    assert torch.equal(q, q.round()) and int(q.min()) >= 0 and int(q.max()) <= LEVELS
    torch.testing.assert_close(m(X).detach(), q * STEP)
    torch.testing.assert_close(quantize_levels(X, STEP, LEVELS), q)


def test_lsq_gradients_match_formula() -> None:
    m = _unit()
    x = X.clone().requires_grad_(True)
    g_out = torch.linspace(0.5, 1.5, X.numel())
    m(x).backward(g_out)
    q = X / STEP
    inside = (q >= 0) & (q <= LEVELS)
    # straight-through estimator for x: gradient passes where 0 <= x/s <= L, else 0
    torch.testing.assert_close(x.grad, g_out * inside.float())
    # LSQ step gradient: g · Σ grad_out · (round(q) − q inside, L above, 0 below)
    clipped = torch.where(q > LEVELS, torch.tensor(float(LEVELS)), torch.tensor(0.0))
    ds = torch.where(inside, q.round() - q, clipped)
    scale = 1.0 / math.sqrt(X.numel() * LEVELS)
    assert float(m.step.grad) == pytest.approx(float((g_out * ds).sum()) * scale, rel=1e-5)


def test_step_gradient_matches_finite_difference_direction() -> None:
    # for inputs above the clip, dy/ds = L exactly (times the gradient scale)
    m = _unit()
    x = torch.full((4,), 10.0)
    m(x).sum().backward()
    assert float(m.step.grad) == pytest.approx(4 * LEVELS / math.sqrt(4 * LEVELS))


def test_invalid_levels() -> None:
    with pytest.raises(ValueError, match="levels"):
        SpikingReLU(0)


def test_lsq_init_on_first_training_forward_only() -> None:
    m = SpikingReLU(15)
    assert not bool(m.initialized) and m.step.item() == 1.0
    x = torch.randn(3, 4, 8) * 2.0
    m.eval()
    m(x)  # evaluation never initialises
    assert not bool(m.initialized) and m.step.item() == 1.0
    m.train()
    m(x)
    assert bool(m.initialized)
    assert m.step.item() == pytest.approx(float(2 * x.abs().mean() / math.sqrt(15)), rel=1e-6)
    before = m.step.item()
    m(x * 5)  # later batches do not re-initialise
    assert m.step.item() == before


def test_initialized_is_saved_and_restored() -> None:
    a = SpikingReLU(3)
    a.train()
    a(torch.rand(10) * 4)
    b = SpikingReLU(3)
    b.load_state_dict(a.state_dict())
    assert bool(b.initialized) and b.step.item() == a.step.item()
    b.train()
    b(torch.rand(10) * 100)  # a loaded (trained) step is kept
    assert b.step.item() == a.step.item()


def test_site_is_not_spiking() -> None:
    assert SpikingReLU.spiking is False


def test_a_share_of_the_batch_learns_as_the_whole_batch() -> None:
    """Two data-parallel processes, simulated: each holds part of a batch (4 and 3 of 7 samples) and is told
    its BatchShare; the initial step and the summed step gradients equal one unit seeing the whole batch."""
    x = torch.randn(2, 7, 5, generator=torch.Generator().manual_seed(1)) * 2  # [T, B, N]
    weights = torch.rand(x.shape, generator=torch.Generator().manual_seed(2))
    whole = SpikingReLU(LEVELS)
    (whole(x) * weights).sum().backward()

    parts, part_weights = torch.tensor_split(x, 2, dim=1), torch.tensor_split(weights, 2, dim=1)
    stats = [torch.stack([p.abs().sum(), torch.tensor(float(p.numel()))]) for p in parts]
    grads = []
    for r, (p, w) in enumerate(zip(parts, part_weights, strict=True)):
        unit = SpikingReLU(LEVELS)
        other = stats[1 - r]
        unit.share = BatchShare(p.shape[1], x.shape[1], lambda t, other=other: t.add_(other))
        (unit(p) * w).sum().backward()
        assert unit.step.item() == pytest.approx(whole.step.item(), rel=1e-6)  # same LSQ initialisation
        grads.append(float(unit.step.grad))
    assert sum(grads) == pytest.approx(float(whole.step.grad), rel=1e-5)
    assert BatchShare().elements(x) == x.numel()
