"""What the converter knows about each tensor of the hybrid model while it walks it.

A hybrid tensor is represented in the converted graph as one of:

- ``analog``: a real-valued node output (a synaptic layer's output, a membrane sum); it may feed
  neurons, SpikingReLU units, adds and max pools, but never a synaptic layer;
- ``integer``: ``Σ_j u_j · n_j`` — terms with a float quantum ``u_j`` and an integer ``n_j ∈ 0..M_j``:
  ``spikes`` (a spiking node, ``M = 1``), ``level`` (a SpikingReLU: ``n = clamp(round(x/s), 0, L)`` of
  the analog node ``x``, ``u = s``) or ``count`` (a node holding integers, e.g. a SEW sum of spikes).
  Wherever a term must be spikes, :mod:`.units` turns it into threshold units;
- ``input``: the analog model input (the first layer then costs MACs);
- ``pixels``: 8-bit pixels ``p`` (a ``count`` with ``M = 255``), the hybrid's value being
  ``(p/255 − m_c)/σ_c``.

Average pools and flattens met before the next synaptic layer are kept in ``pending`` (applied to
the logical value, in order) and folded into that layer's weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

KINDS = ("analog", "integer", "input", "pixels")
TERM_KINDS = ("spikes", "level", "count")


@dataclass
class Term:
    """``scale · n`` with ``n`` the integer (``0..max_level``) that graph node ``node`` carries (see ``kind``)."""

    node: str
    scale: float
    max_level: int
    kind: str = "spikes"
    site: str = ""  # the hybrid site (or add) the integer comes from: names its units

    def __post_init__(self) -> None:
        if self.kind not in TERM_KINDS:
            raise ValueError(f"unknown term kind {self.kind!r}")


@dataclass
class Pending:
    """A pool or flatten waiting for the next synaptic layer: its module path and module."""

    name: str
    module: nn.Module


@dataclass
class Val:
    kind: str
    shape: tuple[int, ...]  # per-sample shape of the nodes' tensors (before ``pending``)
    node: str = ""  # analog / input / pixels
    terms: list[Term] = field(default_factory=list)  # integer
    pending: list[Pending] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown value kind {self.kind!r}")

    @property
    def max_level(self) -> int:
        return sum(t.max_level for t in self.terms)

    def with_pending(self, name: str, op: nn.Module) -> Val:
        return Val(self.kind, self.shape, self.node, list(self.terms), [*self.pending, Pending(name, op)])
