"""The ``triton`` backend: hand-written Triton kernels for a whole neuron sequence (CUDA).

One program owns ``BLOCK`` neurons and walks all T steps with the membrane in registers:
the forward kernel reads ``x_t`` once and writes ``s_t`` and ``h_t``; the backward kernel walks
the steps in reverse with ``∂L/∂v`` in registers (the formulas of
:func:`spikeforge.neurons.fused.backward_loop`) and writes ``∂x_t``, plus per-program partial
sums for the coefficient gradients (PLIF's learnable τ).

Registered in :data:`~spikeforge.neurons.backends.BACKENDS` only when Triton imports and CUDA
is available. Surrogates other than the four built-in ones, and per-element coefficients, fall
back to the ``fused`` backend. The kernels also run on CPU tensors under Triton's interpreter
(``TRITON_INTERPRET=1``), which is how they are tested without a GPU.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import Any, cast

import torch
import triton
import triton.language as tl
from torch.autograd.function import once_differentiable

from .functional import NeuronParams
from .fused import fused_sequence
from .fused_eager import backward_eager, forward_eager
from .fused_spec import Spec
from .surrogate import Atan, Rectangle, Sigmoid, Triangle

BLOCK = 1024
SURROGATE_IDS = {Atan: 0, Sigmoid: 1, Rectangle: 2, Triangle: 3}


@triton.jit
def _surrogate(z, SURR: tl.constexpr, P, HALF_PI):
    if SURR == 0:  # atan, P = α
        u = HALF_PI * P * z
        d = (P / 2) / (1 + u * u)
    elif SURR == 1:  # sigmoid, P = α
        sg = 1 / (1 + tl.exp(-P * z))
        d = P * sg * (1 - sg)
    elif SURR == 2:  # rectangle, P = width
        d = tl.where(tl.abs(z) < P / 2, 1 / P, 0.0)
    else:  # triangle, P = width
        d = tl.maximum(P - tl.abs(z), 0.0) / (P * P)
    return d


@triton.jit
def _forward_kernel(x_ptr, v0_ptr, coef_ptr, const_ptr, s_ptr, h_ptr, vT_ptr, N, T,
                    HARD: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    a = tl.load(coef_ptr)
    b = tl.load(coef_ptr + 1)
    c = tl.load(coef_ptr + 2)
    THETA = tl.load(const_ptr)
    V_RESET = tl.load(const_ptr + 1)
    v = tl.load(v0_ptr + offs, mask=mask, other=0.0)
    for t in range(0, T):
        x = tl.load(x_ptr + t * N + offs, mask=mask, other=0.0)
        h = a * v + b * x + c
        fired = h >= THETA
        if HARD:
            v = tl.where(fired, V_RESET, h)
        else:
            v = tl.where(fired, h - THETA, h)
        tl.store(s_ptr + t * N + offs, tl.where(fired, 1.0, 0.0), mask=mask)
        tl.store(h_ptr + t * N + offs, h, mask=mask)
    tl.store(vT_ptr + offs, v, mask=mask)


@triton.jit
def _backward_kernel(gs_ptr, gvT_ptr, h_ptr, x_ptr, v0_ptr, coef_ptr, const_ptr, gx_ptr, gv0_ptr,
                     part_ptr, N, T, HARD: tl.constexpr, DETACH: tl.constexpr,
                     SURR: tl.constexpr, NEED_COEF: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    a = tl.load(coef_ptr)
    b = tl.load(coef_ptr + 1)
    THETA = tl.load(const_ptr)
    V_RESET = tl.load(const_ptr + 1)
    SP = tl.load(const_ptr + 2)
    HALF_PI = tl.load(const_ptr + 3)
    g = tl.load(gvT_ptr + offs, mask=mask, other=0.0)
    acc_a = tl.zeros([BLOCK], dtype=g.dtype)
    acc_b = tl.zeros([BLOCK], dtype=g.dtype)
    acc_c = tl.zeros([BLOCK], dtype=g.dtype)
    for i in range(0, T):
        t = T - 1 - i
        h = tl.load(h_ptr + t * N + offs, mask=mask, other=0.0)
        gs = tl.load(gs_ptr + t * N + offs, mask=mask, other=0.0)
        z = h - THETA
        sg = _surrogate(z, SURR, SP, HALF_PI)
        if HARD:
            keep = tl.where(z < 0, 1.0, 0.0)
            if DETACH:
                gh = g * keep + sg * gs
            else:
                gh = g * keep + sg * (gs + g * (V_RESET - h))
        else:
            if DETACH:
                gh = g + sg * gs
            else:
                gh = g + sg * (gs - THETA * g)
        tl.store(gx_ptr + t * N + offs, gh * b, mask=mask)
        if NEED_COEF:
            hp = tl.load(h_ptr + tl.maximum(t - 1, 0) * N + offs, mask=mask, other=0.0)  # t = 0: unused
            if HARD:
                vp = tl.where(hp >= THETA, V_RESET, hp)
            else:
                vp = tl.where(hp >= THETA, hp - THETA, hp)
            v0 = tl.load(v0_ptr + offs, mask=mask, other=0.0)
            vp = tl.where(t > 0, vp, v0)
            xt = tl.load(x_ptr + t * N + offs, mask=mask, other=0.0)
            acc_a += gh * vp
            acc_b += gh * xt
            acc_c += gh
        g = gh * a
    tl.store(gv0_ptr + offs, g, mask=mask)
    if NEED_COEF:
        n_prog = tl.num_programs(0)
        tl.store(part_ptr + pid, tl.sum(tl.where(mask, acc_a, 0.0), axis=0))
        tl.store(part_ptr + n_prog + pid, tl.sum(tl.where(mask, acc_b, 0.0), axis=0))
        tl.store(part_ptr + 2 * n_prog + pid, tl.sum(tl.where(mask, acc_c, 0.0), axis=0))


def _coefs(p: NeuronParams, like: torch.Tensor) -> torch.Tensor:
    """``[a, b, c]`` as one small tensor on the input's device (tensors keep their graph)."""
    vals = [k.reshape(()) if isinstance(k, torch.Tensor) else torch.tensor(float(k), dtype=like.dtype)
            for k in (p.decay, p.input_gain, p.bias)]
    return torch.stack([v.to(device=like.device, dtype=like.dtype) for v in vals])


