"""Float64 facts the certificate needs: unit roundoff, significant bits, quanta, exact sums.

``u = 2^−53`` (float64) and ``γ_n = n·u / (1 − n·u)``: any sum of ``n`` products, evaluated in any
order with correctly rounded operations (fused or not), is within ``γ_n · Σ|w_i x_i|`` of the exact
value (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., §3.1 and Lemma 3.1).

A float ``v ≠ 0`` is ``m · 2^e`` with an odd integer ``m``; its *quantum* is ``2^e`` and its number of
significant bits is ``bit_length(m)``. A sum of values that are all multiples of ``q`` is exact in
every order when every partial sum stays below ``2^53 · q`` in magnitude (each is then an integer
multiple of ``q`` with at most 53 bits); products are exact when the operands' significant bits add
up to at most 53.
"""

from __future__ import annotations

import torch

F64 = torch.float64
MANTISSA_BITS = 53
U64 = 2.0**-53
U32 = 2.0**-24


def gamma(n: int, u: float = U64) -> float:
    """``γ_n = n·u / (1 − n·u)`` (rounding error factor of ``n`` operations)."""
    if n * u >= 1.0:
        raise ValueError(f"gamma undefined: {n} operations at unit roundoff {u}")
    return n * u / (1.0 - n * u)


def _odd_parts(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For the nonzero values of ``t``: (significant bits, log2 of the quantum)."""
    x = t.detach().to(F64).abs().flatten()
    x = x[x > 0]
    mant, exp = torch.frexp(x)  # x = mant · 2^exp, mant ∈ [0.5, 1)
    m = (mant * 2.0**MANTISSA_BITS).to(torch.int64)
    low = torch.log2((m & (-m)).to(F64)).round().to(torch.int64)  # trailing zeros of m
    return MANTISSA_BITS - low, exp.to(torch.int64) - MANTISSA_BITS + low


def significant_bits(t: torch.Tensor) -> int:
    """Largest number of significant bits among the nonzero values of ``t`` (0 if none)."""
    bits, _ = _odd_parts(t)
    return int(bits.max()) if bits.numel() else 0


def log2_quantum(t: torch.Tensor) -> int | None:
    """``log2`` of the smallest quantum among the nonzero values of ``t`` (None if all zero)."""
    _, q = _odd_parts(t)
    return int(q.min()) if q.numel() else None


def is_power_of_two(f: float) -> bool:
    if f == 0.0:
        return False
    bits, _ = _odd_parts(torch.tensor([f], dtype=F64))
    return int(bits[0]) == 1


def two_sum_error(a: torch.Tensor, b: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """The exact rounding error of ``s = fl(a + b)`` (Knuth's TwoSum: ``a + b = s + err`` exactly)."""
    bb = s - a
    return (a - (s - bb)) + (b - bb)
