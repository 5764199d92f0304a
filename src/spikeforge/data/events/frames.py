"""Events → frames ``[T, 2, H, W]``: denoise, centre crop, spatial downsampling, T-way split.

The pipeline (:meth:`FrameSpec.frames`) runs, in order:

1. bounds check - every event must lie on the sensor (else :class:`EventFormatError`);
2. ``denoise_us > 0``: drop every event that has no event at one of its 8 neighbouring pixels
   (the 3x3 neighbourhood without the pixel itself, so a lone hot pixel is removed too) within
   ``denoise_us`` microseconds before *or* after it. Vectorised with sorted
   ``(pixel, time)`` keys and one ``searchsorted`` call per neighbour offset;
3. ``crop > 0``: keep the centred ``crop x crop`` window (offset ``(W - crop) // 2``);
4. ``size > 0``: map event coordinates ``x -> x * size // W`` (same for y). Every event lands in
   exactly one output pixel, so event counts are conserved exactly; for an integer ratio
   (128 → 64) this is sum-pooling of 2x2 blocks, otherwise (128 → 48) output pixels gather 2 or
   3 source rows/columns;
5. split into ``T`` frames. ``split_by = "count"``: event ``i`` of ``N`` (file order) goes to
   frame ``i * T // N`` - equal counts up to one event. ``split_by = "time"``: event at time
   ``t`` goes to frame ``(t - t0) * T // (t1 - t0 + 1)`` with ``[t0, t1]`` the sample's time
   span (or the labelled window) - equal time windows. ``split_by = "window"``: frames of fixed
   duration ``window_us`` from ``t0``, event at ``t`` in frame ``(t - t0) // window_us``; events
   from frame ``T`` on are dropped (tonic's ``ToFrame(time_window=...)`` binning, cut at T frames);
6. per frame, polarity channel (0 = OFF, 1 = ON) and pixel: the event count.

Counts are returned as ``int32``; the dataset stores them in the smallest integer dtype that
holds them exactly (see :func:`compact_dtype`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .common import EventFormatError

POLARITIES = 2
SPLIT_MODES = ("count", "time", "window")
NEIGHBOUR_OFFSETS = tuple((dx, dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dx, dy) != (0, 0))
COMPACT_DTYPES = (np.uint8, np.int16, np.int32)  # tried in order: the first that holds the counts


def check_bounds(ev: np.ndarray, width: int, height: int, path: str | Path = "<events>") -> None:
    """Raise :class:`EventFormatError` if an event lies outside a ``width x height`` sensor."""
    if len(ev) == 0:
        return
    bad = (ev["x"] < 0) | (ev["x"] >= width) | (ev["y"] < 0) | (ev["y"] >= height) | (ev["p"] > 1)
    if bad.any():
        i = int(np.argmax(bad))
        e = ev[i]
        raise EventFormatError(path, f"event {i} (x={e['x']}, y={e['y']}, p={e['p']}) lies outside the "
                                     f"{width}x{height} sensor or has a polarity other than 0/1 "
                                     f"({int(bad.sum())} such events)")


def denoise(ev: np.ndarray, window_us: int, width: int, height: int) -> np.ndarray:
    """Keep events with another event at a neighbouring pixel within ``window_us`` (see module doc).

    Events get keys ``pixel * span + t`` (``span`` exceeds every time difference, so keys of
    different pixels never mix) and are sorted once; per neighbour offset the query keys stay
    sorted, and one ``searchsorted`` finds the first neighbour event at ``>= t - window``.
    """
    n = len(ev)
    if window_us <= 0 or n == 0:
        return ev
    padded_w = width + 2  # a one-pixel border keeps x +- 1 from wrapping into the next row
    pix = (ev["y"].astype(np.int64) + 1) * padded_w + ev["x"].astype(np.int64) + 1
    t = ev["t"] - ev["t"].min() + window_us
    span = int(t.max()) + window_us + 1
    key = pix * span + t
    order = np.argsort(key, kind="stable")
    keys = key[order]
    keep_sorted = np.zeros(n, dtype=bool)
    for dx, dy in NEIGHBOUR_OFFSETS:
        q = keys + (dy * padded_w + dx) * span
        first = np.searchsorted(keys, q - window_us, side="left")
        found = first < n
        keep_sorted[found] |= keys[first[found]] <= q[found] + window_us
    keep = np.empty(n, dtype=bool)
    keep[order] = keep_sorted
    return ev[keep]


def center_crop(ev: np.ndarray, crop: int, width: int, height: int) -> np.ndarray:
    """Events inside the centred ``crop x crop`` window, shifted to its origin."""
    if crop > width or crop > height:
        raise ValueError(f"data.events.crop={crop} is larger than the {width}x{height} sensor")
    x0, y0 = (width - crop) // 2, (height - crop) // 2
    inside = (ev["x"] >= x0) & (ev["x"] < x0 + crop) & (ev["y"] >= y0) & (ev["y"] < y0 + crop)
    out = ev[inside]
    out["x"] -= x0
    out["y"] -= y0
    return out


def downsample(ev: np.ndarray, size: int, width: int, height: int) -> np.ndarray:
    """Map coordinates onto a ``size x size`` grid (``x * size // width``); counts are conserved."""
    out = ev.copy()
    out["x"] = ev["x"].astype(np.int64) * size // width
    out["y"] = ev["y"].astype(np.int64) * size // height
    return out


def frame_index(ev: np.ndarray, time_steps: int, split_by: str,
                window: tuple[int, int] | None = None, window_us: int = 0) -> np.ndarray:
    """The frame of every event (0..T-1; ``split_by = "window"``: >= T for events after T windows);
    ``window`` = ``(t0, t1)`` inclusive for time and window splits."""
    n = len(ev)
    if split_by == "window":
        if window_us <= 0:
            raise ValueError(f"data.events.split_by = \"window\" needs data.events.window_us > 0, got {window_us}")
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        t0 = window[0] if window is not None else int(ev["t"].min())
        return (ev["t"].astype(np.int64) - t0) // window_us
    if split_by == "count":
        return np.arange(n, dtype=np.int64) * time_steps // max(n, 1)
    if split_by == "time":
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        t0, t1 = window if window is not None else (int(ev["t"].min()), int(ev["t"].max()))
        idx = (ev["t"] - t0) * time_steps // (t1 - t0 + 1)
        return np.clip(idx, 0, time_steps - 1)
    raise ValueError(f"data.events.split_by must be one of {SPLIT_MODES}, got {split_by!r}")


def to_frames(ev: np.ndarray, time_steps: int, split_by: str, width: int, height: int,
              window: tuple[int, int] | None = None, window_us: int = 0) -> np.ndarray:
    """Event counts ``int32 [T, 2, height, width]``."""
    f = frame_index(ev, time_steps, split_by, window, window_us)
    if split_by == "window":
        inside = (f >= 0) & (f < time_steps)
        ev, f = ev[inside], f[inside]
    flat = ((f * POLARITIES + ev["p"]) * height + ev["y"]) * width + ev["x"].astype(np.int64)
    counts = np.bincount(flat, minlength=time_steps * POLARITIES * height * width)
    return counts.astype(np.int32).reshape(time_steps, POLARITIES, height, width)


def compact_dtype(max_count: int) -> np.dtype:
    """The smallest of uint8 / int16 / int32 that holds counts up to ``max_count`` exactly."""
    for dt in COMPACT_DTYPES:
        if max_count <= np.iinfo(dt).max:
            return np.dtype(dt)
    raise ValueError(f"event count {max_count} does not fit int32")


@dataclass(frozen=True)
class FrameSpec:
    """Everything that turns one sample's events into frames (and enters the cache key)."""

    sensor_width: int
    sensor_height: int
    time_steps: int
    split_by: str = "count"
    size: int = 0
    crop: int = 0
    denoise_us: int = 0
    window_us: int = 0  # split_by = "window": frame duration in µs

    def __post_init__(self) -> None:
        if self.time_steps <= 0:
            raise ValueError(f"data.time_steps must be positive, got {self.time_steps}")
        if self.split_by not in SPLIT_MODES:
            raise ValueError(f"data.events.split_by must be one of {SPLIT_MODES}, got {self.split_by!r}")
        if (self.split_by == "window") != (self.window_us > 0):
            raise ValueError("data.events.window_us > 0 goes with split_by = \"window\" (and only with it), got "
                             f"split_by={self.split_by!r}, window_us={self.window_us}")
        for name in ("size", "crop", "denoise_us"):
            if getattr(self, name) < 0:
                raise ValueError(f"data.events.{name} must be >= 0, got {getattr(self, name)}")
        if self.crop > min(self.sensor_width, self.sensor_height):
            raise ValueError(f"data.events.crop={self.crop} is larger than the "
                             f"{self.sensor_width}x{self.sensor_height} sensor")

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """Output frame shape ``(T, 2, H, W)``."""
        h = self.crop or self.sensor_height
        w = self.crop or self.sensor_width
        if self.size:
            h = w = self.size
        return self.time_steps, POLARITIES, h, w

    def params(self) -> dict[str, Any]:
        return {"sensor": [self.sensor_width, self.sensor_height], "time_steps": self.time_steps,
                "split_by": self.split_by, "size": self.size, "crop": self.crop,
                "denoise_us": self.denoise_us, **({"window_us": self.window_us} if self.window_us else {})}

    def frames(self, ev: np.ndarray, path: str | Path = "<events>",
               window: tuple[int, int] | None = None) -> np.ndarray:
        """Run the whole pipeline on one sample's events → ``int32 [T, 2, H, W]``."""
        w, h = self.sensor_width, self.sensor_height
        check_bounds(ev, w, h, path)
        ev = denoise(ev, self.denoise_us, w, h)
        if self.crop:
            ev = center_crop(ev, self.crop, w, h)
            w = h = self.crop
        if self.size:
            ev = downsample(ev, self.size, w, h)
        _, _, out_h, out_w = self.shape
        return to_frames(ev, self.time_steps, self.split_by, out_w, out_h, window, self.window_us)
