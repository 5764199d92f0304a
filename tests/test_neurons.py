"""The functional neuron core: dynamics against independent plain-Python loops, resets,
detach_reset, surrogate derivatives against their primitives, and the streaming step API."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

from spikeforge.neurons import (
    Atan,
    IFNode,
    LIFNode,
    NeuronConfig,
    PLIFNode,
    Rectangle,
    Sigmoid,
    SpikingNeuron,
    Triangle,
    if_params,
    lif_beta_params,
    lif_params,
    make_surrogate,
    neuron_sequence,
)
from spikeforge.neurons.surrogate import Surrogate

STEPS, NEURONS = 7, 9
FD_STEP = 1e-6  # central finite-difference step for the surrogate primitives
KINK_MARGIN = 1e-3  # keep finite-difference points this far from the piecewise kinks


def python_loop(xs: list[list[float]], update: Callable[[float, float], float], threshold: float,
                v_reset: float | None, v_init: float = 0.0) -> tuple[list[list[float]], list[float]]:
    """Plain-Python neuron: ``v ← update(v, x)``, spike when ``v ≥ θ``, then reset."""
    v = [v_init] * len(xs[0])
    spikes = []
    for row in xs:
        s_row = []
        for i, x in enumerate(row):
            u = update(v[i], x)
            s = 1.0 if u >= threshold else 0.0
            if s:
                u = u - threshold if v_reset is None else v_reset
            v[i] = u
            s_row.append(s)
        spikes.append(s_row)
    return spikes, v


def random_drive(seed: int, scale: float = 1.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(STEPS, NEURONS, generator=gen, dtype=torch.float64) * 1.6 - 0.2) * scale


def assert_matches_loop(x: torch.Tensor, p: object, update: Callable[[float, float], float],
                        threshold: float, v_reset: float | None) -> None:
    s, v = neuron_sequence(x, p)  # type: ignore[arg-type]
    s_ref, v_ref = python_loop(x.tolist(), update, threshold, v_reset,
                               0.0 if v_reset is None else v_reset)
    assert s.tolist() == s_ref
    assert s.sum() > 0
    torch.testing.assert_close(v, torch.tensor(v_ref, dtype=torch.float64), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("v_reset", [None, 0.0, -0.3])
def test_if_dynamics(v_reset: float | None) -> None:
    assert_matches_loop(random_drive(1), if_params(1.0, v_reset), lambda v, x: v + x, 1.0, v_reset)


@pytest.mark.parametrize("v_reset", [None, 0.0, 0.2])
@pytest.mark.parametrize("decay_input", [True, False])
def test_lif_tau_dynamics(decay_input: bool, v_reset: float | None) -> None:
    tau, v_r = 2.5, v_reset or 0.0
    if decay_input:  # τ dv = −(v − v_r) + x
        def update(v: float, x: float) -> float:
            return v + (x - (v - v_r)) / tau
        x = random_drive(2, scale=tau)
    else:  # τ dv = −(v − v_r), then + x
        def update(v: float, x: float) -> float:
            return v - (v - v_r) / tau + x
        x = random_drive(3)
    assert_matches_loop(x, lif_params(tau, decay_input, 1.0, v_reset), update, 1.0, v_reset)


def test_lif_beta_is_sdsnn_form() -> None:
    """SD-SNN: ``v_t = β v_{t−1} (1 − s_{t−1}) + x_t``, ``s_t = [v_t ≥ 0.5]``, written out directly."""
    beta, theta = 0.2, 0.5
    x = random_drive(4, scale=0.6)
    v_prev = torch.zeros(NEURONS, dtype=torch.float64)
    s_prev = torch.zeros(NEURONS, dtype=torch.float64)
    expected = []
    for x_t in x:
        v_prev = beta * v_prev * (1 - s_prev) + x_t
        s_prev = (v_prev >= theta).double()
        expected.append(s_prev)
    s, _ = neuron_sequence(x, lif_beta_params(beta))
    assert torch.equal(s, torch.stack(expected))
    assert s.sum() > 0


def test_plif_matches_lif_with_its_tau_and_learns_tau() -> None:
    x = random_drive(5, scale=2.0).float()
    plif = PLIFNode(init_tau=3.0, backend="reference")
    lif = LIFNode(tau=3.0, backend="reference")
    assert math.isclose(plif.tau.item(), 3.0, rel_tol=1e-6)
    torch.testing.assert_close(plif(x), lif(x))
    plif(x).sum().backward()
    assert plif.w.grad is not None and plif.w.grad.abs() > 0


def test_soft_and_hard_reset_on_a_known_input() -> None:
    x = torch.full((6, 1), 0.75, dtype=torch.float64)
    s_soft, v_soft = neuron_sequence(x, if_params(1.0, None))
    s_hard, v_hard = neuron_sequence(x, if_params(1.0, 0.0))
    # soft keeps the 0.5 excess: 0.75, 1.5→0.5, 1.25→0.25, 1.0→0, 0.75, 1.5→0.5
    assert s_soft.flatten().tolist() == [0, 1, 1, 1, 0, 1]
    assert v_soft.item() == pytest.approx(0.5)
    # hard drops to 0: 0.75, 1.5→0, 0.75, 1.5→0, ...
    assert s_hard.flatten().tolist() == [0, 1, 0, 1, 0, 1]
    assert v_hard.item() == 0.0


@pytest.mark.parametrize("v_reset", [None, 0.0])
def test_detach_reset_changes_gradients_only(v_reset: float | None) -> None:
    x = random_drive(6, scale=1.5)
    results = []
    for detach in (False, True):
        xi = x.clone().requires_grad_()
        s, v = neuron_sequence(xi, lif_params(2.0, True, 1.0, v_reset, detach))
        (s.sum() + v.sum()).backward()
        results.append((s.detach(), v.detach(), xi.grad))
    (s0, v0, g0), (s1, v1, g1) = results
    assert torch.equal(s0, s1) and torch.equal(v0, v1)
    assert not torch.allclose(g0, g1)


SMOOTH_PRIMITIVES: list[tuple[Surrogate, Callable[[torch.Tensor], torch.Tensor], list[float]]] = [
    (Atan(2.0), lambda x: torch.atan(math.pi * 2.0 * x / 2) / math.pi + 0.5, []),
    (Atan(0.7), lambda x: torch.atan(math.pi * 0.7 * x / 2) / math.pi + 0.5, []),
    (Sigmoid(4.0), lambda x: torch.sigmoid(4.0 * x), []),
    (Rectangle(1.0), lambda x: (x / 1.0 + 0.5).clamp(0, 1), [-0.5, 0.5]),
    (Rectangle(0.4), lambda x: (x / 0.4 + 0.5).clamp(0, 1), [-0.2, 0.2]),
    (Triangle(1.0), lambda x: torch.where(x < 0, (x + 1).clamp(min=0) ** 2 / 2,
                                          1 - (1 - x).clamp(min=0) ** 2 / 2), [-1.0, 0.0, 1.0]),
]


@pytest.mark.parametrize("surrogate,primitive,kinks", SMOOTH_PRIMITIVES,
                         ids=[f"{s.name}{i}" for i, (s, _, _) in enumerate(SMOOTH_PRIMITIVES)])
def test_surrogate_derivative_is_derivative_of_primitive(
        surrogate: Surrogate, primitive: Callable[[torch.Tensor], torch.Tensor], kinks: list[float]) -> None:
    x = torch.linspace(-2.5, 2.5, 401, dtype=torch.float64)
    for k in kinks:
        x = x[(x - k).abs() > KINK_MARGIN]
    numeric = (primitive(x + FD_STEP) - primitive(x - FD_STEP)) / (2 * FD_STEP)
    torch.testing.assert_close(surrogate.derivative(x), numeric, rtol=1e-6, atol=1e-7)
    # the primitive is a smoothed step: 0 far left, 1 far right, 1/2 at the threshold
    assert primitive(torch.tensor([-50.0, 0.0, 50.0], dtype=torch.float64)).tolist() == pytest.approx(
        [0.0, 0.5, 1.0], abs=0.01)


@pytest.mark.parametrize("surrogate", [Atan(), Sigmoid(), Rectangle(), Triangle()], ids=lambda s: s.name)
def test_spike_function_forward_and_backward(surrogate: Surrogate) -> None:
    x = torch.tensor([-1.2, -0.3, -1e-9, 0.0, 1e-9, 0.4, 2.0], dtype=torch.float64, requires_grad=True)
    s = surrogate(x)
    assert s.tolist() == [0, 0, 0, 1, 1, 1, 1]
    s.backward(torch.arange(1.0, 8.0, dtype=torch.float64))
    torch.testing.assert_close(x.grad, surrogate.derivative(x.detach()) * torch.arange(1.0, 8.0,
                                                                                          dtype=torch.float64))


class SmoothAtan(Atan):
    """Atan whose forward is its smooth primitive: makes the neuron differentiable for gradcheck."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.atan(math.pi * self.alpha * x / 2) / math.pi + 0.5


