"""Typed access to the tensors structural development reads and attaches on a layer.

``nn.Module`` attributes are untyped to a type checker (``Tensor | Module``); these accessors return
tensors or fail with a message naming what is missing.
"""

from __future__ import annotations

import torch
from torch import nn


def buffer(module: nn.Module, name: str) -> torch.Tensor:
    """The registered buffer ``name`` of ``module``."""
    t = module._buffers.get(name)
    if t is None:
        raise AttributeError(f"{type(module).__name__} has no buffer {name!r} (is the layer equipped for development?)")
    return t


def weight(layer: nn.Module) -> torch.Tensor:
    """The ``weight`` parameter of a conv/linear layer."""
    w = layer._parameters.get("weight")
    if w is None:
        raise TypeError(f"{type(layer).__name__} has no weight parameter")
    return w
