"""The one model walker: the model zoo's structure, visited in forward order.

Every spikeforge model is a ``Net`` / ``nn.Sequential`` of named children, with residual stages made
of :class:`spikeforge.models.BasicBlock`. :class:`ModelWalker` visits that structure once for all the
tools that rewrite a model — the converter (:mod:`.convert`, which NIR export reads) and the
compaction planner (:mod:`spikeforge.develop.chain`) — carrying a value of the tool's own type
through the children, in order. Leaves are dispatched by module type through one table
(:data:`LEAF_KINDS`, nearest class in the MRO wins) to the walker's method of that name; residual
blocks are unrolled here, once, for the three styles (and a general imported graph, a module with a
``walk_with(walker, value, path)`` method like :class:`spikeforge.nir.GraphNet`, visits its own nodes in
topological order, summing merges with :meth:`ModelWalker.add`):

    standard:  y = sn2(bn2(conv2(sn1(bn1(conv1(x))))) + short(x))
    sew:       y = sn2(bn2(conv2(sn1(bn1(conv1(x)))))) + short(x)
    ms:        s = sn1(x);  y = bn2(conv2(sn2(bn1(conv1(s))))) + short(s)   (short(x) = x without downsample)

A value read twice (a block's input feeds both paths) is announced with :meth:`ModelWalker.fork`.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from torch import nn

from .. import layers as L
from ..hybrid.spiking_relu import SpikingReLU
from ..models import BasicBlock
from ..models.common import Net
from ..neurons import Site, SpikingNeuron

V = TypeVar("V")


class UnsupportedModelError(ValueError):
    """The model contains a module or a wiring a tool cannot handle exactly (the message names it)."""


LEAF_KINDS: dict[type[nn.Module], str] = {
    nn.Conv2d: "synapse", nn.Linear: "synapse",
    nn.modules.batchnorm._BatchNorm: "batchnorm",
    SpikingReLU: "spiking_relu", SpikingNeuron: "neuron", Site: "unknown_site",
    nn.AvgPool2d: "avgpool", nn.AdaptiveAvgPool2d: "avgpool", L.Flatten: "flatten",
    nn.MaxPool2d: "maxpool",
    nn.Identity: "skip", nn.Dropout: "skip", L.Dropout: "skip",  # identities in eval mode
}
CONTAINERS: tuple[type[nn.Module], ...] = (nn.Sequential, Net)


def join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def leaf_kind(m: nn.Module) -> str | None:
    for cls in type(m).__mro__:
        if cls in LEAF_KINDS:
            return LEAF_KINDS[cls]
    return None


class ModelWalker(Generic[V]):
    """Visits a model in forward order; subclasses implement the leaf methods they support."""

    def walk(self, m: nn.Module, val: V, path: str = "") -> V:
        walk_with = getattr(m, "walk_with", None)
        if callable(walk_with):  # a general graph (spikeforge.nir.GraphNet): its nodes in topological order
            try:
                result: V = walk_with(self, val, path)
            except UnsupportedModelError:
                raise
            except ValueError as e:  # e.g. a recurrent edge: no forward order to walk
                raise UnsupportedModelError(str(e)) from e
            return result
        if isinstance(m, BasicBlock):
            return self.block(m, val, path)
        if type(m) in CONTAINERS:
            for name, child in m.named_children():
                val = self.walk(child, val, join(path, name))
            return val
        kind = leaf_kind(m)
        if kind is None:
            raise UnsupportedModelError(f"{path}: module {type(m).__name__} is not supported "
                                        f"(supported: {', '.join(sorted(c.__name__ for c in LEAF_KINDS))}, "
                                        "BasicBlock)")
        handler = getattr(self, kind)
        out: V = handler(m, val, path)
        return out

    def block(self, blk: BasicBlock, x: V, path: str) -> V:
        def sub(name: str, v: V) -> V:
            return self.walk(getattr(blk, name), v, join(path, name))

        self.fork(x, path)
        if blk.style == "ms":
            s = sub("sn1", x)
            self.fork(s, path)
            out = sub("bn2", sub("conv2", sub("sn2", sub("bn1", sub("conv1", s)))))
            short = x if blk.downsample is None else sub("downsample", s)
            return self.add([out, short], path)
        out = sub("bn2", sub("conv2", sub("sn1", sub("bn1", sub("conv1", x)))))
        short = x if blk.downsample is None else sub("downsample", x)
        if blk.style == "standard":
            return sub("sn2", self.add([out, short], path))
        if blk.style == "sew":
            return self.add([sub("sn2", out), short], path)
        raise UnsupportedModelError(f"{path}: residual style {blk.style!r} is not supported")

    # -- hooks with a default -------------------------------------------------------------------
    def fork(self, val: V, path: str) -> None:
        """``val`` is about to be read by two paths (a residual block's input)."""

    def skip(self, m: nn.Module, val: V, path: str) -> V:
        return val

    def add(self, vals: list[V], path: str) -> V:
        raise UnsupportedModelError(f"{path}: residual blocks are not supported here")

    def unknown_site(self, m: nn.Module, val: V, path: str) -> V:
        raise UnsupportedModelError(f"{path}: site type {type(m).__name__} is not supported")

    def _unsupported(self, m: nn.Module, path: str) -> UnsupportedModelError:
        return UnsupportedModelError(f"{path}: {type(m).__name__} is not supported here")

    def synapse(self, m: nn.Module, val: V, path: str) -> V:
        raise self._unsupported(m, path)

    def batchnorm(self, m: nn.Module, val: V, path: str) -> V:
        raise self._unsupported(m, path)

    def spiking_relu(self, m: SpikingReLU, val: V, path: str) -> V:
        raise self._unsupported(m, path)

    def neuron(self, m: SpikingNeuron, val: V, path: str) -> V:
        raise self._unsupported(m, path)

    def avgpool(self, m: nn.Module, val: V, path: str) -> V:
        raise self._unsupported(m, path)

    def flatten(self, m: nn.Module, val: V, path: str) -> V:
        raise self._unsupported(m, path)

    def maxpool(self, m: nn.Module, val: V, path: str) -> V:
        raise self._unsupported(m, path)
