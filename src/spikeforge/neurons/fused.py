"""The ``fused`` backend: one autograd node for a whole ``[T, ...]`` neuron sequence.

Autograd through :func:`~spikeforge.neurons.functional.neuron_sequence` records ~8 nodes and
keeps ~6 tensors per time step. Here the forward pass runs the T steps in one go and keeps
only the pre-reset membrane ``h_t`` (one tensor per step, in the state dtype); spikes,
post-reset membranes and surrogate derivatives are recomputed from it in backward, with the
same elementwise operations, so they match the forward pass bit for bit.

Backward is hand-written BPTT. With ``z_t = h_t − θ``, σ' the surrogate derivative,
``g_s`` the incoming spike gradient and ``g_v`` the gradient reaching ``v_t`` from the future:

    soft reset   ∂L/∂h_t = g_v + σ'(z_t) · (g_s − θ g_v)        (detach: g_v + σ' g_s)
    hard reset   ∂L/∂h_t = g_v (1 − s_t) + σ'(z_t) · (g_s + g_v (v_r − h_t))
                                                                (detach: drop the g_v term in σ')
    then         ∂L/∂x_t = b ∂L/∂h_t,  g_v ← a ∂L/∂h_t,  ∂L/∂a += Σ ∂L/∂h_t · v_{t−1},
                 ∂L/∂b += Σ ∂L/∂h_t · x_t,  ∂L/∂c += Σ ∂L/∂h_t

which is exactly the chain rule autograd applies to the reference graph. Coefficients may be
Python floats or one-element tensors (PLIF's learnable τ) that receive gradients; tensors with
more than one element (e.g. per-channel decay) fall back to the reference loop.

Two implementations of the loops compute the same thing:

- :mod:`~spikeforge.neurons.fused_eager`: in-place eager loops, ~4 kernels per forward step —
  what this backend (``fused``) runs;
- :func:`forward_loop` / :func:`backward_loop` here: functional loops that ``torch.compile``
  (inductor) turns into one fused kernel each for the whole sequence — what the ``compiled``
  backend (:mod:`~spikeforge.neurons.compiled`) runs. Inside an outer ``torch.compile(model)``
  both backends trace the functional loops into the model's graph.

Nothing switches between them behind the user's back: the backend name chooses. Both run on
the flat ``[T, N]`` view of the input (everything but time is elementwise), in channels-last
order for channels-last steps, and read a time-invariant input (one step expanded over T) without
copying it T times.

Precision: for bf16/fp16 inputs the membrane ``h`` is computed and saved in float32 and the
gradients are computed in float32 (autograd casts ``∂x`` back to the input dtype); spikes are
returned in the input dtype, where 0 and 1 are exact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from .functional import NeuronParams, Scalar, neuron_sequence, state_dtype
from .fused_eager import backward_eager, forward_eager
from .fused_spec import Coef, Spec, is_one

# ----------------------------------------------------------------------------------------------
# loops (pure functions of tensors; eager or compiled)


def _charge(x: torch.Tensor, v: torch.Tensor, a: Coef, b: Coef, c: Coef) -> torch.Tensor:
    """``a·v + b·x (+ c)``, rounded like the reference (products rounded before the sum)."""
    h = (v if is_one(a) else a * v) + (x if is_one(b) else b * x)
    if isinstance(c, torch.Tensor) or c != 0.0:
        h = h + c
    return h


def _reset(h: torch.Tensor, fired: torch.Tensor, spec: Spec) -> torch.Tensor:
    """Post-reset membrane; equal in value to the reference's ``h − θ s`` / ``h (1 − s) + v_r s``."""
    if spec.v_reset is None:
        return torch.where(fired, h - spec.threshold, h)
    return torch.where(fired, spec.v_reset, h)