def _constants(p: NeuronParams, like: torch.Tensor) -> torch.Tensor:
    """``[θ, v_reset, surrogate parameter, π/2]`` in the input dtype (float scalar kernel arguments
    would be float32, which would round them for float64 inputs)."""
    sur = p.surrogate
    param = sur.alpha if isinstance(sur, Atan | Sigmoid) else sur.width  # type: ignore[attr-defined]
    vals = [float(p.threshold), float(p.v_reset or 0.0), float(param), math.pi / 2]
    return torch.tensor(vals, dtype=like.dtype, device=like.device)


_broken = False


def _disable(err: Exception) -> None:
    """After a kernel build/launch failure: warn once and route later calls to ``fused``."""
    global _broken
    if not _broken:
        warnings.warn(f"spikeforge triton backend failed ({type(err).__name__}: {err}); "
                      "using the fused backend instead", RuntimeWarning, stacklevel=4)
    _broken = True


def _on_device(t: torch.Tensor) -> contextlib.AbstractContextManager[object]:
    return torch.cuda.device(t.device) if t.device.type == "cuda" else contextlib.nullcontext()


def _spec(p: NeuronParams) -> Spec:
    return Spec(float(p.threshold), None if p.v_reset is None else float(p.v_reset), p.detach_reset,
                p.surrogate)


