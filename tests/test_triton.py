"""The ``triton`` backend against the reference: on a GPU when there is one, otherwise under
Triton's CPU interpreter (``TRITON_INTERPRET=1``, in a subprocess since the flag is read at
import). Skipped when Triton is not installed (it is not a spikeforge dependency)."""

from __future__ import annotations

import importlib.util
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spikeforge.neurons import Atan, NeuronParams, Rectangle, Sigmoid, Triangle, lif_params, neuron_sequence

HAS_TRITON = importlib.util.find_spec("triton") is not None
pytestmark = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
SURROGATES = (Atan(2.0), Sigmoid(4.0), Rectangle(0.8), Triangle(1.2))
INTERPRETER_TIMEOUT_S = 240


def cases() -> list[tuple[NeuronParams, torch.Tensor | None]]:
    """(params, learnable leaf or None) over resets, detach, surrogates; some with PLIF's τ."""
    out: list[tuple[NeuronParams, torch.Tensor | None]] = []
    for i, (soft, detach, sur) in enumerate(itertools.product((True, False), (False, True), SURROGATES)):
        v_reset = None if soft else -0.1
        if i % 3 == 2:  # PLIF: coefficients from a learnable w
            w = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
            out.append((lif_params(1.0 + torch.exp(-w), True, 1.0, v_reset, detach, sur), w))
        elif i % 3 == 1:
            out.append((lif_params(2.0, False, 0.8, v_reset, detach, sur), None))
        else:
            out.append((NeuronParams(1.0, 1.0, 0.0, 1.0, v_reset, detach, sur), None))
    return out


def compare(device: str, steps_options: tuple[int, ...] = (1, 4)) -> None:
    from spikeforge.neurons.triton_backend import triton_sequence

    for k, (p, w) in enumerate(cases()):
        for steps in steps_options:
            gen = torch.Generator().manual_seed(100 * k + steps)
            x = torch.randn(steps, 3, 37, generator=gen, dtype=torch.float64) * 1.5 + 1.2
            v0 = torch.rand(3, 37, generator=gen, dtype=torch.float64) * 0.3
            gs, gv = torch.randn_like(x), torch.randn_like(v0)
            res = []
            for fn, dev in ((neuron_sequence, "cpu"), (triton_sequence, device)):
                xi = x.to(dev).requires_grad_()
                vi = v0.to(dev).requires_grad_()
                s, v = fn(xi, p, vi)
                leaves = [xi, vi] + ([w] if w is not None else [])
                grads = torch.autograd.grad((s * gs.to(dev)).sum() + (v * gv.to(dev)).sum(), leaves,
                                            retain_graph=True)
                res.append([s.detach().cpu(), v.detach().cpu(), *(g.cpu() for g in grads)])
            (s_ref, *rest_ref), (s_tri, *rest_tri) = res
            assert torch.equal(s_ref, s_tri), f"case {k}, T={steps}: spikes differ"
            assert s_ref.sum() > 0
            for j, (a, b) in enumerate(zip(rest_ref, rest_tri, strict=True)):
                where = f"case {k} T={steps} output {j}"
                torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10, msg=lambda m, w=where: f"{w}: {m}")


def run_checks() -> None:
    """Entry point for the interpreter subprocess."""
    compare("cpu")
    print("TRITON_INTERPRETER_OK")


def test_triton_kernels_under_interpreter() -> None:
    env = dict(os.environ, TRITON_INTERPRET="1")
    code = f"import runpy; runpy.run_path({str(Path(__file__))!r})['run_checks']()"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=INTERPRETER_TIMEOUT_S)
    assert proc.returncode == 0 and "TRITON_INTERPRETER_OK" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_triton_on_cuda_and_registered() -> None:
    from spikeforge.neurons import BACKENDS, resolve_backend
    from spikeforge.neurons.backends import AUTO_ORDER
    from spikeforge.neurons.triton_backend import triton_sequence

    assert BACKENDS["triton"] is triton_sequence
    # ``auto`` follows AUTO_ORDER, which lists triton for CUDA only after this test passed on a GPU
    assert resolve_backend("auto", torch.device("cuda")) is BACKENDS[AUTO_ORDER["cuda"][0]]
    compare("cuda", steps_options=(1, 3, 8))


def test_kernel_failure_falls_back_to_fused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel that fails to build (e.g. an unsupported GPU) must not break training."""
    from spikeforge.neurons import triton_backend

    class Broken:
        def __getitem__(self, grid: object) -> object:
            def launch(*args: object, **kwargs: object) -> None:
                raise RuntimeError("no kernel for this device")
            return launch

    monkeypatch.setattr(triton_backend, "_forward_kernel", Broken())
    monkeypatch.setattr(triton_backend, "_backward_kernel", Broken())
    monkeypatch.setattr(triton_backend, "_broken", False)
    w = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    p = lif_params(1.0 + torch.exp(-w), True, 1.0, 0.0, False, Sigmoid(4.0))
    x = torch.randn(5, 2, 9, dtype=torch.float64) + 1.0
    grads = []
    with pytest.warns(RuntimeWarning, match="triton backend failed"):
        for fn in (neuron_sequence, triton_backend._TritonSequence.apply):
            xi = x.clone().requires_grad_()
            if fn is neuron_sequence:
                s, v = fn(xi, p, None)
            else:
                v0 = torch.zeros(2, 9, dtype=torch.float64)
                s, v = fn(xi, v0, triton_backend._coefs(p, xi), p)
            grads.append((s.detach(), *torch.autograd.grad((s * x).sum() + v.sum(), (xi, w), retain_graph=True)))
    assert torch.equal(grads[0][0], grads[1][0])
    for a, b in zip(grads[0][1:], grads[1][1:], strict=True):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)
    assert triton_backend._broken
