"""Masked synaptic layers with trained shadow weights.

A pruned layer keeps its ordinary parameters (``fc1.weight``, ``fc1.bias``) and gains a buffer
``fc1.weight_mask`` (same shape, 0/1). The forward pass uses

    W_eff = W ⊙ M,        b_eff = b ⊙ a,        a_j = 1[Σ_i M_ji > 0]   (neuron j alive)

and the backward pass is straight-through for the weight, ``∂L/∂W = ∂L/∂W_eff`` (unmasked), so a
pruned synapse's *shadow weight* keeps training and can earn regeneration. A batch norm that
follows a masked conv gets a buffer ``channel_mask = a`` and uses ``γ ⊙ a``, ``β ⊙ a``: a dead
channel (no incoming synapse) therefore outputs exactly 0, its neuron never fires, and removing it
(:mod:`spikeforge.develop.compact`) leaves the network's output unchanged.

Mechanism: :func:`attach_mask` swaps the layer's class for a subclass (``MaskedConv2d`` /
``MaskedLinear`` / ``MaskedBatchNorm2d``) that only changes how the weight enters ``forward``;
state-dict keys stay plain, ``isinstance(layer, nn.Conv2d)`` still holds and safetensors saves the
buffers like any other. A loaded *inference* model is baked in an explicit step after its weights
load (:func:`bake_masks`: ``W ⊙ M``, ``b ⊙ a``, ``γ ⊙ a``, ``β ⊙ a``), so tools that read plain
parameters (conversion, BN folding, energy counting) see the effective network. :func:`strip_masks`
undoes :func:`attach_mask` / :func:`attach_channel_gate` on a copy, e.g. to rebuild a smaller plain model.
"""

from __future__ import annotations

from typing import Any, TypeGuard, cast

import torch
import torch.nn.functional as F
from torch import nn

from .. import layers as L
from .access import buffer, weight

MASK_BUFFERS = ("weight_mask", "channel_mask")  # the masks themselves (synapses; batch-norm channels)


class _StraightThroughMask(torch.autograd.Function):
    """``y = w ⊙ m`` forward, ``∂y/∂w = 1`` backward."""

    @staticmethod
    def forward(ctx: Any, w: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return w * m.to(w.dtype)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None]:
        return g, None


def masked(w: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``w ⊙ m`` with a straight-through gradient to ``w``."""
    return cast(torch.Tensor, _StraightThroughMask.apply(w, m))  # type: ignore[no-untyped-call]


def alive_neurons(mask: torch.Tensor) -> torch.Tensor:
    """Boolean ``[out]``: output neurons with at least one active incoming synapse."""
    return mask.flatten(1).amax(1) > 0


class _MaskedSynapse:
    """Mixin: effective weight and bias of a masked conv/linear layer."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    weight_mask: torch.Tensor

    def effective_weight(self) -> torch.Tensor:
        return masked(self.weight, self.weight_mask)

    def effective_bias(self) -> torch.Tensor | None:
        if self.bias is None:
            return None
        return masked(self.bias, alive_neurons(self.weight_mask))


class MaskedConv2d(_MaskedSynapse, L.Conv2d):
    """Time-distributed conv whose forward uses ``W ⊙ M``."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor,  # noqa: A002
                      bias: torch.Tensor | None) -> torch.Tensor:
        return super()._conv_forward(input, self.effective_weight(), self.effective_bias())


class MaskedLinear(_MaskedSynapse, L.Linear):  # type: ignore[misc]  # torch types Linear.bias as never None
    """Linear layer whose forward uses ``W ⊙ M``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight(), self.effective_bias())


class MaskedBatchNorm2d(L.BatchNorm2d):  # type: ignore[misc, valid-type]
    """Batch norm gated per channel by the producing conv's alive neurons."""

    channel_mask: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = cast(torch.Tensor, super().forward(x))
        gate = self.channel_mask.to(y.dtype).view(1, 1, -1, *([1] * (y.dim() - 3)))
        return y * gate


MASKED_TYPES: dict[type[nn.Module], type[nn.Module]] = {
    L.Conv2d: MaskedConv2d, L.Linear: MaskedLinear, L.BatchNorm2d: MaskedBatchNorm2d,
}
PLAIN_TYPES: dict[type[nn.Module], type[nn.Module]] = {v: k for k, v in MASKED_TYPES.items()}


