"""Batch augmentation: exact crop/flip/cutout geometry, frames, dtypes and reproducibility."""

from __future__ import annotations

import pytest
import torch

from spikeforge.data.augment import (
    BatchAugment,
    crop_at,
    cutout_at,
    flip_where,
    normalize,
    random_crop,
    random_cutout,
    random_flip,
)
from spikeforge.data.config import DataConfig


def images(b: int = 3, c: int = 2, h: int = 5, w: int = 6, dtype: torch.dtype = torch.uint8) -> torch.Tensor:
    return (torch.arange(b * c * h * w) % 250 + 1).to(dtype).view(b, c, h, w)  # no zeros in the content


def reference_crop(img: torch.Tensor, dy: int, dx: int, p: int) -> torch.Tensor:
    """out[i, j] = img[i + dy - p, j + dx - p] or 0 outside (one sample, slow and obvious)."""
    out = torch.zeros_like(img)
    h, w = img.shape[-2:]
    for i in range(h):
        for j in range(w):
            si, sj = i + dy - p, j + dx - p
            if 0 <= si < h and 0 <= sj < w:
                out[..., i, j] = img[..., si, sj]
    return out


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_crop_shifts_content(dtype: torch.dtype) -> None:
    x = images(dtype=dtype)
    p = 2
    dy, dx = torch.tensor([0, 2, 4]), torch.tensor([4, 2, 1])
    out = crop_at(x, dy, dx, p)
    assert out.dtype == dtype and out.shape == x.shape
    for b in range(3):
        assert torch.equal(out[b], reference_crop(x[b], int(dy[b]), int(dx[b]), p))
    assert torch.equal(out[1], x[1])  # offset p = no shift
    # dy = 0: content moves down by p, the top p rows are padding
    assert (out[0, :, :p] == 0).all() and torch.equal(out[0, :, p:, : -p], x[0, :, : -p, p:])


def test_flip_exact() -> None:
    x = images()
    out = flip_where(x, torch.tensor([True, False, True]))
    assert torch.equal(out[0], x[0].flip(-1)) and torch.equal(out[1], x[1])
    assert torch.equal(out[2, :, :, 0], x[2, :, :, -1])


def test_cutout_area() -> None:
    x = images(b=3, h=8, w=8)
    out = cutout_at(x, torch.tensor([4, 0, 7]), torch.tensor([4, 0, 6]), 4)
    zeros = (out == 0).all(dim=1).flatten(1).sum(1)  # zeroed pixels per sample (all channels)
    # centred inside: 4x4; at the corner (0, 0): rows/cols -2..1 clip to 2x2; at (7, 6): rows 5..7 x cols 4..7
    assert zeros.tolist() == [16, 4, 12]
    assert (out[0, :, 2:6, 2:6] == 0).all() and torch.equal(out[0, :, :2], x[0, :, :2])
    assert torch.equal(out != 0, (x != 0) & (out != 0))  # nothing outside the square changes
    rnd = random_cutout(images(b=50, h=8, w=8), 3, torch.Generator().manual_seed(0))
    counts = (rnd == 0).all(dim=1).flatten(1).sum(1)
    assert counts.max() == 9 and counts.min() >= 4  # 3x3, clipped at most to 2x2


def test_frames_share_one_transform_across_time() -> None:
    b, t = 6, 4
    base = images(b=b, c=2, h=7, w=7, dtype=torch.float32)
    frames = torch.stack([base * (k + 1) for k in range(t)], dim=1)  # [B, T, C, H, W]
    aug = BatchAugment(crop_padding=2, flip=True, cutout=3)
    out = aug(frames, torch.Generator().manual_seed(3))
    assert out.shape == frames.shape
    for k in range(t):
        assert torch.equal(out[:, k], out[:, 0] * (k + 1))  # same crop/flip/cutout at every step
    assert not torch.equal(out[:, 0], base)


def test_reproducible_and_random() -> None:
    x = images(b=64, h=8, w=8)
    aug = BatchAugment.from_config(DataConfig(crop_padding=2, flip=True, cutout=2))
    a = aug(x, torch.Generator().manual_seed(7))
    b = aug(x, torch.Generator().manual_seed(7))
    c = aug(x, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    flipped = random_flip(x, torch.Generator().manual_seed(1))
    n_flipped = sum(torch.equal(flipped[i], x[i].flip(-1)) for i in range(64))
    assert 16 < n_flipped < 48
    crops = random_crop(x, 1, torch.Generator().manual_seed(2))
    assert (crops == x).flatten(1).all(1).sum() < 64  # most samples moved
    assert BatchAugment()(x) is x and not BatchAugment().active


def test_errors() -> None:
    with pytest.raises(ValueError, match="expected \\[B, C, H, W\\] or \\[B, T, C, H, W\\]"):
        BatchAugment(flip=True)(torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="crop_padding and data.cutout must be >= 0"):
        BatchAugment(crop_padding=-1)


def test_normalize() -> None:
    x = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 1, 1, 3).expand(1, 2, 1, 3)
    out = normalize(x, (0.2, 0.5), (0.5, 0.25))
    assert out.dtype == torch.float32
    assert torch.allclose(out[0, 0, 0], torch.tensor([-0.4, 0.0, 1.6]))
    assert torch.allclose(out[0, 1, 0], torch.tensor([-2.0, -1.2, 2.0]))
    assert torch.allclose(normalize(x.float() / 255, (0.2, 0.5), (0.5, 0.25)), out)
    frames = x.unsqueeze(1).expand(1, 3, 2, 1, 3)
    assert torch.allclose(normalize(frames, (0.2, 0.5), (0.5, 0.25))[:, 2], out)
    with pytest.raises(ValueError, match="mean/std have 1/1 values, input has 2 channels"):
        normalize(x, (0.1,), (0.2,))
