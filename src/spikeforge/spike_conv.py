"""Event-driven convolutions for training: a spiking layer's input is 0/1, so its convolution needs no products.

A convolution fed by a neuron's spikes computes, per output, the sum of the weight rows of the inputs that
spiked; its weight gradient is, per weight, the sum of the output gradients those spikes reached:

    y[i, o, p]    = Σ_{(c, q) spiked in image i, q in the window of p} W[o, c, q − p]
    ∂L/∂W[o, c, k] = Σ_i Σ_{(c, q) spiked} ∂L/∂y[i, o, (q − k)]        (stride and padding as the layer's)

At the firing rates SNNs train at (a few to ~15 % of inputs per step) this is far less work than the dense
products oneDNN computes, which multiply every zero too. The input gradient ``∂L/∂x = Wᵀ ⋆ ∂L/∂y`` has a
dense right-hand side and stays oneDNN's. ``runtime/csrc/spike_conv.c`` holds the kernels (float32,
NHWC, the caller's OpenMP threads); the sums are float32 like the dense ones, in a different order, so
results agree with the dense convolution to float32 rounding, not bitwise.

When it runs (:class:`SpikeConvConfig`, recipe ``model.spike_convs``): a time-distributed
:class:`spikeforge.layers.Conv2d` in training mode on CPU, float32 without autocast, channels-last input,
a kernel larger than 1×1, one group, dilation 1, zero padding, and a compiled kernel available. Each call
first counts the input's events (and checks that every value is exactly 0 or 1, stopping at the first other
value for inputs such as images or quantized-ReLU activations); a non-binary input, or a firing rate above
``forward_max_rate``, runs the dense convolution instead. The backward takes the event path for the weight
gradient only at rates up to ``weight_grad_max_rate`` (its crossover with oneDNN is lower). Both paths are
deterministic for a given thread count; the forward's sums do not depend on the thread count at all.

The ops are ``torch.library`` custom ops (``spikeforge::spike_conv2d`` and its backward), so a whole-step
``torch.compile`` keeps them as single nodes. Where the dense path runs, the op makes the same oneDNN calls
as ``F.conv2d`` and its backward (bias fused, one backward call for all three gradients).
"""

from __future__ import annotations

import ctypes
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

SOURCE = Path(__file__).with_name("runtime") / "csrc" / "spike_conv.c"  # built by runtime.native's machinery
MODES = ("auto", "dense")
LANES = 16  # the kernels' vector width in float32: output channels are padded to a multiple of it
INT32_LIMIT = 2**31 - 1  # event lists and weight offsets are int32
POSITION_LIMIT = 1 << 15  # positions are packed as (row << 16 | column)
NOT_BINARY, NO_MEMORY = -1, -2  # the kernels' refusals
MIN_TAPS = 2  # 1×1 convolutions stay dense: a channel mix is one GEMM, and the scan alone costs more (measured
# 0.2–0.4× on ResNet-19's 1×1 stride-2 shortcut at 2–30 % firing)

_I64, _PTR = ctypes.c_int64, ctypes.c_void_p
_COUNT_ARGS: list[Any] = [_PTR, _I64]
# x; n h w ci; weights or grad; co cop kh kw sh sw ph pw oh ow; out or dw
_CONV_ARGS: list[Any] = [_PTR, *[_I64] * 4, _PTR, *[_I64] * 10, _PTR]