def attach_mask(layer: nn.Module) -> nn.Module:
    """Turn a conv/linear layer into its masked variant (all synapses active); idempotent."""
    if isinstance(layer, _MaskedSynapse):
        return layer
    cls = MASKED_TYPES.get(type(layer))
    if cls is None or cls is MaskedBatchNorm2d:
        raise TypeError(f"cannot mask a {type(layer).__name__}; supported: spikeforge.layers Conv2d, Linear")
    layer.__class__ = cls
    layer.register_buffer("weight_mask", torch.ones_like(weight(layer), requires_grad=False))
    return layer


def attach_channel_gate(bn: nn.Module) -> nn.Module:
    """Turn a time-distributed BatchNorm2d into a channel-gated one (all channels on); idempotent."""
    if isinstance(bn, MaskedBatchNorm2d):
        return bn
    if type(bn) is not L.BatchNorm2d or not isinstance(bn, nn.BatchNorm2d):
        raise TypeError(f"cannot gate a {type(bn).__name__}")
    bn.__class__ = MaskedBatchNorm2d
    device = next(bn.parameters(), next(bn.buffers(), torch.empty(0))).device
    bn.register_buffer("channel_mask", torch.ones(bn.num_features, device=device))
    return bn


def is_masked(layer: nn.Module) -> TypeGuard[MaskedConv2d | MaskedLinear]:
    return isinstance(layer, _MaskedSynapse)


def layer_mask(layer: nn.Module) -> torch.Tensor:
    """The ``weight_mask`` of a masked layer (``TypeError`` for any other module)."""
    if not isinstance(layer, _MaskedSynapse):
        raise TypeError(f"{type(layer).__name__} is not a masked layer (attach_mask)")
    return layer.weight_mask


@torch.no_grad()
def bake_masks(model: nn.Module) -> None:
    """Multiply every mask into its parameters (``W ⊙ M``, ``b ⊙ a``; gated batch norms ``γ ⊙ a``, ``β ⊙ a``).

    For inference: the forward pass is unchanged and plain parameters now hold the effective network.
    """
    for m in model.modules():
        if isinstance(m, _MaskedSynapse):
            m.weight.mul_(m.weight_mask.to(m.weight.dtype))
            if m.bias is not None:
                m.bias.mul_(alive_neurons(m.weight_mask).to(m.bias.dtype))
        elif isinstance(m, MaskedBatchNorm2d) and m.affine:
            m.weight.mul_(m.channel_mask.to(m.weight.dtype))
            m.bias.mul_(m.channel_mask.to(m.bias.dtype))


def strip_masks(model: nn.Module, buffers: tuple[str, ...]) -> nn.Module:
    """Turn masked layers back into plain ones (in place) and drop the named development ``buffers``.

    Apply it to a copy whose masks are baked in: parameters are kept as they are.
    """
    for m in model.modules():
        plain = PLAIN_TYPES.get(type(m))
        if plain is None:
            continue
        for name in buffers:
            m._buffers.pop(name, None)
        m.__class__ = plain
    return model


def following_batchnorms(model: nn.Module, names: list[str]) -> dict[str, str]:
    """For each masked conv in ``names``, the batch norm that normalises its output (if any).

    It is the first module after the conv (in definition order) that is a BatchNorm2d with as
    many features as the conv has output channels, with no other synaptic layer in between.
    """
    order = list(model.named_modules())
    out: dict[str, str] = {}
    for i, (name, mod) in enumerate(order):
        if name not in names or not isinstance(mod, nn.Conv2d):
            continue
        for other, nxt in order[i + 1:]:
            if isinstance(nxt, nn.Conv2d | nn.Linear):
                break
            if isinstance(nxt, nn.BatchNorm2d) and nxt.num_features == mod.out_channels:
                out[name] = other
                break
    return out


@torch.no_grad()
def sync_gates(model: nn.Module, bn_of: dict[str, str]) -> None:
    """Copy each masked conv's alive-neuron vector into its batch norm's ``channel_mask``."""
    for conv_name, bn_name in bn_of.items():
        gate = buffer(model.get_submodule(bn_name), "channel_mask")
        gate.copy_(alive_neurons(buffer(model.get_submodule(conv_name), "weight_mask")).to(gate.dtype))
