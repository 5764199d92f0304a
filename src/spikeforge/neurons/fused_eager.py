"""In-place eager loops for the ``fused`` backend (used when the loops are not compiled).

They compute the same quantities as :func:`spikeforge.neurons.fused.forward_loop` and
:func:`~spikeforge.neurons.fused.backward_loop`, but write into preallocated ``[T, ...]``
buffers with few kernels per step and no ``torch.stack`` copies. Working one step at a time
keeps each step's tensors in cache, which on CPU beats whole-sequence elementwise ops.

Rounding of the forward pass is the reference's: ``a·v`` and ``b·x`` are rounded before the
sum, and the soft reset ``h − θ·s`` with ``s ∈ {0, 1}`` is exact whether or not the kernel
fuses the multiply-add. The membrane buffers are in ``state_dtype(x.dtype)`` (float32 for
bf16/fp16 inputs, whose values convert exactly), the spikes in the input dtype.
"""

from __future__ import annotations

import torch

from .functional import state_dtype
from .fused_spec import Coef, Spec, is_one


def forward_eager(x_seq: torch.Tensor, v0: torch.Tensor, a: Coef, b: Coef, c: Coef,
                  spec: Spec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run all T steps; returns ``(spikes [T, ...], h [T, ...], v_T)``."""
    dtype = state_dtype(x_seq.dtype)
    hs = torch.empty_like(x_seq, dtype=dtype)
    spikes = torch.empty_like(x_seq)
    scaled = None if is_one(b) else torch.empty_like(x_seq[0], dtype=dtype)
    has_bias = isinstance(c, torch.Tensor) or c != 0.0
    v = v0.to(dtype)
    for t in range(x_seq.shape[0]):
        h, s, x_t = hs[t], spikes[t], x_seq[t]
        if scaled is not None:  # b·x rounded in the state dtype (x converts exactly)
            x_t = torch.mul(x_t, b, out=scaled) if x_t.dtype == dtype else scaled.copy_(x_t).mul_(b)
        if is_one(a):
            torch.add(v, x_t, out=h)
        else:
            torch.mul(v, a, out=h)
            h.add_(x_t)
        if has_bias:
            h.add_(c)
        torch.ge(h, spec.threshold, out=s)  # straight to float: bool tensors are slow on CPU
        v = post_reset(h, s, spec)
    return spikes, hs, v


def post_reset(h: torch.Tensor, s: torch.Tensor, spec: Spec) -> torch.Tensor:
    """``v`` from ``h`` and the 0/1 float spikes ``s`` with float arithmetic only; equal in value
    to the reference's ``h − θ s`` and ``h (1 − s) + v_r s`` (every product with s is exact)."""
    if spec.v_reset is None:
        return torch.sub(h, s, alpha=spec.threshold)
    if spec.v_reset == 0.0:
        return torch.addcmul(h, h, s, value=-1.0)  # h − h·s: exactly 0 where s = 1
    return torch.mul(h, torch.rsub(s, 1.0)).add_(s, alpha=spec.v_reset)


def backward_eager(grad_s: torch.Tensor, grad_vT: torch.Tensor | None, x_seq: torch.Tensor | None,
                   hs: torch.Tensor, v0: torch.Tensor | None, a: Coef, b: Coef, spec: Spec,
                   need_a: bool, need_b: bool, need_c: bool,
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None,
                              torch.Tensor | None]:
    """BPTT with the formulas of :func:`spikeforge.neurons.fused.backward_loop`, in place."""
    theta, v_r = spec.threshold, spec.v_reset
    grad_x = torch.empty_like(hs)
    z = torch.empty_like(hs[0])
    keep = torch.empty_like(hs[0])
    g = grad_vT
    acc_a = acc_b = acc_c = None
    for t in range(hs.shape[0] - 1, -1, -1):
        h = hs[t]
        sg = spec.surrogate.derivative(torch.sub(h, theta, out=z))
        gh = torch.mul(sg, grad_s[t], out=grad_x[t])
        if g is not None:
            if v_r is None:
                if spec.detach_reset:
                    gh.add_(g)
                else:
                    gh.addcmul_(sg.mul(-theta).add_(1.0), g)
            else:
                torch.lt(z, 0, out=keep)  # 1 − s, as a float
                if not spec.detach_reset:  # Q = (1 − s) + σ' (v_r − h), in place in keep
                    if v_r == 0.0:
                        keep.addcmul_(sg, h, value=-1.0)
                    else:
                        keep.addcmul_(sg, torch.rsub(h, v_r))
                gh.addcmul_(keep, g)
        if need_a and v0 is not None:
            if t == 0:
                v_prev = v0
            else:
                h_prev = hs[t - 1]
                v_prev = post_reset(h_prev, torch.ge(h_prev, theta, out=z), spec)
            acc_a = gh * v_prev if acc_a is None else acc_a.addcmul_(gh, v_prev)
        if need_b and x_seq is not None:
            acc_b = gh * x_seq[t] if acc_b is None else acc_b.addcmul_(gh, x_seq[t])
        if need_c:
            acc_c = gh.clone() if acc_c is None else acc_c.add_(gh)
        if not is_one(a):
            g = gh * a
        else:  # g must not alias ∂x: it is scaled by b below, and ∂v0 is returned next to ∂x
            g = gh.clone() if t == 0 or not is_one(b) else gh
        if not is_one(b):
            gh.mul_(b)
    assert g is not None  # at least one step
    return (grad_x, g,
            None if acc_a is None else acc_a.sum(),
            None if acc_b is None else acc_b.sum(),
            None if acc_c is None else acc_c.sum())
