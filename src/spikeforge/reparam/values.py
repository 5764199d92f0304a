"""What the converter knows about each tensor of the hybrid model while it walks it.

A hybrid tensor is represented in the converted graph as one of:

- ``analog``: a real-valued node output (a synaptic layer's output, a membrane sum); it may feed
  neurons, SpikingReLU units, adds and max pools, but never a synaptic layer;
- ``integer``: ``Σ_j u_j · n_j`` — terms with a float quantum ``u_j`` and a node ``n_j`` holding
  integers in ``0..M_j`` (``M_j = 1``: spikes; a SpikingReLU level has ``u = s, M = L``; a SEW
  sum of spikes ``u = 1, M = 2, 3, …``). Feeding a synaptic layer, each term becomes binary planes;
- ``input``: the analog model input (the first layer then costs MACs);
- ``pixels``: 8-bit pixels ``p`` given as bit planes, the hybrid's value being ``(p/255 − m_c)/σ_c``.

Average pools and flattens met before the next synaptic layer are kept in ``pending`` (applied
to the logical value, in order) and folded into that layer's weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

KINDS = ("analog", "integer", "input", "pixels")


@dataclass
class Term:
    """``scale · n`` with ``n`` the integer output (``0..max_level``) of graph node ``node``."""

    node: str
    scale: float
    max_level: int


@dataclass
class Val:
    kind: str
    shape: tuple[int, ...]  # per-sample shape of the nodes' tensors (before ``pending``)
    node: str = ""  # analog / input / pixels
    terms: list[Term] = field(default_factory=list)  # integer
    pending: list[nn.Module] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown value kind {self.kind!r}")

    @property
    def max_level(self) -> int:
        return sum(t.max_level for t in self.terms)

    def with_pending(self, op: nn.Module) -> Val:
        return Val(self.kind, self.shape, self.node, list(self.terms), [*self.pending, op])