class _TritonSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x_seq: torch.Tensor, v0: torch.Tensor, coefs: torch.Tensor,
                p: NeuronParams) -> tuple[torch.Tensor, torch.Tensor]:
        steps, n = x_seq.shape[0], x_seq[0].numel()
        spikes, hs, v_T = torch.empty_like(x_seq), torch.empty_like(x_seq), torch.empty_like(v0)
        hard = p.v_reset is not None
        grid = (triton.cdiv(n, BLOCK),)
        try:
            with _on_device(x_seq):
                _forward_kernel[grid](x_seq, v0, coefs, _constants(p, x_seq), spikes, hs, v_T, n, steps,
                                      HARD=hard, BLOCK=BLOCK)
        except Exception as err:  # noqa: BLE001 - a kernel that fails to build must not stop training
            _disable(err)
            spikes, hs, v_T = forward_eager(x_seq, v0, coefs[0], coefs[1], coefs[2], _spec(p))
        ctx.p = p
        ctx.save_for_backward(x_seq if coefs.requires_grad else None, v0, coefs, hs)
        return spikes, v_T

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_s: torch.Tensor | None, grad_vT: torch.Tensor | None,
                 ) -> tuple[torch.Tensor | None, ...]:
        x_seq, v0, coefs, hs = ctx.saved_tensors
        p: NeuronParams = ctx.p
        steps, n = hs.shape[0], hs[0].numel()
        grad_s = torch.zeros_like(hs) if grad_s is None else grad_s.contiguous()
        grad_vT = torch.zeros_like(v0) if grad_vT is None else grad_vT.contiguous()
        need_coef = bool(ctx.needs_input_grad[2])
        grid = (triton.cdiv(n, BLOCK),)
        grad_x, grad_v0 = torch.empty_like(hs), torch.empty_like(v0)
        parts = torch.zeros(3, grid[0], device=hs.device, dtype=hs.dtype)
        x_arg = hs if x_seq is None else x_seq  # x is read only for the coefficient gradients
        try:
            with _on_device(hs):
                _backward_kernel[grid](grad_s, grad_vT, hs, x_arg, v0, coefs, _constants(p, hs), grad_x,
                                       grad_v0, parts, n, steps, HARD=p.v_reset is not None,
                                       DETACH=p.detach_reset, SURR=SURROGATE_IDS[type(p.surrogate)],
                                       NEED_COEF=need_coef, BLOCK=BLOCK)
        except Exception as err:  # noqa: BLE001 - same state, so the eager BPTT can take over
            _disable(err)
            grad_x, grad_v0, ga, gb, gc = backward_eager(grad_s, grad_vT, x_seq, hs, v0, coefs[0], coefs[1],
                                                         _spec(p), need_coef, need_coef, need_coef)
            grad_coefs = torch.stack([ga, gb, gc]) if need_coef else None  # type: ignore[list-item]
            return grad_x, grad_v0, grad_coefs, None
        grad_coefs = parts.sum(dim=1) if need_coef else None
        return grad_x, grad_v0, grad_coefs, None


def _supported(p: NeuronParams) -> bool:
    scalar = all(not isinstance(k, torch.Tensor) or k.numel() == 1 for k in (p.decay, p.input_gain, p.bias))
    return scalar and type(p.surrogate) in SURROGATE_IDS and math.isfinite(float(p.threshold))


def triton_sequence(x_seq: torch.Tensor, p: NeuronParams,
                    v0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Backend ``triton``: same contract and numerics as ``neuron_sequence`` (up to FMA rounding)."""
    if _broken or x_seq.dim() < 1 or x_seq.shape[0] == 0 or not _supported(p) or x_seq.dtype not in (
            torch.float32, torch.float64):
        return fused_sequence(x_seq, p, v0)
    x_seq = x_seq.contiguous()
    v0 = torch.full_like(x_seq[0], p.v_init) if v0 is None else v0.to(x_seq.dtype).expand_as(x_seq[0])
    return cast(tuple[torch.Tensor, torch.Tensor],
                _TritonSequence.apply(x_seq, v0.contiguous(), _coefs(p, x_seq), p))  # type: ignore[no-untyped-call]
