"""Integer tensors as binary planes computed by rounding and bit extraction (format-1 graphs).

Format-2 graphs build planes from threshold units (:mod:`.units`), whose bit-plane digits may differ
from ``2^k`` when ``L`` is not ``2^P − 1``; this module remains for executing format-1 graphs and for
:func:`expand_input_weight`, which both formats use.

For an integer tensor ``n ∈ {0..M}`` (a SpikingReLU level ``q``, a sum of spikes, 8-bit pixels):

    bitplane:  n = Σ_{k<P} 2^k · b_k,   b_k = ⌊n / 2^k⌋ mod 2,   P = ⌈log2(M + 1)⌉
    unary:     n = Σ_{k<M} b_k,          b_k = [n > k]

so a synaptic layer ``W`` applied to ``u·n`` (quantum ``u``, e.g. the step ``s``) is

    W·(u·n) = Σ_k (u · c_k · W) · b_k,     c_k = 2^k (bitplane) or 1 (unary)

— one binary input per plane, with the factor ``u·c_k`` folded into that plane's weights.
Planes are concatenated on the channel axis (dim 2 of ``[T, B, C, ...]``): plane ``k`` holds
channels ``k·C .. (k+1)·C − 1``; the folded weight concatenates ``u·c_k·W`` on its input axis.
"""

from __future__ import annotations

import torch

CODINGS = ("bitplane", "unary")


def plane_count(max_level: int, coding: str) -> int:
    """Number of planes needed for integers in ``0..max_level``."""
    if max_level < 1:
        raise ValueError(f"max_level must be >= 1, got {max_level}")
    if coding == "bitplane":
        return int(max_level).bit_length()
    if coding == "unary":
        return int(max_level)
    raise ValueError(f"plane coding must be one of {CODINGS}, got {coding!r}")


def plane_factors(max_level: int, coding: str) -> list[float]:
    """``c_k`` for each plane: ``2^k`` (bitplane) or ``1`` (unary)."""
    p = plane_count(max_level, coding)
    return [float(2**k) if coding == "bitplane" else 1.0 for k in range(p)]


def to_planes(n: torch.Tensor, max_level: int, coding: str) -> torch.Tensor:
    """``[T, B, C, ...]`` integers (any float/int dtype) → binary planes ``[T, B, P·C, ...]``."""
    ni = n.to(torch.int64)
    if coding == "bitplane":
        planes = [((ni >> k) & 1) for k in range(plane_count(max_level, coding))]
    elif coding == "unary":
        planes = [(ni > k).to(torch.int64) for k in range(plane_count(max_level, coding))]
    else:
        raise ValueError(f"plane coding must be one of {CODINGS}, got {coding!r}")
    return torch.cat(planes, dim=2).to(n.dtype if n.is_floating_point() else torch.float64)


def from_planes(planes: torch.Tensor, max_level: int, coding: str) -> torch.Tensor:
    """Inverse of :func:`to_planes` (``Σ_k c_k b_k``); used by tests."""
    chunks = planes.chunk(plane_count(max_level, coding), dim=2)
    return sum(c * f for c, f in zip(chunks, plane_factors(max_level, coding), strict=True))  # type: ignore[return-value]


def expand_input_weight(w: torch.Tensor, factors: list[float] | list[torch.Tensor]) -> torch.Tensor:
    """``cat_k(c_k · W)`` on the input axis (dim 1); ``c_k`` scalars or per-input-channel vectors."""
    parts = []
    for c in factors:
        if isinstance(c, torch.Tensor):
            shape = [1, -1] + [1] * (w.dim() - 2)
            parts.append(w * c.to(w).reshape(shape))
        else:
            parts.append(w * c)
    return torch.cat(parts, dim=1)