@dataclass(frozen=True)
class SpikeConvConfig:
    """Recipe ``model.spike_convs`` (the mode) and the rates at which the event path stops paying.

    Where the event path stops paying was measured on this project's 2-core AVX-512 VM (``bench/spike_conv.py``,
    BENCHMARKS.md §5, ResNet-19 × 0.25's 3×3 shapes): the forward beats oneDNN's NHWC float32 convolution up
    to 20–30 % or more input firing (fewer channels: lower), the weight gradient up to 9–29 %. The defaults
    sit at or below the low ends, so no layer of those shapes runs slower than dense."""

    mode: str = "auto"  # "auto": event path where the input is binary and sparse enough | "dense": oneDNN always
    forward_max_rate: float = 0.15
    weight_grad_max_rate: float = 0.08

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"model.spike_convs must be one of {', '.join(MODES)}, got {self.mode!r}")
        for name in ("forward_max_rate", "weight_grad_max_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"SpikeConvConfig.{name} must be within [0, 1], got {getattr(self, name)}")


@dataclass(frozen=True)
class _Kernels:
    count: Any
    forward: Any
    weight_grad: Any


_lock = threading.Lock()
_kernels: _Kernels | None = None
_failure: str | None = None


def _open(path: Path) -> _Kernels:
    lib = ctypes.CDLL(str(path))
    count, forward, weight_grad = lib.spike_count, lib.spike_conv_forward, lib.spike_conv_weight_grad
    count.argtypes, count.restype = _COUNT_ARGS, _I64
    forward.argtypes, forward.restype = _CONV_ARGS, _I64
    weight_grad.argtypes, weight_grad.restype = _CONV_ARGS, _I64
    return _Kernels(count, forward, weight_grad)


def _load() -> _Kernels:
    # the event runtime's build machinery (imported here: the runtime package imports the models, which import
    # layers, which import this module)
    from .runtime.native import first_loading

    return first_loading(_open, "the compiled spike convolution", SOURCE)


def kernels() -> _Kernels | None:
    """The compiled kernels (built on first use), or None where they cannot be built (warned once: the
    convolutions then run dense, with the same results up to float32 rounding)."""
    global _kernels, _failure
    if _kernels is not None or _failure is not None:
        return _kernels
    from .runtime.native import NativeUnavailable

    with _lock:
        if _kernels is None and _failure is None:
            try:
                _kernels = _load()
            except NativeUnavailable as err:
                _failure = str(err)
                warnings.warn(f"spikeforge: event-driven training convolutions unavailable, running them dense: "
                              f"{err}", RuntimeWarning, stacklevel=3)
    return _kernels


def available() -> bool:
    return kernels() is not None


def _out_size(size: int, k: int, s: int, p: int) -> int:
    return (size + 2 * p - k) // s + 1


def applies(x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, ...], padding: Any, dilation: tuple[int, ...],
            groups: int, padding_mode: str) -> bool:
    """Whether the event path can take this call at all (the rate and the kernels are checked inside the op;
    nothing here may load them, as a whole-step ``torch.compile`` traces this function)."""
    if x.device.type != "cpu" or weight.device.type != "cpu" or x.dtype != torch.float32 \
            or weight.dtype != torch.float32 or x.dim() != 4 or weight.dim() != 4 or weight.shape[1] != x.shape[1]:
        return False  # (a wrong channel count: F.conv2d says what is wrong)
    if groups != 1 or tuple(dilation) != (1, 1) or padding_mode != "zeros" or isinstance(padding, str) \
            or weight.shape[-2] * weight.shape[-1] < MIN_TAPS:
        return False
    if torch.is_autocast_enabled("cpu") or not x.is_contiguous(memory_format=torch.channels_last):
        return False
    n, ci, h, w = x.shape
    co, _, kh, kw = weight.shape
    cop = -(-co // LANES) * LANES
    if min(padding) < 0 or min(_out_size(h, kh, stride[0], padding[0]), _out_size(w, kw, stride[1], padding[1])) < 1:
        return False  # F.conv2d says what is wrong
    if stride[0] > h + 2 * padding[0] or stride[1] > w + 2 * padding[1]:
        return False  # one output per axis: the weight gradient's stride-phase buckets would only cost memory
    return (h < POSITION_LIMIT and w < POSITION_LIMIT and h * w * ci <= INT32_LIMIT
            and w * ci * cop <= INT32_LIMIT and x.numel() > 0)  # (no kernels: the op runs dense, warned once)


def _padded_weights(weight: torch.Tensor) -> torch.Tensor:
    """``W [O, C, kH, kW]`` as the kernels read it: ``[kH, kW, C, O']``, O' = O rounded up to LANES."""
    co, ci, kh, kw = weight.shape
    wt = weight.new_zeros(kh, kw, ci, -(-co // LANES) * LANES)
    wt[..., :co] = weight.detach().permute(2, 3, 1, 0)
    return wt


def _geometry(x: torch.Tensor, weight_shape: list[int], stride: list[int], padding: list[int]) -> list[int]:
    n, ci, h, w = x.shape
    co, _, kh, kw = weight_shape
    oh, ow = _out_size(h, kh, stride[0], padding[0]), _out_size(w, kw, stride[1], padding[1])
    return [n, h, w, ci, co, -(-co // LANES) * LANES, kh, kw, stride[0], stride[1], padding[0], padding[1], oh, ow]


def _dense_backward(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, stride: list[int],
                    padding: list[int], mask: list[bool]) -> tuple[torch.Tensor | None, ...]:
    """oneDNN's ``(∂L/∂x, ∂L/∂W, ∂L/∂b)`` of the convolution, those ``mask`` asks for (None elsewhere), in one
    call, as ``F.conv2d``'s backward computes them (differentiable: also what a double backward uses)."""
    return tuple(torch.ops.aten.convolution_backward(grad, x, weight, [weight.shape[0]], stride, padding, [1, 1],
                                                     False, [0, 0], 1, mask))


def _checked(code: int) -> bool:
    """Whether a kernel call succeeded; False when it found a value that is not 0 or 1 (the input changed after
    it was counted, e.g. through ``.data``: the caller runs dense, as ``F.conv2d`` would on that input)."""
    if code == NO_MEMORY:
        raise MemoryError("the event-driven convolution could not allocate its event lists")
    return code != NOT_BINARY


@torch.library.custom_op("spikeforge::spike_conv2d", mutates_args=())
def spike_conv2d_op(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: list[int],
                    padding: list[int], max_rate: float,
                    weight_grad_max_rate: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(F.conv2d(x, weight, bias, stride, padding) in channels-last, events)``; ``events`` is the input's
    spike count, or −1 where the dense convolution ran (input not binary, or firing above ``max_rate``).
    ``weight_grad_max_rate`` is the backward's limit (see :func:`backward_op`)."""
    k = kernels()
    events = -1 if k is None else k.count(x.data_ptr(), x.numel())
    if 0 <= events <= max_rate * x.numel():
        assert k is not None
        n, h, w, ci, co, cop, kh, kw, sh, sw, ph, pw, oh, ow = _geometry(x, list(weight.shape), stride, padding)
        out = torch.empty(n, oh, ow, co, dtype=x.dtype)
        wt = _padded_weights(weight)
        if _checked(k.forward(x.data_ptr(), n, h, w, ci, wt.data_ptr(), co, cop, kh, kw, sh, sw, ph, pw, oh, ow,
                              out.data_ptr())):
            if bias is not None:
                out.add_(bias.detach())
            return out.permute(0, 3, 1, 2), torch.tensor(events, dtype=torch.int64)
    y = F.conv2d(x, weight, bias, stride, padding).contiguous(memory_format=torch.channels_last)
    return y, torch.tensor(-1, dtype=torch.int64)


@spike_conv2d_op.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: list[int], padding: list[int],
      max_rate: float, weight_grad_max_rate: float) -> tuple[torch.Tensor, torch.Tensor]:
    n, _, h, w = x.shape
    co, _, kh, kw = weight.shape
    oh, ow = _out_size(h, kh, stride[0], padding[0]), _out_size(w, kw, stride[1], padding[1])
    y = x.new_empty((n, oh, ow, co)).permute(0, 3, 1, 2)
    return y, x.new_empty((), dtype=torch.int64)


@torch.library.custom_op("spikeforge::spike_conv2d_backward", mutates_args=())
def backward_op(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, events: torch.Tensor,
                stride: list[int], padding: list[int], max_rate: float,
                output_mask: list[bool]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(∂L/∂x, ∂L/∂W, ∂L/∂b)`` of :func:`spike_conv2d_op` given ``grad = ∂L/∂y``, each only where
    ``output_mask`` asks (else an empty tensor). The weight gradient sums over ``x``'s events where the
    forward counted them and the rate is at most ``max_rate``; otherwise all three come from one dense
    oneDNN backward, as for ``F.conv2d``. ``∂L/∂x`` is always oneDNN's."""
    k, count = kernels(), int(events)
    gw: torch.Tensor | None = None
    if k is not None and 0 <= count <= max_rate * x.numel() and output_mask[1]:
        n, h, w, ci, co, cop, kh, kw, sh, sw, ph, pw, oh, ow = _geometry(x, list(weight.shape), stride, padding)
        g = grad.permute(0, 2, 3, 1).contiguous()  # NHWC rows (a view when grad is channels-last already)
        dw = torch.empty(kh, kw, ci, cop, dtype=x.dtype)
        if _checked(k.weight_grad(x.data_ptr(), n, h, w, ci, g.data_ptr(), co, cop, kh, kw, sh, sw, ph, pw, oh, ow,
                                  dw.data_ptr())):
            gw = dw[..., :co].permute(3, 2, 0, 1)
    if gw is None:
        gx, gw, gb = _dense_backward(grad, x, weight, stride, padding, output_mask)
    else:
        gx = _dense_backward(grad, x, weight, stride, padding, [True, False, False])[0] if output_mask[0] else None
        gb = grad.sum((0, 2, 3)) if output_mask[2] else None
    # only what was asked for (oneDNN may return a gradient it was not asked for): as the fake says
    gx, gw, gb = (t if want else None for t, want in zip((gx, gw, gb), output_mask, strict=True))
    return (x.new_empty(0) if gx is None else gx.contiguous(memory_format=torch.channels_last),
            x.new_empty(0) if gw is None else gw.contiguous(), x.new_empty(0) if gb is None else gb)


@backward_op.register_fake
def _(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, events: torch.Tensor, stride: list[int],
      padding: list[int], max_rate: float,
      output_mask: list[bool]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (torch.empty_like(x, memory_format=torch.channels_last) if output_mask[0] else x.new_empty(0),
            torch.empty_like(weight, memory_format=torch.contiguous_format) if output_mask[1] else x.new_empty(0),
            x.new_empty(weight.shape[0]) if output_mask[2] else x.new_empty(0))


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, weight, bias, stride, padding, _, weight_grad_max_rate = inputs
    ctx.save_for_backward(x, weight, output[1])
    ctx.has_bias = bias is not None
    ctx.stride, ctx.padding, ctx.weight_grad_max_rate = stride, padding, weight_grad_max_rate


def _backward(ctx: Any, grad: torch.Tensor, _events_grad: Any) -> tuple[Any, ...]:
    x, weight, events = ctx.saved_tensors
    mask = [bool(ctx.needs_input_grad[0]), bool(ctx.needs_input_grad[1]),
            ctx.has_bias and bool(ctx.needs_input_grad[2])]
    if not any(mask):
        return None, None, None, None, None, None, None
    if torch.is_grad_enabled():  # create_graph: differentiable dense gradients, as F.conv2d's backward gives
        gx, gw, gb = _dense_backward(grad, x, weight, ctx.stride, ctx.padding, mask)
    else:
        gx, gw, gb = backward_op(grad, x, weight, events, ctx.stride, ctx.padding, ctx.weight_grad_max_rate, mask)
    return gx if mask[0] else None, gw if mask[1] else None, gb if mask[2] else None, None, None, None, None


spike_conv2d_op.register_autograd(_backward, setup_context=_setup_context)


def spike_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: tuple[int, int],
                 padding: tuple[int, int], config: SpikeConvConfig) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, stride, padding)`` for channels-last ``[N, C, H, W]`` ``x``, event-driven where
    ``x`` is binary and its rate at most ``config.forward_max_rate``; call where :func:`applies` holds."""
    y, _ = spike_conv2d_op(x, weight, bias, list(stride), list(padding), config.forward_max_rate,
                           config.weight_grad_max_rate)
    return y
