"""Events → frames: exact count/time splits, count-conserving downsampling, crop, denoise."""

from __future__ import annotations

import numpy as np
import pytest
from events_helpers import events, random_events

from spikeforge.data.events import EventFormatError, FrameSpec, center_crop, denoise, downsample, to_frames
from spikeforge.data.events.frames import compact_dtype, frame_index

SENSOR = 128


def _brute_denoise(ev: np.ndarray, window: int) -> np.ndarray:
    keep = []
    for i, e in enumerate(ev):
        near = (np.abs(ev["x"].astype(int) - e["x"]) <= 1) & (np.abs(ev["y"].astype(int) - e["y"]) <= 1)
        same = (ev["x"] == e["x"]) & (ev["y"] == e["y"])
        close = np.abs(ev["t"] - e["t"]) <= window
        if (near & ~same & close).any():
            keep.append(i)
    return ev[keep]


def test_count_split_is_exact() -> None:
    ev = events([(i, 0, 1000 * i, i % 2) for i in range(10)])
    assert frame_index(ev, 3, "count").tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    fr = to_frames(ev, 3, "count", 10, 1)
    assert fr.shape == (3, 2, 1, 10) and fr.sum(axis=(1, 2, 3)).tolist() == [4, 3, 3]
    for i, (x, _, _, p) in enumerate(ev.tolist()):
        assert fr[i * 3 // 10, p, 0, x] == 1
    assert to_frames(ev[:2], 4, "count", 10, 1).sum(axis=(1, 2, 3)).tolist() == [1, 0, 1, 0]


def test_time_split_is_exact() -> None:
    ev = events([(0, 0, t, 1) for t in range(100, 200)] + [(1, 0, 250, 0)])
    fr = to_frames(ev, 4, "time", 2, 1)  # span 100..250 → windows of 151/4 µs
    expected = [int(((ev["t"] - 100) * 4 // 151 == k).sum()) for k in range(4)]
    assert fr.sum(axis=(1, 2, 3)).tolist() == expected == [38, 38, 24, 1]
    windowed = to_frames(ev, 2, "time", 2, 1, window=(100, 299))  # [100, 200) and [200, 300)
    assert windowed.sum(axis=(1, 2, 3)).tolist() == [100, 1] and windowed[1, 0, 0, 1] == 1
    with pytest.raises(ValueError, match="split_by"):
        frame_index(ev, 2, "bins")


def test_window_split_fixed_windows_from_first_event() -> None:
    """split_by = "window": 1 ms frames from the first event (tonic's ToFrame(time_window=1000)), cut at T."""
    ev = events([(0, 0, 5000, 1), (1, 0, 5999, 0), (1, 0, 6000, 1), (0, 0, 7500, 1), (1, 0, 9000, 0)])
    assert frame_index(ev, 3, "window", window_us=1000).tolist() == [0, 0, 1, 2, 4]
    fr = to_frames(ev, 3, "window", 2, 1, window_us=1000)
    assert fr.sum(axis=(1, 2, 3)).tolist() == [2, 1, 1]  # the event 4 ms in lies beyond T = 3 frames
    assert fr[0, 0, 0, 1] == 1 and fr[1, 1, 0, 1] == 1
    assert to_frames(ev, 6, "window", 2, 1, window_us=1000).sum(axis=(1, 2, 3)).tolist() == [2, 1, 1, 0, 1, 0]
    with pytest.raises(ValueError, match="window_us"):
        FrameSpec(34, 34, 3, "window")
    with pytest.raises(ValueError, match="window_us"):
        FrameSpec(34, 34, 3, "count", window_us=1000)
    assert FrameSpec(34, 34, 3, "window", window_us=1000).params()["window_us"] == 1000
    assert "window_us" not in FrameSpec(34, 34, 3).params()  # cache keys of other splits are unchanged


@pytest.mark.parametrize("size", [64, 48, 32, 17])
def test_downsampling_conserves_counts(size: int) -> None:
    ev = random_events(np.random.default_rng(size), 20_000, SENSOR, 10**6)
    small = to_frames(downsample(ev, size, SENSOR, SENSOR), 5, "count", size, size)
    full = to_frames(ev, 5, "count", SENSOR, SENSOR)
    np.testing.assert_array_equal(small.sum(axis=(2, 3)), full.sum(axis=(2, 3)))  # per frame, per polarity
    if SENSOR % size == 0:  # integer ratio: exactly sum-pooling of k x k blocks
        k = SENSOR // size
        pooled = full.reshape(5, 2, size, k, size, k).sum(axis=(3, 5))
        np.testing.assert_array_equal(small, pooled)


def test_center_crop() -> None:
    ev = events([(0, 5, 0, 1), (1, 1, 1, 0), (32, 32, 2, 1), (33, 10, 3, 1), (17, 17, 4, 0)])
    out = center_crop(ev, 32, 34, 34)
    assert out[["x", "y"]].tolist() == [(0, 0), (31, 31), (16, 16)]
    spec = FrameSpec(34, 34, 2, crop=32)
    assert spec.shape == (2, 2, 32, 32) and spec.frames(ev).sum() == 3


def test_denoise_drops_isolated_events() -> None:
    ev = events([
        (10, 10, 1000, 1), (11, 11, 1400, 0),   # diagonal neighbours 400 µs apart: both kept
        (50, 50, 1000, 1), (50, 50, 1001, 1),   # same pixel only (hot pixel): both dropped
        (70, 70, 1000, 1), (71, 70, 9000, 1),   # neighbours but 8 ms apart: both dropped
        (100, 3, 5000, 0),                      # alone: dropped
        (0, 0, 7000, 1), (1, 0, 7500, 1),       # sensor corner, neighbours: kept
    ])
    out = denoise(ev, 500, SENSOR, SENSOR)
    assert out[["x", "y"]].tolist() == [(10, 10), (11, 11), (0, 0), (1, 0)]
    assert len(denoise(ev, 0, SENSOR, SENSOR)) == len(ev)


def test_denoise_matches_brute_force() -> None:
    rng = np.random.default_rng(7)
    ev = random_events(rng, 800, 24, 200_000)
    np.testing.assert_array_equal(denoise(ev, 3000, 24, 24), _brute_denoise(ev, 3000))


def test_frame_spec_validation_and_bounds() -> None:
    with pytest.raises(ValueError, match="split_by"):
        FrameSpec(34, 34, 4, split_by="rows")
    with pytest.raises(ValueError, match="crop=40"):
        FrameSpec(34, 34, 4, crop=40)
    with pytest.raises(ValueError, match="time_steps"):
        FrameSpec(34, 34, 0)
    with pytest.raises(EventFormatError, match=r"sample\.bin: event 1 \(x=34"):
        FrameSpec(34, 34, 2).frames(events([(0, 0, 0, 0), (34, 0, 1, 1)]), "sample.bin")


def test_compact_dtype() -> None:
    assert compact_dtype(255) == np.uint8 and compact_dtype(256) == np.int16
    assert compact_dtype(10**6) == np.int32