def forward_loop(x_seq: torch.Tensor, v0: torch.Tensor, a: Coef, b: Coef, c: Coef,
                 spec: Spec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run all T steps; returns ``(spikes [T, ...], h [T, ...], v_T)``.

    ``h ≥ θ`` is the reference's ``h − θ ≥ 0`` (equivalent in IEEE arithmetic with subnormals).
    """
    v = v0.to(state_dtype(x_seq.dtype))
    spikes, hs = [], []
    for t in range(x_seq.shape[0]):
        h = _charge(x_seq[t].to(v.dtype), v, a, b, c)
        fired = h >= spec.threshold
        v = _reset(h, fired, spec)
        spikes.append(fired.to(x_seq.dtype))
        hs.append(h)
    return torch.stack(spikes), torch.stack(hs), v


def backward_loop(grad_s: torch.Tensor, grad_vT: torch.Tensor | None, x_seq: torch.Tensor | None,
                  hs: torch.Tensor, v0: torch.Tensor | None, a: Coef, b: Coef, spec: Spec,
                  need_a: bool, need_b: bool, need_c: bool,
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None,
                             torch.Tensor | None]:
    """BPTT over the stored ``h``; returns ``(∂x, ∂v0, ∂a, ∂b, ∂c)`` (coefficient grads summed).

    With ``g = ∂L/∂v_t`` (from the future) each step is ``∂L/∂h_t = σ'(z) g_s + Q_t g`` where

        soft  Q = 1 − θ σ'(z)              (detach: 1)
        hard  Q = (1 − s) + σ'(z) (v_r − h)  (detach: 1 − s)

    then ``∂L/∂x_t = b ∂L/∂h_t`` and ``g ← a ∂L/∂h_t``.
    """
    theta, v_r = spec.threshold, spec.v_reset
    g = grad_vT
    grads_x: list[torch.Tensor] = []
    acc_a = acc_b = acc_c = None
    for t in range(hs.shape[0] - 1, -1, -1):
        h = hs[t]
        z = h - theta
        sg = spec.surrogate.derivative(z)
        gs = grad_s[t].to(h.dtype)
        if g is None:
            gh = sg * gs
        elif v_r is None:
            gh = g + sg * (gs if spec.detach_reset else gs - theta * g)
        else:
            keep = (z < 0).to(h.dtype)  # 1 − s
            gh = g * keep + sg * (gs if spec.detach_reset else gs + g * (v_r - h))
        grads_x.append(gh if is_one(b) else gh * b)
        if need_a and v0 is not None:  # v0 is saved exactly when ∂a is needed
            v_prev = v0 if t == 0 else _reset(hs[t - 1], hs[t - 1] >= theta, spec)
            acc_a = gh * v_prev if acc_a is None else acc_a + gh * v_prev
        if need_b and x_seq is not None:
            x_t = x_seq[t].to(gh.dtype)
            acc_b = gh * x_t if acc_b is None else acc_b + gh * x_t
        if need_c:
            acc_c = gh if acc_c is None else acc_c + gh
        g = gh if is_one(a) else gh * a
    grads_x.reverse()
    assert g is not None  # at least one step
    return (torch.stack(grads_x), g,
            None if acc_a is None else acc_a.sum(),
            None if acc_b is None else acc_b.sum(),
            None if acc_c is None else acc_c.sum())


# ----------------------------------------------------------------------------------------------
# which implementation of the loops runs


class Loops:
    """The eager loops: what backend ``fused`` runs. Subclasses (``compiled``) swap in other
    implementations of the same two functions."""

    name = "fused"

    def forward(self, key: tuple[object, ...], *args: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``args`` of :func:`forward_loop`; ``key`` names the call's signature (unused here)."""
        if torch.compiler.is_compiling():
            return forward_loop(*args)  # inside an outer torch.compile: trace the functional loop into it
        return forward_eager(*args)

    def backward(self, key: tuple[object, ...], *args: Any) -> tuple[torch.Tensor | None, ...]:
        """``args`` of :func:`backward_loop`."""
        if torch.compiler.is_compiling():
            return backward_loop(*args)
        return backward_eager(*args)


EAGER = Loops()


# ----------------------------------------------------------------------------------------------
# autograd function and backend entry point


def _as_coef(value: Scalar, like: torch.Tensor) -> Coef:
    """Python floats stay floats (baked into the loops); tensors become 0-d in the state dtype."""
    if isinstance(value, torch.Tensor):
        return value.reshape(()).to(device=like.device, dtype=state_dtype(like.dtype))
    return float(value)


def _signature(x: torch.Tensor, spec: Spec, *flags: object) -> tuple[object, ...]:
    """What a compiled loop specialises on: everything but the number of neurons (the loops see a
    flat ``[T, N]`` sequence, so one compiled kernel serves every layer of a model)."""
    return (spec, x.shape[0], x.dtype, x.device.type, *flags)


class _FusedSequence(torch.autograd.Function):
    """``(x_seq, v0, a, b, c, spec, loops) -> (spikes, v_T)``; saves ``h`` (and ``x`` only if ∂b
    is needed)."""

    @staticmethod
    def forward(ctx: Any, x_seq: torch.Tensor, v0: torch.Tensor, a: Scalar, b: Scalar,
                c: Scalar, spec: Spec, loops: Loops) -> tuple[torch.Tensor, torch.Tensor]:
        ca, cb, cc = (_as_coef(k, x_seq) for k in (a, b, c))
        key = _signature(x_seq, spec, *(isinstance(k, torch.Tensor) for k in (ca, cb, cc)))
        spikes, hs, v_T = loops.forward(key, x_seq, v0, ca, cb, cc, spec)
        ctx.spec = spec
        ctx.loops = loops
        ctx.coefs = (a, b, c)
        need_a, need_b = (isinstance(k, torch.Tensor) and k.requires_grad for k in (a, b))
        ctx.save_for_backward(x_seq if need_b else None, hs, v0 if need_a else None)
        return spikes, v_T

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_s: torch.Tensor | None, grad_vT: torch.Tensor | None,
                 ) -> tuple[torch.Tensor | None, ...]:
        x_seq, hs, v0 = ctx.saved_tensors
        a, b, c = ctx.coefs
        need_x, need_v0, need_a, need_b, need_c = ctx.needs_input_grad[:5]
        grad_s = torch.zeros_like(hs) if grad_s is None else grad_s
        ca, cb = _as_coef(a, hs), _as_coef(b, hs)
        key = _signature(hs, ctx.spec, grad_vT is None, isinstance(ca, torch.Tensor),
                         isinstance(cb, torch.Tensor), need_a, need_b, need_c)
        gx, gv0, ga, gb, gc = ctx.loops.backward(key, grad_s, grad_vT, x_seq, hs, v0, ca, cb, ctx.spec,
                                                 need_a, need_b, need_c)

        def coef_grad(g: torch.Tensor | None, coef: Scalar) -> torch.Tensor | None:
            if g is None or not isinstance(coef, torch.Tensor):
                return None
            return g.to(coef.dtype).reshape(coef.shape)

        return (gx if need_x else None, gv0 if need_v0 else None, coef_grad(ga, a), coef_grad(gb, b),
                coef_grad(gc, c), None, None)


