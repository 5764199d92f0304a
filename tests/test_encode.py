"""Input encodings and the prepare_batch pipeline."""

from __future__ import annotations

import pytest
import torch

from spikeforge.data.augment import BatchAugment, normalize
from spikeforge.data.base import DatasetInfo
from spikeforge.data.config import DataConfig
from spikeforge.data.encode import ENCODERS, encode, prepare_batch

IMAGE_INFO = DatasetInfo("toy", 10, 1, 4, "image", (0.5,), (0.25,))
FRAME_INFO = DatasetInfo("events", 10, 2, 4, "frames")


def test_direct_repeats() -> None:
    x = torch.randn(3, 1, 4, 4)
    out = encode(x, "direct", 5)
    assert out.shape == (5, 3, 1, 4, 4) and out.stride(0) == 0  # one step expanded over T: no copies
    assert all(torch.equal(out[t], x) for t in range(5))


def test_rate_mean_matches_intensity() -> None:
    p = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0]).view(1, 1, 1, 5).expand(200, 1, 1, 5)
    out = encode(p, "rate", 50, torch.Generator().manual_seed(0))
    assert out.shape == (50, 200, 1, 1, 5) and out.dtype == torch.float32
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    rate = out.mean(dim=(0, 1)).flatten()
    assert rate[0] == 0 and rate[-1] == 1
    assert torch.allclose(rate, p[0].flatten(), atol=0.02)  # 10,000 draws per pixel: std <= 0.005
    u8 = (p * 255).round().to(torch.uint8)
    from_u8 = encode(u8, "rate", 50, torch.Generator().manual_seed(0))
    assert torch.equal(from_u8, encode(u8.float() / 255, "rate", 50, torch.Generator().manual_seed(0)))
    again = encode(p, "rate", 50, torch.Generator().manual_seed(0))
    assert torch.equal(again, out)


def test_frames_transposes() -> None:
    x = torch.randint(0, 5, (2, 3, 2, 4, 4), dtype=torch.uint8)
    out = encode(x, "frames", 3)
    assert out.shape == (3, 2, 2, 4, 4) and out.dtype == torch.float32
    assert torch.equal(out[1, 0], x[0, 1].float())
    with pytest.raises(ValueError, match="T=3 frames but data.time_steps=4"):
        encode(x, "frames", 4)
    with pytest.raises(ValueError, match="expected \\[B, T, C, H, W\\]"):
        encode(x[0], "frames", 3)


def test_bad_names_and_steps() -> None:
    with pytest.raises(ValueError, match="unknown encoding 'poisson'; valid: direct, rate, frames"):
        encode(torch.zeros(1, 1, 2, 2), "poisson", 2)
    with pytest.raises(ValueError, match="time_steps must be >= 1"):
        encode(torch.zeros(1, 1, 2, 2), "direct", 0)
    assert set(ENCODERS) == {"direct", "rate", "frames"}


def test_prepare_batch_pipeline() -> None:
    x = torch.randint(0, 256, (4, 1, 4, 4), dtype=torch.uint8)
    cfg = DataConfig(time_steps=3, encoding="direct", crop_padding=1, flip=True)
    aug = BatchAugment.from_config(cfg)
    ev = prepare_batch(x, IMAGE_INFO, cfg, aug, None, train=False)  # no augmentation at evaluation
    assert ev.shape == (3, 4, 1, 4, 4) and torch.allclose(ev[2], normalize(x, (0.5,), (0.25,)))
    tr = prepare_batch(x, IMAGE_INFO, cfg, aug, torch.Generator().manual_seed(0), train=True)
    ref = normalize(aug(x, torch.Generator().manual_seed(0)), (0.5,), (0.25,))
    assert torch.equal(tr[0], ref)
    rate = prepare_batch(x, IMAGE_INFO, DataConfig(time_steps=2, encoding="rate"), None,
                         torch.Generator().manual_seed(1), train=True)
    assert torch.equal(rate, encode(x.float() / 255, "rate", 2, torch.Generator().manual_seed(1)))
    frames = torch.randint(0, 3, (4, 2, 2, 4, 4), dtype=torch.uint8)
    fr = prepare_batch(frames, FRAME_INFO, DataConfig(time_steps=2, encoding="frames", flip=True), None, None,
                       train=True)
    assert torch.equal(fr, frames.transpose(0, 1).float())


def test_prepare_batch_kind_mismatch() -> None:
    with pytest.raises(ValueError, match="'direct' needs image data, but events holds frames; use one of"):
        prepare_batch(torch.zeros(1, 2, 2, 4, 4), FRAME_INFO, DataConfig(encoding="direct"), None, None, True)
    with pytest.raises(ValueError, match="unknown encoding 'spikes'"):
        prepare_batch(torch.zeros(1, 1, 4, 4), IMAGE_INFO, DataConfig(encoding="spikes"), None, None, True)
