"""Time-distributed layers: inputs are ``[T, B, ...]``; T is folded into the batch.

Each class subclasses the matching ``torch.nn`` layer, so weights keep their usual names
(``conv1.weight``) and shapes; only ``forward`` changes. Batch norm therefore computes its
statistics over T·B samples (shared across time); dropout draws one mask per sample that is
shared across all time steps.

Folding is a view, never a copy: ``[T, B, C, H, W] -> [T·B, C, H, W]`` merges two adjacent
dimensions, which is free for contiguous and for channels-last steps alike.

Memory format: in training mode :class:`Conv2d` computes its output in ``memory_format`` (an
attribute, default contiguous; :func:`set_memory_format` sets it for a whole model). In
``channels_last`` the activations are NHWC in memory while shapes stay ``[T, B, C, H, W]``;
batch norm, the neurons (which run on the contiguous NHWC view), pooling and the next
convolution keep that layout, so oneDNN runs its native NHWC kernels and no layer reorders.
Weights keep their usual contiguous layout (state dicts, exports and reparameterization see no
difference). In eval mode the activations are contiguous, the layout the analysis tools
(``energy.count_ops`` follows pooled spike counts by storage, ``verify``, ``convert``) expect.

Spike inputs: in training, a :class:`Conv2d` whose ``spike_convs`` is set (:func:`set_spike_convs`, recipe
``model.spike_convs``, default "auto") sums the weight rows of the inputs that spiked instead of computing
the dense product, where the input is binary and sparse enough (:mod:`spikeforge.spike_conv`).

Time-invariant inputs: a ``[T, B, ...]`` input that is one step expanded over T (stride 0 along
T, e.g. ``x.expand(T, ...)`` for direct encoding) is convolved once and the output expanded
again; autograd sums the T gradients before the single convolution backward.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import spike_conv
from .spike_conv import SpikeConvConfig


def fold(x: torch.Tensor) -> torch.Tensor:
    """``[T, B, ...] -> [T·B, ...]``."""
    return x.flatten(0, 1)


def unfold(y: torch.Tensor, time_steps: int) -> torch.Tensor:
    """``[T·B, ...] -> [T, B, ...]``."""
    return y.reshape(time_steps, -1, *y.shape[1:])


def _time_distributed(base: type[nn.Module]) -> type[nn.Module]:
    class TimeDistributed(base):  # type: ignore[valid-type, misc]
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return unfold(super().forward(fold(x)), x.shape[0])

    TimeDistributed.__name__ = base.__name__
    TimeDistributed.__qualname__ = base.__name__
    TimeDistributed.__doc__ = f"Time-distributed ``nn.{base.__name__}`` over ``[T, B, ...]`` inputs."
    return TimeDistributed


MEMORY_FORMATS: dict[str, torch.memory_format] = {
    "channels_last": torch.channels_last,
    "contiguous": torch.contiguous_format,
}


class Conv2d(nn.Conv2d):
    """Time-distributed ``nn.Conv2d`` over ``[T, B, ...]`` inputs, output in ``memory_format``."""

    memory_format: torch.memory_format = torch.contiguous_format
    spike_convs: SpikeConvConfig | None = None  # event-driven when the input is spikes (training, CPU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = x.shape[0]
        if steps > 1 and x.stride(0) == 0:  # one step expanded over T: convolve it once
            y = self._conv(x[0])
            return y.unsqueeze(0).expand(steps, *y.shape)
        return unfold(self._conv(fold(x)), steps)

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        fmt = self.memory_format if self.training else torch.contiguous_format
        # oneDNN picks the output layout from the input's, and a 1-channel input is both layouts
        return super().forward(x.contiguous(memory_format=fmt)).contiguous(memory_format=fmt)

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor,  # noqa: A002 - nn.Conv2d's signature
                      bias: torch.Tensor | None) -> torch.Tensor:
        """The convolution with the weights ``forward`` passes: event-driven where :mod:`spikeforge.spike_conv`
        applies. Subclasses that change the weights (``develop.masking.MaskedConv2d``: ``W ⊙ M``) override this
        and call it with theirs, so both paths see the same weights."""
        cfg = self.spike_convs
        if cfg is not None and self.training and spike_conv.applies(input, weight, self.stride, self.padding,
                                                                      self.dilation, self.groups, self.padding_mode):
            return spike_conv.spike_conv2d(input, weight, bias, self.stride, self.padding, cfg)  # type: ignore[arg-type]
        return super()._conv_forward(input, weight, bias)


def set_memory_format(model: nn.Module, name: str) -> nn.Module:
    """Make every time-distributed :class:`Conv2d` of ``model`` compute in ``name``'s layout."""
    try:
        fmt = MEMORY_FORMATS[name]
    except KeyError:
        raise ValueError(f"model.memory_format must be one of {sorted(MEMORY_FORMATS)}, got {name!r}") from None
    for m in model.modules():
        if isinstance(m, Conv2d):
            m.memory_format = fmt
    return model