_apply_fused: Callable[..., tuple[torch.Tensor, torch.Tensor]] = _FusedSequence.apply  # typed entry point

CHANNELS_LAST_VIEW = (0, 1, 3, 4, 2)  # [T, B, C, H, W] -> [T, B, H, W, C]
CHANNELS_FIRST_VIEW = (0, 1, 4, 2, 3)


def channels_last_steps(x: torch.Tensor) -> bool:
    """True when ``x [T, B, C, H, W]`` is T channels-last image batches stacked along T (what a
    channels-last model's time-distributed conv produces): a permuted view of it is contiguous."""
    return x.dim() == 5 and x.permute(*CHANNELS_LAST_VIEW).is_contiguous()


def _prefers_channels_last(x: torch.Tensor) -> bool:
    """Channels-last steps, or a non-contiguous ``[T, B, C, H, W]`` whose steps are channels-last
    (e.g. one channels-last step expanded over T): run, and return, in channels-last layout."""
    if x.dim() != 5 or x.is_contiguous():
        return False
    return channels_last_steps(x) or x[0].is_contiguous(memory_format=torch.channels_last)


def _time_invariant(x: torch.Tensor) -> bool:
    """One step expanded over T (stride 0 along T) whose step is stored densely."""
    return x.dim() > 1 and x.shape[0] > 1 and x.stride(0) == 0 and x[0].is_contiguous()


def _scalar_like(value: Scalar) -> bool:
    return not isinstance(value, torch.Tensor) or value.numel() == 1


def run_sequence(x_seq: torch.Tensor, p: NeuronParams, v0: torch.Tensor | None,
                 loops: Loops) -> tuple[torch.Tensor, torch.Tensor]:
    """One autograd node for the sequence, its loops run by ``loops``; same contract and numerics
    as ``neuron_sequence``. Falls back to the reference for coefficient tensors with more than
    one element."""
    if x_seq.dim() < 1 or x_seq.shape[0] == 0 or not all(
            _scalar_like(k) for k in (p.decay, p.input_gain, p.bias)):
        return neuron_sequence(x_seq, p, v0)
    dtype = state_dtype(x_seq.dtype)
    v0 = (torch.full_like(x_seq[0], p.v_init, dtype=dtype) if v0 is None
          else v0.to(dtype).expand_as(x_seq[0]))
    spec = Spec(float(p.threshold), None if p.v_reset is None else float(p.v_reset), p.detach_reset,
                p.surrogate)
    if not _prefers_channels_last(x_seq):
        return _flat_apply(x_seq if _time_invariant(x_seq) else x_seq.contiguous(), v0, p, spec, loops)
    # elementwise in time: run on the contiguous [T, B, H, W, C] view, hand back channels-last views
    nhwc = x_seq.permute(*CHANNELS_LAST_VIEW)
    spikes, v_T = _flat_apply(nhwc if _time_invariant(nhwc) else nhwc.contiguous(), v0.permute(0, 2, 3, 1), p,
                              spec, loops)
    return spikes.permute(*CHANNELS_FIRST_VIEW), v_T.permute(0, 3, 1, 2)


def _flat_apply(x_seq: torch.Tensor, v0: torch.Tensor, p: NeuronParams, spec: Spec,
                loops: Loops) -> tuple[torch.Tensor, torch.Tensor]:
    """The loops are elementwise in everything but time: run them on the ``[T, N]`` view of the
    contiguous ``x_seq`` and hand back tensors of the original shape."""
    steps, shape = x_seq.shape[0], x_seq.shape
    if _time_invariant(x_seq):  # the loops read the one step T times: no [T, N] copy of the input
        flat = x_seq[0].reshape(-1).expand(steps, -1)
    else:
        flat = x_seq.reshape(steps, -1)
    spikes, v_T = _apply_fused(flat, v0.reshape(-1), p.decay, p.input_gain, p.bias, spec, loops)
    return spikes.view(shape), v_T.view(shape[1:])


def fused_sequence(x_seq: torch.Tensor, p: NeuronParams,
                   v0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Backend ``fused``: the eager in-place loops (never compiles)."""
    return run_sequence(x_seq, p, v0, EAGER)
