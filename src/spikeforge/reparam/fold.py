"""Folding linear, non-spiking operations into the adjacent synaptic layer (all in float64).

Batch norm after a synaptic layer (eval mode, running statistics), per output channel ``o``:

    BN(W∗x + b) = g_o·(W∗x + b − μ_o) + β_o,   g_o = γ_o / √(σ²_o + ε)
                = (g_o·W_o)∗x + (g_o·(b_o − μ_o) + β_o)

Average pooling with kernel = stride = k in front of a conv (stride s, padding p, kernel K):

    conv(avgpool_k(x))  =  conv'(crop(x)),   W'[u] = Σ_{i·k + a = u} W[i] / k²   (per axis, a < k)

with kernel ``(K − 1)·k + k``, stride ``s·k``, padding ``p·k``; ``crop`` cuts ``x`` to the
``⌊H/k⌋·k`` rows/columns the pooling reads, so the conv's zero padding of the pooled map is
exactly the zero padding of ``x`` (each padded pooled cell covers ``k`` padded input cells).
``W'`` is computed as a transposed convolution of ``W`` by the ``k×k`` box of ``1/k²``.

Average pooling (kernel = stride) and flatten in front of a linear layer: the pooling acts on each
channel's ``H×W`` plane by a matrix ``P`` (``[H·W, H'·W']``, obtained by pooling the identity
basis), so ``W·flatten(pool(x)) = W'·flatten(x)`` with ``W'[o, c, :] = W[o, c, :]·Pᵀ``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import layers as L

F64 = torch.float64


def bn_affine(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode batch norm as ``y = g·x + h`` per channel: returns ``(g, h)`` in float64.

    A developed run's channel gate (``channel_mask``, 1 alive / 0 pruned) multiplies both, as the
    gated layer's forward does (``y = BN(x)·gate``).
    """
    if not isinstance(bn, nn.modules.batchnorm._BatchNorm):
        raise TypeError(f"expected a batch norm layer, got {type(bn).__name__}")
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("batch norm without running statistics cannot be folded (track_running_stats=False)")
    mean, var = bn.running_mean.detach().to(F64), bn.running_var.detach().to(F64)
    g = 1.0 / torch.sqrt(var + bn.eps)
    h = -mean * g
    if bn.weight is not None:
        gamma = bn.weight.detach().to(F64)
        g, h = g * gamma, h * gamma
    if bn.bias is not None:
        h = h + bn.bias.detach().to(F64)
    gate = getattr(bn, "channel_mask", None)
    if isinstance(gate, torch.Tensor):
        g, h = g * gate.to(F64), h * gate.to(F64)
    return g, h


def bn_mean_abs(bn: nn.Module) -> torch.Tensor:
    """``|μ|`` of a batch norm (a magnitude the verifier's error bound needs)."""
    mean = bn.running_mean
    if not isinstance(mean, torch.Tensor):
        raise ValueError("batch norm without running statistics cannot be folded (track_running_stats=False)")
    return mean.detach().to(F64).abs()


def fold_bn(weight: torch.Tensor, bias: torch.Tensor | None,
            bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W', b')`` with ``BN(W∗x + b) = W'∗x + b'`` (float64)."""
    g, h = bn_affine(bn)
    w = weight.to(F64) * g.reshape([-1] + [1] * (weight.dim() - 1))
    b = h if bias is None else bias.to(F64) * g + h
    return w, b


def pool_kernel(pool: nn.Module, size: tuple[int, int]) -> tuple[int, int]:
    """Kernel ``(kh, kw)`` of an average pool whose kernel equals its stride (else ``ValueError``)."""
    h, w = size
    if isinstance(pool, nn.AdaptiveAvgPool2d):
        out = pool.output_size if isinstance(pool.output_size, tuple) else (pool.output_size,) * 2
        oh, ow = (h if out[0] is None else out[0]), (w if out[1] is None else out[1])
        if h % oh or w % ow:
            raise ValueError(f"adaptive average pool {h}x{w} -> {oh}x{ow} is not a uniform pooling")
        return h // oh, w // ow
    if isinstance(pool, nn.AvgPool2d):
        k = pool.kernel_size if isinstance(pool.kernel_size, tuple) else (pool.kernel_size,) * 2
        s = pool.stride if isinstance(pool.stride, tuple) else (pool.stride,) * 2
        p = pool.padding if isinstance(pool.padding, tuple) else (pool.padding,) * 2
        if tuple(k) != tuple(s) or any(p) or pool.ceil_mode or pool.divisor_override:
            raise ValueError(f"only average pools with kernel = stride, no padding, no ceil_mode and no "
                             f"divisor_override fold into a following layer, got {pool}")
        return int(k[0]), int(k[1])
    raise TypeError(f"expected an average pool, got {type(pool).__name__}")


def fold_avgpool_into_conv(weight: torch.Tensor, kernel: tuple[int, int], stride: list[int], padding: list[int],
                           dilation: list[int], size: tuple[int, int]) -> tuple[torch.Tensor, dict[str, list[int]]]:
    """Weight and geometry (stride, padding, dilation, crop) of ``conv ∘ avgpool_kernel`` on input ``size``."""
    kh, kw = kernel
    if tuple(dilation) != (1, 1):
        raise ValueError("folding a pool needs a conv with dilation 1")
    o, c, k1, k2 = weight.shape
    box = torch.full((1, 1, kh, kw), 1.0 / (kh * kw), dtype=F64, device=weight.device)
    w = F.conv_transpose2d(weight.to(F64).reshape(o * c, 1, k1, k2), box, stride=(kh, kw))
    w = w.reshape(o, c, w.shape[-2], w.shape[-1])
    geom = {"stride": [stride[0] * kh, stride[1] * kw], "padding": [padding[0] * kh, padding[1] * kw],
            "dilation": [1, 1], "crop": [(size[0] // kh) * kh, (size[1] // kw) * kw]}
    return w, geom


def spatial_matrix(kernels: list[tuple[int, int]], size: tuple[int, int]) -> torch.Tensor:
    """``P [H·W, m]``: the per-channel linear map of average pools (kernel = stride), then flattened."""
    h, w = size
    x = torch.eye(h * w, dtype=F64).reshape(h * w, 1, h, w)
    for k in kernels:
        x = F.avg_pool2d(x, k, k)
    return x.reshape(h * w, -1)


def fold_pools_into_linear(weight: torch.Tensor, kernels: list[tuple[int, int]],
                           shape: tuple[int, ...]) -> torch.Tensor:
    """``W' [O, C·H·W]`` with ``W·flatten(pools(x)) = W'·flatten(x)`` for per-sample ``x`` of ``shape``."""
    w = weight.to(F64)
    if len(shape) != 3:  # already a vector: nothing spatial to fold
        if kernels:
            raise ValueError(f"cannot fold pooling of a {len(shape)}-d per-sample tensor into a linear layer")
        return w
    c, h, ww = shape
    p = spatial_matrix(kernels, (h, ww)).to(w.device)  # [HW, m]
    m = p.shape[1]
    if w.shape[1] != c * m:
        raise ValueError(f"linear layer expects {w.shape[1]} inputs, the folded input has {c}·{m}")
    return torch.einsum("ocm,pm->ocp", w.reshape(w.shape[0], c, m), p).reshape(w.shape[0], c * h * ww)


def is_flatten(op: nn.Module) -> bool:
    """spikeforge's time-distributed flatten (``torch.nn.Flatten`` would also fold the time axis)."""
    return isinstance(op, L.Flatten)