@pytest.mark.parametrize("v_reset", [None, 0.0])
def test_gradcheck_of_smoothed_neuron_sequence(v_reset: float | None) -> None:
    """With the spike replaced by its primitive the charge/reset chain is exactly differentiable,
    so autograd through ``neuron_sequence`` must agree with numerical gradients (gradcheck)."""
    x = random_drive(7)[:4, :3].clone().requires_grad_()
    w = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    v0 = torch.rand(3, dtype=torch.float64, requires_grad=True)

    def fn(x: torch.Tensor, w: torch.Tensor, v0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = lif_params(1.0 + torch.exp(-w), True, 0.6, v_reset, False, SmoothAtan(2.0))
        return neuron_sequence(x, p, v0)

    assert torch.autograd.gradcheck(fn, (x, w, v0))


@pytest.mark.parametrize("node", [
    lambda: IFNode(backend="reference"),
    lambda: LIFNode(tau=2.0, v_reset=0.0, backend="reference"),
    lambda: LIFNode(beta=0.2, threshold=0.5, v_reset=0.0, backend="reference"),
    lambda: PLIFNode(init_tau=2.0, backend="fused"),
    lambda: NeuronConfig(kind="lif", reset="soft", surrogate="triangle").build(),
])
def test_streaming_step_equals_sequence(node: Callable[[], SpikingNeuron]) -> None:
    neuron = node()
    x = random_drive(8, scale=2.0).reshape(STEPS, 3, 3)
    seq = neuron(x)
    v = neuron.init_state(x[0])
    steps = []
    for x_t in x:
        s, v = neuron.step(x_t, v)
        steps.append(s)
    assert torch.equal(torch.stack(steps), seq)
    assert seq.sum() > 0


def test_neuron_config_and_surrogate_factory_errors() -> None:
    assert isinstance(NeuronConfig(kind="plif").build(), PLIFNode)
    assert NeuronConfig(kind="lif", beta=0.3).build().params().decay == 0.3
    for bad in (dict(kind="nope"), dict(reset="sometimes")):
        with pytest.raises(ValueError):
            NeuronConfig(**bad).build()  # type: ignore[arg-type]
    assert make_surrogate("sigmoid", alpha=2.0) == Sigmoid(2.0)
    with pytest.raises(ValueError):
        make_surrogate("relu")
    with pytest.raises(ValueError):
        PLIFNode(init_tau=1.0)
