"""Input encodings: a batch becomes a time-first float tensor ``[T, B, ...]`` for the network.

``direct``
    The analog input (already normalised float, ``[B, C, H, W]``) repeated at every time step;
    the first layer turns it into spikes. Returned as a view (stride 0 along T, no copies): the
    first convolution then runs once and the neuron reads the one step T times
    (``layers.Conv2d``, ``neurons.fused``). Write into it only after ``.contiguous()``.
``rate``
    Bernoulli spikes: at every step each pixel fires (1.0) with probability equal to its
    intensity in ``[0, 1]`` (pass the un-normalised intensity; ``uint8`` is divided by 255).
    The expected spike count over T steps is ``T * intensity``.
``frames``
    Event frames ``[B, T, C, H, W]`` (any dtype, e.g. event counts) transposed to
    ``[T, B, C, H, W]`` float; ``T`` must equal ``data.time_steps``.

:func:`prepare_batch` is the engine's single call: augment (training only) -> scale (normalise
for ``direct``, intensity for ``rate``, float for ``frames``) -> encode.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .augment import PIXEL_MAX, BatchAugment, normalize
from .base import DatasetInfo
from .config import DataConfig

Encoder = Callable[[torch.Tensor, int, torch.Generator | None], torch.Tensor]
FRAME_DIMS = 5


def _direct(x: torch.Tensor, time_steps: int, generator: torch.Generator | None = None) -> torch.Tensor:
    return x.float().unsqueeze(0).expand(time_steps, *x.shape)  # a view: one step, stride 0 along T


def _rate(x: torch.Tensor, time_steps: int, generator: torch.Generator | None = None) -> torch.Tensor:
    p = x.float() / PIXEL_MAX if x.dtype == torch.uint8 else x.float()
    gen_device = generator.device if generator is not None else x.device
    u = torch.rand((time_steps, *x.shape), generator=generator, device=gen_device).to(x.device)
    return (u < p.unsqueeze(0)).float()


def _frames(x: torch.Tensor, time_steps: int, generator: torch.Generator | None = None) -> torch.Tensor:
    if x.dim() != FRAME_DIMS:
        raise ValueError(f"frames encoding: expected [B, T, C, H, W], got shape {tuple(x.shape)}")
    if x.shape[1] != time_steps:
        raise ValueError(f"frames encoding: the data has T={x.shape[1]} frames but "
                         f"data.time_steps={time_steps}")
    return x.transpose(0, 1).float().contiguous()


ENCODERS: dict[str, Encoder] = {"direct": _direct, "rate": _rate, "frames": _frames}


def _encoder(encoding: str) -> Encoder:
    try:
        return ENCODERS[encoding]
    except KeyError:
        valid = ", ".join(ENCODERS)
        raise ValueError(f"data.encoding: unknown encoding {encoding!r}; valid: {valid}") from None


def encode(x: torch.Tensor, encoding: str, time_steps: int,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Encode the batch ``x`` into ``[T, B, ...]`` float (see the module docstring)."""
    if time_steps < 1:
        raise ValueError(f"data.time_steps must be >= 1, got {time_steps}")
    return _encoder(encoding)(x, time_steps, generator)


# ------------------------------------------------------------------------- full pipeline
def _scale_normalized(x: torch.Tensor, info: DatasetInfo) -> torch.Tensor:
    if not info.mean or not info.std:  # no statistics: plain [0, 1] scaling
        return x.float() / PIXEL_MAX if x.dtype == torch.uint8 else x.float()
    return normalize(x, info.mean, info.std)


def _scale_intensity(x: torch.Tensor, info: DatasetInfo) -> torch.Tensor:
    return x.float() / PIXEL_MAX if x.dtype == torch.uint8 else x.float()


def _scale_frames(x: torch.Tensor, info: DatasetInfo) -> torch.Tensor:
    return x.float()


@dataclass(frozen=True)
class Pipeline:
    """How an encoding prepares its input: the data kind it needs and the scaling it applies."""

    kind: str  # DatasetInfo.kind the encoding accepts
    scale: Callable[[torch.Tensor, DatasetInfo], torch.Tensor]


PIPELINES: dict[str, Pipeline] = {
    "direct": Pipeline("image", _scale_normalized),
    "rate": Pipeline("image", _scale_intensity),
    "frames": Pipeline("frames", _scale_frames),
}


def prepare_batch(x: torch.Tensor, info: DatasetInfo, cfg: DataConfig, augment: BatchAugment | None,
                  generator: torch.Generator | None, train: bool) -> torch.Tensor:
    """Augment (when ``train``), scale and encode a batch into the network input ``[T, B, ...]``.

    ``x`` is a ``uint8 [B, C, H, W]`` image batch or a ``[B, T, C, H, W]`` frame batch, on the
    training device; ``generator`` (on that device, or CPU) drives augmentation and rate
    encoding.
    """
    encoder = _encoder(cfg.encoding)
    pipe = PIPELINES[cfg.encoding]
    if info.kind != pipe.kind:
        valid = [name for name, p in PIPELINES.items() if p.kind == info.kind]
        raise ValueError(f"data.encoding {cfg.encoding!r} needs {pipe.kind} data, but {info.name} holds "
                         f"{info.kind}; use one of {valid}")
    if train and augment is not None:
        x = augment(x, generator)
    if cfg.time_steps < 1:
        raise ValueError(f"data.time_steps must be >= 1, got {cfg.time_steps}")
    return encoder(pipe.scale(x, info), cfg.time_steps, generator)
