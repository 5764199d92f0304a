"""Assembling a NIR graph: nodes, weighted edges, and how a weight on an edge becomes a NIR node.

NIR edges are identity connections and a node with several incoming edges receives their sum
(NIR's primitives page leaves this implicit; the reference PyTorch interpreter ``nirtorch`` and the
graph executor that snnTorch and Norse use, sum them). spikeforge's graph has weighted sums (``add``,
``output``, a threshold unit's lateral synapses ``−c_j·s``), so the builder collects *wanted* edges
``(source, target, scale)`` and materializes them at the end:

- scale 1 → a plain edge;
- a synapse node (``Conv2d``/``Affine``) whose every outgoing edge carries the same scale → the
  scale is multiplied into its weights and bias (no extra node);
- otherwise an elementwise weight node per (source, scale): ``Scale`` (``ExportOptions.scale_node =
  "scale"``, NIR's own primitive) or, for consumers that do not import ``Scale`` (snnTorch, Norse),
  a 1×1 ``Conv2d`` / ``Affine`` with a diagonal weight (``"synapse"``, the default). The zeros of a
  diagonal weight are not synapses; spikeforge's event counts treat the edge as elementwise.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

SCALE_NODES = ("synapse", "scale")
THRESHOLD_NODES = ("lif", "threshold")
POOL_NODES = ("avg", "sum")
DTYPES = ("float64", "float32")
SYNAPSE_TYPES = ("Conv2d", "Affine")


@dataclass(frozen=True)
class ExportOptions:
    """How spikeforge's graph is written with NIR primitives (see ``docs/export.md``).

    ``dt``: the forward-Euler step the neuron parameters are computed for (snnTorch's importer
    assumes 1e-4, Norse's ``from_nir`` takes it as an argument). ``threshold_node``: a threshold unit
    as a ``LIF`` with ``τ = dt`` (memoryless: ``v = v_leak + R·I``; imported by every consumer with
    LIF) or as NIR's ``Threshold``. ``scale_node``: see the module docstring. ``pool_node``: average
    pools as ``AvgPool2d`` or as ``SumPool2d`` with the next synapse's weights divided by the window.
    ``unit_r``: rescale every neuron to ``R = 1`` by multiplying its incoming weights by ``R``
    (consumers that ignore ``R``). ``dtype``: of every array in the file.
    """

    dt: float = 1.0
    dtype: str = "float64"
    threshold_node: str = "lif"
    scale_node: str = "synapse"
    pool_node: str = "avg"
    unit_r: bool = False

    def __post_init__(self) -> None:
        for name, value, allowed in (("threshold_node", self.threshold_node, THRESHOLD_NODES),
                                     ("scale_node", self.scale_node, SCALE_NODES),
                                     ("pool_node", self.pool_node, POOL_NODES), ("dtype", self.dtype, DTYPES)):
            if value not in allowed:
                raise ValueError(f"export option {name} must be one of {allowed}, got {value!r}")
        if not (np.isfinite(self.dt) and self.dt > 0):
            raise ValueError(f"dt must be a finite number > 0, got {self.dt}")


@dataclass
class Builder:
    """The NIR graph under construction."""

    nir: ModuleType
    options: ExportOptions
    nodes: dict[str, Any] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    wants: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.options.dtype)

    def array(self, t: Any) -> np.ndarray:
        data = t.detach().cpu().double().numpy() if hasattr(t, "detach") else np.asarray(t, dtype=np.float64)
        return np.ascontiguousarray(data, dtype=self.dtype)

    def full(self, shape: tuple[int, ...], value: float) -> np.ndarray:
        return np.full(shape, value, dtype=self.dtype)

    def add(self, name: str, node: Any, shape: tuple[int, ...]) -> str:
        if name in self.nodes:
            raise ValueError(f"node name {name!r} clashes with another NIR node")
        self.nodes[name] = node
        self.shapes[name] = tuple(int(s) for s in shape)
        return name

    def connect(self, src: str, dst: str, scale: float = 1.0) -> None:
        self.wants[(src, dst)] += float(scale)

    # -- materializing weighted edges -------------------------------------------------------------
    def edges(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        by_src: dict[str, list[tuple[str, float]]] = defaultdict(list)
        for (src, dst), scale in self.wants.items():
            by_src[src].append((dst, scale))
        scale_nodes: dict[tuple[str, float], str] = {}
        for src, targets in by_src.items():
            scales = {s for _, s in targets}
            if len(scales) == 1 and type(self.nodes[src]).__name__ in SYNAPSE_TYPES and 1.0 not in scales:
                self._scale_synapse(src, scales.pop())
                targets = [(d, 1.0) for d, _ in targets]
            for dst, scale in targets:
                if scale == 1.0:
                    out.append((src, dst))
                    continue
                key = (src, scale)
                if key not in scale_nodes:
                    scale_nodes[key] = self._scale_node(src, scale, len(scale_nodes))
                out += [(src, scale_nodes[key]), (scale_nodes[key], dst)]
        return sorted(set(out), key=out.index)

    def _scale_synapse(self, name: str, scale: float) -> None:
        node = self.nodes[name]
        node.weight = np.ascontiguousarray(node.weight * scale, dtype=self.dtype)
        node.bias = np.ascontiguousarray(node.bias * scale, dtype=self.dtype)

    def _scale_node(self, src: str, scale: float, index: int) -> str:
        shape = self.shapes[src]
        name = f"{src}.w{index}"
        if self.options.scale_node == "scale":
            return self.add(name, self.nir.Scale(scale=self.full(shape, scale)), shape)
        if len(shape) == 3:
            c = shape[0]
            weight = np.zeros((c, c, 1, 1), dtype=self.dtype)
            weight[np.arange(c), np.arange(c)] = scale
            node = self.nir.Conv2d(input_shape=shape[1:], weight=weight, stride=1, padding=0, dilation=1, groups=1,
                                   bias=np.zeros(c, dtype=self.dtype))
            return self.add(name, node, shape)
        n = int(np.prod(shape))
        weight = np.diag(np.full(n, scale)).astype(self.dtype)
        return self.add(name, self.nir.Affine(weight=weight, bias=np.zeros(n, dtype=self.dtype)), shape)
