"""Per-batch data augmentation on the training device, vectorised over the batch.

Inputs are images ``[B, C, H, W]`` or frame sequences ``[B, T, C, H, W]`` of any dtype
(``uint8`` or float). A frame sequence gets one transform per sample, the same for all its T
frames (the frames are folded into the channel axis). Random numbers come from the given
``torch.Generator`` (drawn on its device, then moved to the input's device), so a seeded
generator reproduces the batch exactly.

* random crop: zero-pad by ``p`` on every side, then take an ``H x W`` window at a random
  offset in ``[0, 2p]`` per axis: a pixel ``(i, j)`` of the output is the input pixel
  ``(i + dy - p, j + dx - p)``, or 0 outside the image. Implemented with one gather.
* horizontal flip: each sample is mirrored left-right with probability 1/2.
* cutout: a ``s x s`` square centred at a uniformly random pixel, clipped at the borders, is set
  to 0 (in the pixel space of the input; :func:`prepare_batch` augments before normalising, so
  0 is black).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import DataConfig

IMAGE_DIMS = 4  # [B, C, H, W]
FRAME_DIMS = 5  # [B, T, C, H, W]
FLIP_PROBABILITY = 0.5
PIXEL_MAX = 255.0  # uint8 full scale


def _as_images(x: torch.Tensor) -> torch.Tensor:
    """View ``[B, T, C, H, W]`` as ``[B, T*C, H, W]`` (images pass through)."""
    if x.dim() == FRAME_DIMS:
        return x.reshape(x.shape[0], -1, *x.shape[-2:])
    if x.dim() != IMAGE_DIMS:
        raise ValueError(f"augment: expected [B, C, H, W] or [B, T, C, H, W], got shape {tuple(x.shape)}")
    return x


def _randint(high: int, n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    gen_device = generator.device if generator is not None else device
    return torch.randint(0, high, (n,), generator=generator, device=gen_device).to(device)


def _rand(n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    gen_device = generator.device if generator is not None else device
    return torch.rand(n, generator=generator, device=gen_device).to(device)


def crop_at(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, padding: int) -> torch.Tensor:
    """Crop every sample of ``x`` (images or frames) at its offsets ``(dy, dx)`` in ``[0, 2p]``."""
    imgs = _as_images(x)
    b, _, h, w = imgs.shape
    padded = torch.nn.functional.pad(imgs, (padding, padding, padding, padding))
    rows = dy[:, None] + torch.arange(h, device=x.device)  # [B, H] rows of the padded image
    cols = dx[:, None] + torch.arange(w, device=x.device)  # [B, W]
    batch = torch.arange(b, device=x.device)[:, None, None]
    out = padded[batch, :, rows[:, :, None], cols[:, None, :]]  # [B, H, W, C'] (advanced dims first)
    return out.permute(0, 3, 1, 2).reshape(x.shape)


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    if padding <= 0:
        return x
    n = x.shape[0]
    span = 2 * padding + 1
    dy, dx = _randint(span, n, generator, x.device), _randint(span, n, generator, x.device)
    return crop_at(x, dy, dx, padding)


def flip_where(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror (last axis) the samples where ``mask`` (bool ``[B]``) is true."""
    shape = (-1,) + (1,) * (x.dim() - 1)
    return torch.where(mask.view(shape), x.flip(-1), x)


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    return flip_where(x, _rand(x.shape[0], generator, x.device) < FLIP_PROBABILITY)


def cutout_at(x: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor, size: int) -> torch.Tensor:
    """Zero the ``size x size`` square centred at ``(cy, cx)`` (clipped) in every sample."""
    h, w = x.shape[-2:]
    lo_y, lo_x = cy - size // 2, cx - size // 2
    ys = torch.arange(h, device=x.device)
    xs = torch.arange(w, device=x.device)
    in_y = (ys[None, :] >= lo_y[:, None]) & (ys[None, :] < lo_y[:, None] + size)  # [B, H]
    in_x = (xs[None, :] >= lo_x[:, None]) & (xs[None, :] < lo_x[:, None] + size)  # [B, W]
    mask = in_y[:, :, None] & in_x[:, None, :]  # [B, H, W]
    shape = (x.shape[0],) + (1,) * (x.dim() - 3) + (h, w)
    return x.masked_fill(mask.view(shape), 0)


def random_cutout(x: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    if size <= 0:
        return x
    h, w = x.shape[-2:]
    n = x.shape[0]
    cy, cx = _randint(h, n, generator, x.device), _randint(w, n, generator, x.device)
    return cutout_at(x, cy, cx, size)


@dataclass
class BatchAugment:
    """Random crop (zero padding ``crop_padding``), horizontal flip and cutout, in that order."""

    crop_padding: int = 0
    flip: bool = False
    cutout: int = 0

    def __post_init__(self) -> None:
        if self.crop_padding < 0 or self.cutout < 0:
            raise ValueError(f"data.crop_padding and data.cutout must be >= 0, got {self.crop_padding} and "
                             f"{self.cutout}")

    @classmethod
    def from_config(cls, cfg: DataConfig) -> BatchAugment:
        return cls(cfg.crop_padding, cfg.flip, cfg.cutout)

    @property
    def active(self) -> bool:
        return self.crop_padding > 0 or self.flip or self.cutout > 0

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _as_images(x)  # shape check
        if self.crop_padding > 0:
            x = random_crop(x, self.crop_padding, generator)
        if self.flip:
            x = random_flip(x, generator)
        if self.cutout > 0:
            x = random_cutout(x, self.cutout, generator)
        return x



def normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """``(x / 255 - mean) / std`` per channel, as float32 (float input is taken to be in [0, 1]).

    Channels are the axis ``-3``, so images ``[B, C, H, W]`` and frames ``[B, T, C, H, W]`` work.
    """
    c = x.shape[-3]
    if len(mean) != c or len(std) != c:
        raise ValueError(f"normalize: mean/std have {len(mean)}/{len(std)} values, input has {c} channels")
    if any(s <= 0 for s in std):
        raise ValueError(f"normalize: std must be > 0, got {std}")
    xf = x.float() / PIXEL_MAX if x.dtype == torch.uint8 else x.float()
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(c, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(c, 1, 1)
    return (xf - m) / s
