"""The ``fused`` backend against the ``reference`` loop: spikes, membrane and every gradient."""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
import warnings
import zlib
from collections.abc import Iterator

import pytest
import torch

from spikeforge.neurons import (
    BACKENDS,
    Atan,
    LIFNode,
    NeuronParams,
    PLIFNode,
    Rectangle,
    Sigmoid,
    Triangle,
    compile_report,
    if_params,
    lif_beta_params,
    lif_params,
    neuron_sequence,
    resolve_backend,
)
from spikeforge.neurons.compiled import COMPILED, compiled_sequence
from spikeforge.neurons.fused import backward_loop, forward_loop, fused_sequence
from spikeforge.neurons.fused_eager import backward_eager, forward_eager
from spikeforge.neurons.fused_spec import Coef, Spec
from spikeforge.neurons.surrogate import Surrogate

KINDS = ("if", "lif", "lif_no_decay_input", "lif_beta", "plif")
SURROGATES: tuple[Surrogate, ...] = (Atan(2.0), Sigmoid(4.0), Rectangle(1.0), Triangle(1.0))
TIME_STEPS = (1, 3, 8)
TOL = {torch.float64: dict(rtol=1e-12, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-5)}
PLIF_INIT_W = 0.3  # τ = 1 + exp(−w) ≈ 1.74


@pytest.fixture
def fresh_compiled() -> Iterator[None]:
    """The ``compiled`` backend with an empty report and no compiled functions, before and after."""
    COMPILED.reset()
    yield
    COMPILED.reset()


def make_params(kind: str, soft: bool, detach: bool, surrogate: Surrogate,
                dtype: torch.dtype) -> tuple[NeuronParams, torch.Tensor | None]:
    """Params of one neuron kind; for PLIF also the learnable leaf ``w`` the coefficients come from."""
    v_reset = None if soft else 0.0
    if kind == "if":
        return if_params(1.0, v_reset, detach, surrogate), None
    if kind == "lif":
        return lif_params(2.0, True, 1.0, -0.2 if not soft else None, detach, surrogate), None
    if kind == "lif_no_decay_input":
        return lif_params(3.0, False, 0.8, v_reset, detach, surrogate), None
    if kind == "lif_beta":
        return lif_beta_params(0.2, 0.5, v_reset, detach, surrogate), None
    w = torch.tensor(PLIF_INIT_W, dtype=dtype, requires_grad=True)
    tau = 1.0 + torch.exp(-w)
    return lif_params(tau, True, 1.0, -0.1 if not soft else None, detach, surrogate), w


