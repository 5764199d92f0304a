"""Integer levels from threshold units: the neuron constructions that replace ``round``/``clamp``/bits.

A converted SpikingReLU site must output ``q = clamp(round_he(x/s), 0, L)`` (``round_he``: round half
to even, ``torch.round``) as binary spikes of *threshold units*: stateless neurons that fire
``z = [u > θ]`` on their summed input ``u`` (NIR's ``Threshold``; also a LIF with τ = dt).
Two codes, both exact including the clamp and the ties (derivation in ``docs/hybrid.md`` §5):

**Unary** (``L`` units, no lateral connections): unit ``k`` (``k = 0..L−1``) reads ``x`` and fires
iff ``round_he(x/s) ≥ k + 1``, i.e. ``x/s ≥ k + ½`` with the tie going up iff ``k + 1`` is even.
Then ``q = Σ_k z_k``: at most ``L`` units fire (the clamp at ``L``), none for ``x/s < ½`` (at 0).

**Bit-plane** (successive approximation with digits ``c_k``): units are decided from the top digit
down; unit ``k`` reads ``x`` and, through lateral synapses of weight ``−c_j·s``, the spikes of the
higher units ``j > k``; it fires iff ``round_he(x/s) − Σ_{j>k} c_j z_j ≥ c_k``. Greedy choice
represents every ``n ∈ [0, Σc]`` exactly iff ``c_k ≤ 1 + Σ_{j<k} c_j`` for all ``k``, and
saturates at ``Σ c_k`` for larger ``n`` (all units fire): with ``Σ c_k = L`` the clamp comes out
of the units. The digits are

    L odd:   c = (1, 2, 4, …, 2^{P−2}, L + 1 − 2^{P−1})          P = bit_length(L) units
    L even:  the code of L − 1, plus one unary unit "round_he(x/s) ≥ L" (no laterals)

(``L = 2^P − 1`` gives the ordinary bit planes). The tie of unit ``k`` sits at ``n = m − ½`` with
``m = Σ_{j>k} c_j z_j + c_k`` and goes up iff ``m`` is even; every digit except ``c_0 = 1`` is even
(``L + 1 − 2^{P−1}`` is even for odd ``L``), so the tie goes up for ``k ≥ 1`` and down for ``k = 0``
whatever the higher units did: one fixed comparison per unit. For even ``L`` the top digit of
``(1, 2, …, L − 2^{P−1})`` would be odd and the tie of the lower units would depend on it — hence
the extra unary unit.

**Float thresholds.** A unit's comparison is strict (``u > θ``); ``u ≥ t`` is the same comparison
with ``θ = nextafter(t, −∞)``. The hybrid computes ``r = fl(x/s)`` and then rounds, which is not
the same float computation as comparing ``x`` with ``(k+½)·s``: :func:`level_threshold` therefore
finds, by stepping over neighbouring floats, the threshold ``θ`` with
``x > θ ⟺ round_he(fl(x/s)) ≥ m`` for *every* float ``x`` (``fl(x/s)`` is monotone in ``x``), so a
unit reading the same ``x`` as the hybrid decides exactly as the hybrid does, ties included. Lower
bit-plane units also subtract their laterals (``x − Σ c_j s z_j``): this is exact when ``s`` is a
power of two and the subtraction is exact (integer-grid inputs), otherwise it is covered by the
verifier's error bound (:mod:`.certificate`).

Integer inputs (SEW sums of spikes, 8-bit pixels) use the same codes with ``s = 1`` and the
threshold ``c_k − ½``, which no integer input can tie.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CODINGS = ("bitplane", "unary")
HALF = 0.5
MAX_THRESHOLD_STEPS = 64  # neighbouring floats searched around fl((m − ½)·s); the boundary is within a few


@dataclass(frozen=True)
class Unit:
    """One threshold unit of a code: fires iff ``n − Σ_{j in laterals} c_j z_j ≥ boundary``.

    ``n = round_he(x/s)`` (levels) or the integer input; ``digit`` is what its spike adds to the
    level (``q = Σ digit·z``); ``index`` is its position in the code (laterals name earlier units);
    ``tie_up``: exactly half-way below the boundary the unit fires (the rounding goes up).
    """

    index: int
    digit: int
    boundary: int
    laterals: tuple[int, ...]
    tie_up: bool


def plane_count(max_level: int, coding: str) -> int:
    """Number of units of :func:`code` for levels ``0..max_level``."""
    return len(code(max_level, coding))


def _sa_digits(odd_level: int) -> list[int]:
    """Digits (low to high) of the successive-approximation code summing to an odd ``L``."""
    p = odd_level.bit_length()
    if p == 1:
        return [1]
    return [2**k for k in range(p - 1)] + [odd_level + 1 - 2 ** (p - 1)]


def code(max_level: int, coding: str) -> list[Unit]:
    """The units of one code, in evaluation order (each unit's laterals come before it)."""
    if max_level < 1:
        raise ValueError(f"max_level must be >= 1, got {max_level}")
    if coding == "unary":
        return [Unit(k, 1, k + 1, (), (k + 1) % 2 == 0) for k in range(max_level)]
    if coding != "bitplane":
        raise ValueError(f"plane coding must be one of {CODINGS}, got {coding!r}")
    odd = max_level if max_level % 2 else max_level - 1
    digits = _sa_digits(odd)
    units: list[Unit] = []
    for order, k in enumerate(reversed(range(len(digits)))):  # top digit first
        higher = tuple(range(order))
        units.append(Unit(order, digits[k], digits[k], higher, digits[k] % 2 == 0))
    if odd != max_level:  # even L: one extra unary unit "n ≥ L" (the tie goes up: L is even)
        units.append(Unit(len(units), 1, max_level, (), True))
    return units


def represent(n: int, max_level: int, coding: str) -> list[int]:
    """The spikes ``z`` (in :func:`code` order) the units emit for an integer input ``n`` (a reference)."""
    units = code(max_level, coding)
    z: list[int] = []
    for u in units:
        m = u.boundary + sum(units[j].digit * z[j] for j in u.laterals)
        z.append(int(n >= m))
    return z


def round_half_even_at_least(r: float, m: int) -> bool:
    """``round_he(r) ≥ m`` for a float ``r`` (the hybrid's rounding decision)."""
    boundary = m - HALF
    return r > boundary or (r == boundary and m % 2 == 0)


def level_threshold(step: float, m: int) -> float:
    """The float ``θ`` with ``x > θ ⟺ round_he(fl(x / step)) ≥ m`` for every float64 ``x``.

    Starts from ``t = fl((m − ½)·step)`` and walks neighbouring floats to the first ``x`` whose
    quotient rounds to at least ``m``; ``θ`` is the float just below it.
    """
    s = np.float64(step)
    if not (np.isfinite(s) and s > 0):
        raise ValueError(f"step must be a finite number > 0, got {step}")

    def up(x: np.float64) -> bool:
        return round_half_even_at_least(float(np.float64(x) / s), m)

    x = np.float64((m - HALF) * s)
    for _ in range(MAX_THRESHOLD_STEPS):
        below = np.nextafter(x, -np.inf)
        if up(x) and not up(below):
            return float(below)
        x = below if up(x) else np.nextafter(x, np.inf)
    raise ValueError(f"no float threshold found for level {m} at step {step}")


def integer_threshold(m: int) -> float:
    """``θ`` with ``n > θ ⟺ n ≥ m`` for integer inputs ``n`` (no tie can occur)."""
    return m - HALF


def levels_from_spikes(z: list[int], max_level: int, coding: str) -> int:
    """``Σ_k c_k z_k`` (the level the units encode)."""
    return sum(u.digit * zk for u, zk in zip(code(max_level, coding), z, strict=True))