def set_spike_convs(model: nn.Module, cfg: SpikeConvConfig | str) -> nn.Module:
    """Set every time-distributed :class:`Conv2d` of ``model`` to ``cfg`` (or a mode name: "auto" | "dense")."""
    cfg = SpikeConvConfig(mode=cfg) if isinstance(cfg, str) else cfg
    for m in model.modules():
        if isinstance(m, Conv2d):
            m.spike_convs = cfg if cfg.mode == "auto" else None
    return model


BatchNorm2d = _time_distributed(nn.BatchNorm2d)
BatchNorm1d = _time_distributed(nn.BatchNorm1d)


class _BlockMean(torch.autograd.Function):
    """Mean over non-overlapping ``k×k`` blocks (``avg_pool2d`` with stride = kernel, no padding).

    Backward spreads ``∂y/k²`` over each block with one strided copy, written straight into the
    input's layout whatever the layout of the incoming gradient (aten's ``avg_pool2d_backward``
    costs ~3× more when the two differ, as they do between a channels-last pool and a flatten).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, k: int) -> torch.Tensor:
        ctx.k = k
        ctx.shape = x.shape
        ctx.channels_last = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        return F.avg_pool2d(x, k)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None]:
        k = ctx.k
        n, c, h, w = ctx.shape
        h2, w2 = g.shape[-2:]
        scaled = g * (1.0 / (k * k))
        if ctx.channels_last:  # build [N, H2, k, W2, k, C] from the NHWC view, hand back NCHW strides
            blocks = scaled.permute(0, 2, 3, 1)[:, :, None, :, None, :].expand(n, h2, k, w2, k, c)
            out = blocks.reshape(n, h2 * k, w2 * k, c).permute(0, 3, 1, 2)
        else:
            out = scaled[:, :, :, None, :, None].expand(n, c, h2, k, w2, k).reshape(n, c, h2 * k, w2 * k)
        if out.shape[-2:] != (h, w):  # odd sizes: the last row/column took no part in the forward
            out = F.pad(out, (0, w - w2 * k, 0, h - h2 * k))
        return out, None


_block_mean: Callable[[torch.Tensor, int], torch.Tensor] = _BlockMean.apply  # typed entry point


class AvgPool2d(nn.AvgPool2d):
    """Time-distributed ``nn.AvgPool2d``; non-overlapping unpadded pools use :class:`_BlockMean`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, stride = self.kernel_size, self.stride
        if not (isinstance(k, int) and stride in (k, (k, k), None) and self.padding in (0, (0, 0))
                and not self.ceil_mode and self.divisor_override is None and x.dim() == 5):
            return unfold(super().forward(fold(x)), x.shape[0])
        return unfold(_block_mean(fold(x), k), x.shape[0])


MaxPool2d = _time_distributed(nn.MaxPool2d)
AdaptiveAvgPool2d = _time_distributed(nn.AdaptiveAvgPool2d)


class Linear(nn.Linear):
    """``nn.Linear`` over ``[T, B, ..., in]`` (already acts on the last dim)."""


class Flatten(nn.Module):
    """Flatten everything after ``[T, B]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2)


class Dropout(nn.Module):
    """Dropout with one mask per sample, shared over all time steps."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout p must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        mask = torch.bernoulli(torch.full_like(x[0], 1.0 - self.p)) / (1.0 - self.p)
        return x * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"