def run_both(p: NeuronParams, w: torch.Tensor | None, x: torch.Tensor, v0: torch.Tensor | None,
             gs: torch.Tensor, gv: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
    out: dict[str, dict[str, torch.Tensor]] = {}
    for name, fn in (("reference", neuron_sequence), ("fused", fused_sequence)):
        xi = x.detach().clone().requires_grad_()
        vi = None if v0 is None else v0.detach().clone().requires_grad_()
        leaves = [xi] + ([vi] if vi is not None else []) + ([w] if w is not None else [])
        s, v_T = fn(xi, p, vi)
        loss = (s * gs).sum() + (v_T * gv).sum()
        grads = torch.autograd.grad(loss, leaves, retain_graph=w is not None)
        res = {"s": s.detach(), "v": v_T.detach(), "gx": grads[0]}
        if vi is not None:
            res["gv0"] = grads[1]
        if w is not None:
            res["gw"] = grads[-1]
        out[name] = res
    return out


def check_case(kind: str, soft: bool, detach: bool, surrogate: Surrogate, dtype: torch.dtype,
               steps: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    tail = [(5,), (3, 4), (2, 3, 2, 2)][seed % 3]
    shape = (steps, 4, *tail)
    p, w = make_params(kind, soft, detach, surrogate, dtype)
    gain = float(torch.as_tensor(p.input_gain).detach())  # similar firing rates for every kind
    x = ((torch.randn(shape, generator=gen, dtype=torch.float64) * 0.8 + 1.0) / gain).to(dtype)
    v0 = (torch.rand(shape[1:], generator=gen, dtype=torch.float64) * 0.5).to(dtype) if seed % 2 else None
    gs = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
    gv = torch.randn(shape[1:], generator=gen, dtype=torch.float64).to(dtype)
    res = run_both(p, w, x, v0, gs, gv)
    ref, fus = res["reference"], res["fused"]
    assert torch.equal(ref["s"], fus["s"]), "spikes must match exactly"
    assert ref["s"].sum() > 0, "test inputs should make neurons fire"
    for key in ref:
        if key != "s":
            torch.testing.assert_close(fus[key], ref[key], **TOL[dtype], msg=lambda m, k=key: f"{k}: {m}")


@pytest.mark.parametrize("kind,soft,detach", list(itertools.product(KINDS, (True, False), (False, True))))
@pytest.mark.parametrize("surrogate", SURROGATES, ids=lambda s: s.name)
def test_fused_matches_reference(kind: str, soft: bool, detach: bool, surrogate: Surrogate) -> None:
    for i, (dtype, steps) in enumerate(itertools.product((torch.float64, torch.float32), TIME_STEPS)):
        seed = zlib.crc32(f"{kind}{soft}{detach}{surrogate.name}{i}".encode()) % 1000
        check_case(kind, soft, detach, surrogate, dtype, steps, seed)


@pytest.mark.parametrize("soft,detach", list(itertools.product((True, False), (False, True))))
def test_functional_loops_equal_eager_loops(soft: bool, detach: bool) -> None:
    """The functional loops (what torch.compile sees) run eagerly agree with the in-place loops."""
    gen = torch.Generator().manual_seed(int(soft) * 2 + int(detach))
    x = torch.randn(5, 3, 8, generator=gen, dtype=torch.float64) + 0.7
    v0 = torch.rand(3, 8, generator=gen, dtype=torch.float64)
    gs, gv = torch.randn_like(x), torch.randn_like(v0)
    spec = Spec(0.9, None if soft else -0.1, detach, Triangle(1.5))
    coef_sets: list[tuple[Coef, Coef, Coef]] = [
        (0.6, 0.4, 0.05), (1.0, 1.0, 0.0), (1.0, 0.5, 0.0),
        (torch.tensor(0.7, dtype=torch.float64), torch.tensor(0.3, dtype=torch.float64),
         torch.tensor(-0.02, dtype=torch.float64))]
    for a, b, c in coef_sets:
        fwd_pure, fwd_eager = forward_loop(x, v0, a, b, c, spec), forward_eager(x, v0, a, b, c, spec)
        for pure, eager in zip(fwd_pure, fwd_eager, strict=True):
            assert torch.equal(pure, eager)
        hs = fwd_eager[1]
        for grad_vT in (gv, None):
            args = (gs, grad_vT, x, hs, v0, a, b, spec, True, True, True)
            for pure, eager in zip(backward_loop(*args), backward_eager(*args), strict=True):
                torch.testing.assert_close(pure, eager, rtol=1e-12, atol=1e-12)


def test_fused_coefficient_tensors_get_gradients() -> None:
    """LIF(β) with a learnable β and bias: ∂a and ∂c agree with autograd through the reference."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(6, 4, 7, generator=gen, dtype=torch.float64) + 0.3
    grads = {}
    for name, fn in (("reference", neuron_sequence), ("fused", fused_sequence)):
        beta = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
        gain = torch.tensor([1.2], dtype=torch.float64, requires_grad=True)  # one element, not 0-d
        bias = torch.tensor(0.05, dtype=torch.float64, requires_grad=True)
        p = NeuronParams(beta, gain, bias, 0.5, 0.0, False, Sigmoid())
        s, v = fn(x, p, None)
        grads[name] = torch.autograd.grad((s * x).sum() + v.pow(2).sum(), (beta, gain, bias))
    for g_ref, g_fus in zip(grads["reference"], grads["fused"], strict=True):
        assert g_fus.shape == g_ref.shape
        torch.testing.assert_close(g_fus, g_ref, rtol=1e-12, atol=1e-12)


def test_per_element_coefficients_fall_back_to_reference() -> None:
    decay = torch.tensor([0.1, 0.5, 0.9])
    p = NeuronParams(decay, 1.0, 0.0, 1.0, None, False, Atan())
    x = torch.randn(4, 2, 3) + 0.5
    s_ref, v_ref = neuron_sequence(x, p)
    s_fus, v_fus = fused_sequence(x, p)
    assert torch.equal(s_ref, s_fus) and torch.equal(v_ref, v_fus)


def test_channels_last_steps_keep_their_layout() -> None:
    """[T, B, C, H, W] unfolded from a channels-last conv output is used without a copy."""
    x = (torch.randn(4 * 3, 5, 6, 7).to(memory_format=torch.channels_last).unflatten(0, (4, 3)) + 0.6)
    xr, xf = x.clone().requires_grad_(), x.clone().requires_grad_()
    p = lif_params(2.0, v_reset=0.0)
    s_ref, v_ref = neuron_sequence(xr, p)
    s_fus, v_fus = fused_sequence(xf, p)
    assert torch.equal(s_ref, s_fus) and torch.equal(v_ref, v_fus)
    assert s_fus.stride() == x.stride()
    g = torch.randn_like(s_ref)
    (s_ref * g).sum().backward()
    (s_fus * g).sum().backward()
    torch.testing.assert_close(xf.grad, xr.grad)


def test_expanded_channels_last_step_runs_in_channels_last() -> None:
    """One channels-last step expanded over T (a conv applied once to a direct-encoded input)."""
    step = (torch.randn(3, 5, 6, 7) + 0.6).contiguous(memory_format=torch.channels_last)
    x = step.unsqueeze(0).expand(4, *step.shape)
    p = lif_params(2.0, v_reset=0.0)
    s_ref, v_ref = neuron_sequence(x.contiguous(), p)
    s_fus, v_fus = fused_sequence(x, p)
    assert torch.equal(s_ref, s_fus) and torch.equal(v_ref, v_fus)
    assert s_fus[0].is_contiguous(memory_format=torch.channels_last) and not s_fus.is_contiguous()
    flat = (torch.randn(3, 40) + 0.6).unsqueeze(0).expand(5, 3, 40).requires_grad_()  # [T, B, N], expanded
    s_ref, v_ref = neuron_sequence(flat.detach().contiguous(), p)
    s_fus, v_fus = fused_sequence(flat, p)
    assert torch.equal(s_ref, s_fus) and torch.equal(v_ref, v_fus)
    s_fus.sum().backward()
    assert flat.grad is not None and flat.grad.shape == flat.shape


def test_fused_saves_less_than_reference() -> None:
    """Saved-for-backward bytes: the fused node keeps one tensor (h) per step."""
    x = (torch.randn(8, 16, 64) + 0.5).requires_grad_()
    p = lif_params(2.0, v_reset=0.0)

    def saved_bytes(fn: object) -> int:
        total = 0
        seen: set[int] = set()

        def pack(t: torch.Tensor) -> torch.Tensor:
            nonlocal total
            if t.data_ptr() not in seen and t.data_ptr() != x.data_ptr():
                seen.add(t.data_ptr())
                total += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn(x, p, None)  # type: ignore[operator]
        return total

    fused_bytes, ref_bytes = saved_bytes(fused_sequence), saved_bytes(neuron_sequence)
    step_bytes = x.numel() * x.element_size()
    assert fused_bytes <= step_bytes + x[0].numel() * x.element_size()  # h for all steps + v0
    assert ref_bytes >= 2 * fused_bytes


def test_backend_registry_and_modules() -> None:
    assert BACKENDS["fused"] is fused_sequence
    assert resolve_backend("auto", torch.device("cpu")) is fused_sequence
    x = torch.randn(5, 3, 8) + 0.6
    for cls in (LIFNode, PLIFNode):
        ref, fus = cls(backend="reference"), cls(backend="fused")
        fus.load_state_dict(ref.state_dict())
        xr, xf = x.clone().requires_grad_(), x.clone().requires_grad_()
        sr, sf = ref(xr), fus(xf)
        assert torch.equal(sr, sf)
        (sr * x).sum().backward()
        (sf * x).sum().backward()
        torch.testing.assert_close(xf.grad, xr.grad)
        for pr, pf in zip(ref.parameters(), fus.parameters(), strict=True):
            torch.testing.assert_close(pf.grad, pr.grad)


def test_backend_names_choose_the_loops(monkeypatch: pytest.MonkeyPatch, fresh_compiled: None) -> None:
    """``fused`` never compiles; ``compiled`` compiles each loop once, at its first call, and
    reports it; ``auto`` is ``fused``."""
    requested: list[str] = []

    def fake_compile(fn: object, **_: object) -> object:  # stands in for torch.compile: no codegen
        requested.append(getattr(fn, "__name__", ""))
        return fn

    monkeypatch.setattr(torch, "compile", fake_compile)
    x = torch.randn(3, 4).requires_grad_()
    p = if_params()
    for _ in range(3):
        fused_sequence(x, p)[0].sum().backward()
    assert requested == [] and compile_report()["compiles"] == 0
    assert resolve_backend("auto", torch.device("cpu")) is fused_sequence
    assert BACKENDS["compiled"] is compiled_sequence
    for _ in range(3):
        compiled_sequence(x, p)[0].sum().backward()
    assert requested == ["forward_loop", "backward_loop"]
    report = compile_report()
    assert report["compiles"] == 2 and report["failure"] is None  # one per loop and signature
    compiled_sequence(torch.randn(5, 4), p)  # a new shape: one more compile event
    assert compile_report()["compiles"] == 3


def test_compile_failure_is_reported_once(monkeypatch: pytest.MonkeyPatch, fresh_compiled: None) -> None:
    def broken(fn: object, **_: object) -> object:
        def run(*args: object) -> object:
            raise RuntimeError("no compiler here")
        return run

    monkeypatch.setattr(torch, "compile", broken)
    x = torch.randn(4, 3, 5) + 0.5
    p = lif_params(2.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outs = [compiled_sequence(x, p) for _ in range(3)]
    messages = [str(w.message) for w in caught if "torch.compile failed" in str(w.message)]
    assert len(messages) == 1 and "'compiled'" in messages[0] and "no compiler here" in messages[0]
    assert compile_report()["failure"] == "RuntimeError: no compiler here"
    s_ref, v_ref = neuron_sequence(x, p)
    for s, v in outs:
        assert torch.equal(s, s_ref) and torch.equal(v, v_ref)


def test_compiled_loops_match_reference(fresh_compiled: None) -> None:
    """One real torch.compile run (small, float64 so inductor's FMA contraction stays far below
    the tolerance); a compile failure would be reported, and the result must still match."""
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(4, 3, 16, generator=gen, dtype=torch.float64) + 0.5
    gs = torch.randn(4, 3, 16, generator=gen, dtype=torch.float64)
    gv = torch.randn(3, 16, generator=gen, dtype=torch.float64)
    p = lif_params(2.0, v_reset=0.0, surrogate=Atan())
    res = {}
    for name, fn in (("reference", neuron_sequence), ("compiled", compiled_sequence)):
        xi = x.clone().requires_grad_()
        s, v_T = fn(xi, p, None)
        (gx,) = torch.autograd.grad((s * gs).sum() + (v_T * gv).sum(), (xi,))
        res[name] = (s.detach(), v_T.detach(), gx)
    assert torch.equal(res["reference"][0], res["compiled"][0])
    for i in (1, 2):
        torch.testing.assert_close(res["compiled"][i], res["reference"][i], rtol=1e-10, atol=1e-10)
    report = compile_report()
    assert report["compiles"] == 2 or report["failure"] is not None


@pytest.mark.parametrize("dtype", (torch.bfloat16, torch.float16))
@pytest.mark.parametrize("backend", ("reference", "fused"))
def test_low_precision_inputs_keep_a_float32_membrane(dtype: torch.dtype, backend: str) -> None:
    """16-bit inputs: the membrane runs in float32, so the spikes equal those of the float32
    reference on the (exactly) upcast input; spikes come back in the input dtype, ∂x too."""
    gen = torch.Generator().manual_seed(5)
    x = (torch.randn(6, 4, 33, generator=gen) * 0.7 + 0.6).to(dtype)
    gs = torch.randn(6, 4, 33, generator=gen)
    for p in (lif_params(2.0, v_reset=0.0, surrogate=Sigmoid(4.0)), lif_beta_params(0.2, 0.5),
              lif_params(3.0, True, 1.0, None, False, Atan())):
        xr = x.float().requires_grad_()
        s_ref, v_ref = neuron_sequence(xr, p)
        (g_ref,) = torch.autograd.grad((s_ref * gs).sum(), (xr,))
        xl = x.clone().requires_grad_()
        s, v = BACKENDS[backend](xl, p, None)
        (g,) = torch.autograd.grad((s * gs.to(dtype)).sum(), (xl,))
        assert s.dtype == dtype and v.dtype == torch.float32 and g.dtype == dtype
        assert torch.equal(s.float(), s_ref) and s_ref.sum() > 0
        torch.testing.assert_close(v, v_ref, rtol=0, atol=0)
        torch.testing.assert_close(g.float(), g_ref, rtol=2e-2, atol=2e-2)  # ∂s rounded to 16 bits


def test_retired_compile_variable_is_reported() -> None:
    env = {**os.environ, "SPIKEFORGE_FUSED_COMPILE": "on"}
    out = subprocess.run([sys.executable, "-W", "always", "-c", "import spikeforge.neurons"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    assert "SPIKEFORGE_FUSED_COMPILE is no longer read" in out.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fused_on_cuda_matches_cpu_reference() -> None:
    x = torch.randn(8, 4, 33, dtype=torch.float64) + 0.5
    p = lif_params(2.0, v_reset=0.0)
    s_ref, v_ref = neuron_sequence(x, p)
    s_gpu, v_gpu = fused_sequence(x.cuda(), p)
    assert torch.equal(s_gpu.cpu(), s_ref)
    torch.testing.assert_close(v_gpu.cpu(), v_ref, rtol=1e-12, atol=1e-12)


def test_fused_known_spike_train() -> None:
    """A constant drive of 0.5 into IF (θ = 1, soft reset) fires on every second step."""
    x = torch.full((6, 1), 0.5, dtype=torch.float64)
    s, v = fused_sequence(x, if_params(1.0, None))
    assert s.flatten().tolist() == [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    assert math.isclose(v.item(), 0.0, abs_tol=1e-12)
