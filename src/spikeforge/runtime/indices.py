"""Where the events are: the CSR index lists the sparse kernels multiply (their first step).

    linear  x ∈ {0,1}^{N×F}                   → crow [N + 1], cols [nnz]: row n lists the inputs that spiked
    conv    x ∈ {0,1}^{N×C×H×W}, a geometry   → the sparse im2col: crow [N·Ho·Wo + 1], cols [nnz], row =
            output position, column = tap·C + channel (see :mod:`spikeforge.runtime.kernels`)

The conv lists are built without a sort. The events are listed channels-last (``(n, y, x)``
then ``c``), so the events of one input position are one contiguous segment of the channel list
``ch``; row ``r`` is the concatenation over taps ``k`` of the segment of the input position
``q = source[r, k]`` the tap reads, its channels shifted by ``k·C``:

    lens[r, k] = count[q]                          (a tap outside the input reads a sentinel with count 0)
    crow       = [0, cumsum_r Σ_k lens[r, k]]
    cols       = ch[start[q] + i] + k·C            for i < lens[r, k], (r, k) in row-major order

Two implementations of this arithmetic, one per device kind, in one table (:data:`BUILDERS`):
``numpy`` on CPU (``np.flatnonzero`` on a bool array, ``np.repeat``, ``np.take``) and ``torch``
elsewhere (CUDA). On the development CPU the numpy one is 5–10× faster on one thread: torch's
CPU ``nonzero`` and integer indexing cost 2–30 ns per element there (``bench/event_runtime.py``
shows the per-layer times). The input is a bool tensor (the runtime's neurons emit bool spikes);
a float 0/1 tensor is compared with 0 first.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

BATCH_SIZES_KEPT = 8  # batched sources cached per geometry before the cache is cleared


@dataclass
class ConvGeometry:
    """Per output position and tap: the input position it reads (``-1``: outside, zero padding).

    ``source[(oy·Wo + ox), (i·kW + j)] = y·W + x`` with ``y = oy·s − p + i·d``, ``x = ox·s − p + j·d``.
    """

    out_hw: tuple[int, int]
    in_hw: tuple[int, int]
    source: torch.Tensor  # [Ho·Wo, kH·kW] int64
    reads: torch.Tensor  # [H·W]: how many (output position, tap) pairs read each input position
    _batched: dict[int, torch.Tensor] = field(default_factory=dict, repr=False, compare=False)
    _source32: torch.Tensor | None = field(default=None, repr=False, compare=False)
    _inverse32: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)  # row-block threads

    @property
    def taps(self) -> int:
        return int(self.source.shape[1])

    def source32(self) -> torch.Tensor:
        """``source`` as contiguous int32 on the CPU (the compiled kernels' table), made once."""
        with self._lock:
            if self._source32 is None:
                self._source32 = self.source.to("cpu", torch.int32).contiguous()
        return self._source32

    def inverse32(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``source`` read backwards, int32 on the CPU, made once: ``(ptr [H·W + 1], pairs [reads, 2])`` —
        the ``(output position, tap)`` pairs reading input position ``q`` are ``pairs[ptr[q]:ptr[q + 1]]``."""
        with self._lock:
            if self._inverse32 is None:
                src = self.source.cpu()
                r, k = (src >= 0).nonzero(as_tuple=True)
                order = torch.argsort(src[r, k], stable=True)
                ptr = F.pad(self.reads.cpu().cumsum(0), (1, 0))  # reads: the pairs per input position
                pairs = torch.stack([r[order], k[order]], 1)
                self._inverse32 = (ptr.to(torch.int32).contiguous(), pairs.to(torch.int32).contiguous())
        return self._inverse32

    def batched(self, n: int) -> torch.Tensor:
        """``source`` for ``n`` images, flattened ``[n·Ho·Wo·K]``, as input positions of the whole
        batch (``m·H·W + q``); outside taps read the sentinel position ``n·H·W``. Cached per ``n``
        (a few sizes: the thread blocks of one batch differ by at most one image)."""
        with self._lock:
            src = self._batched.get(n)
            if src is None:
                hw = self.in_hw[0] * self.in_hw[1]
                src = self.source[None] + (torch.arange(n, device=self.source.device) * hw)[:, None, None]
                src = torch.where(self.source[None] >= 0, src, n * hw).reshape(-1)
                if len(self._batched) >= BATCH_SIZES_KEPT:
                    self._batched = {}
                self._batched[n] = src
        return src


def conv_geometry(in_hw: tuple[int, int], kernel: tuple[int, int], stride: list[int], padding: list[int],
                  dilation: list[int], device: torch.device) -> ConvGeometry:
    h, w = in_hw
    kh, kw = kernel
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    oy = torch.arange(ho, device=device)[:, None, None, None]
    ox = torch.arange(wo, device=device)[None, :, None, None]
    i = torch.arange(kh, device=device)[None, None, :, None]
    j = torch.arange(kw, device=device)[None, None, None, :]
    y = oy * stride[0] - padding[0] + i * dilation[0]
    xx = ox * stride[1] - padding[1] + j * dilation[1]
    inside = (y >= 0) & (y < h) & (xx >= 0) & (xx < w)
    source = torch.where(inside, y * w + xx, -1).reshape(ho * wo, kh * kw)
    return ConvGeometry((ho, wo), (h, w), source, torch.bincount(source[source >= 0], minlength=h * w))


def as_bool(x: torch.Tensor) -> torch.Tensor:
    """The events of a binary tensor as bool (a bool tensor is returned as is)."""
    return x if x.dtype == torch.bool else x != 0


class IndexBuilder(Protocol):
    def count(self, xb: torch.Tensor) -> int: ...
    def linear(self, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...
    def conv(self, xb: torch.Tensor, geom: ConvGeometry) -> tuple[torch.Tensor, torch.Tensor]: ...


def _channels_last(xb: torch.Tensor) -> torch.Tensor:
    """``[N, C, H, W]`` bool → ``[N·H·W, C]`` contiguous (a view when ``xb`` is channels-last already)."""
    n, c, h, w = xb.shape
    return xb.permute(0, 2, 3, 1).contiguous().reshape(n * h * w, c)


NUMPY_BRANCHY_UP_TO = 0.10  # numpy (1.x, 2.x) finds the nonzeros of a bool array with one branch per element
# up to this density (fast when nearly empty, slow near it: mispredictions) and branch-free above it
BRANCH_FREE_FROM = 0.03  # from this density the branch-free loop on a padded copy is faster (measured: 1M bools,
# 2.9 → 1.3 ms at 10 %, 1.7 → 1.35 ms at 5 %, 1.2 → 1.4 ms at 3 %)
PAD_SLACK = 64


def flat_events(a: np.ndarray) -> np.ndarray:
    """``np.flatnonzero(a)`` of a contiguous bool array, through numpy's branch-free loop where that is faster:
    between the two densities above, a copy padded with enough ``True`` to pass numpy's switch is scanned
    and the padding's indices dropped (the result does not depend on numpy's switch, only the speed)."""
    a = a.reshape(-1)
    n = a.size
    cnt = int(np.count_nonzero(a))
    if not BRANCH_FREE_FROM * n < cnt <= NUMPY_BRANCHY_UP_TO * n:
        return np.flatnonzero(a)
    pad = int((NUMPY_BRANCHY_UP_TO * n - cnt) / (1.0 - NUMPY_BRANCHY_UP_TO)) + PAD_SLACK
    buf = np.empty(n + pad, dtype=bool)
    buf[:n] = a
    buf[n:] = True
    return np.flatnonzero(buf)[:cnt]


class NumpyBuilder:
    """CPU: the index arithmetic in numpy, on zero-copy views of the torch tensors."""

    def count(self, xb: torch.Tensor) -> int:
        return int(np.count_nonzero(xb.numpy())) if xb.is_contiguous() else int(xb.sum())

    def linear(self, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, f = xb.shape
        idx = flat_events(xb.contiguous().numpy())
        crow = np.searchsorted(idx, np.arange(n + 1, dtype=np.int64) * f)
        cols = idx - np.repeat(np.arange(n, dtype=np.int64) * f, np.diff(crow))
        return torch.from_numpy(crow), torch.from_numpy(cols)

    def conv(self, xb: torch.Tensor, geom: ConvGeometry) -> tuple[torch.Tensor, torch.Tensor]:
        n, c, h, w = xb.shape
        k, positions = geom.taps, n * h * w
        pos, ch = np.divmod(flat_events(_channels_last(xb).numpy()), c)
        count = np.bincount(pos, minlength=positions + 1)  # + the sentinel position (count 0)
        start = np.cumsum(count) - count
        src = geom.batched(n).numpy()
        lens = count.take(src)
        crow = np.zeros(lens.size // k + 1, dtype=np.int64)
        np.cumsum(lens.reshape(-1, k).sum(1), out=crow[1:])
        nnz = int(crow[-1])
        base = np.repeat(start.take(src) - (np.cumsum(lens) - lens), lens)
        base += np.arange(nnz, dtype=np.int64)
        cols = ch.take(base)
        cols += np.repeat(np.tile(np.arange(k, dtype=np.int64) * c, lens.size // k), lens)
        return torch.from_numpy(crow), torch.from_numpy(cols)


class TorchBuilder:
    """Any device (used on CUDA): the same arithmetic in torch."""

    def count(self, xb: torch.Tensor) -> int:
        return int(xb.sum())

    def linear(self, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n_idx, cols = xb.nonzero(as_tuple=True)
        return F.pad(torch.bincount(n_idx, minlength=xb.shape[0]).cumsum(0), (1, 0)), cols

    def conv(self, xb: torch.Tensor, geom: ConvGeometry) -> tuple[torch.Tensor, torch.Tensor]:
        n, c, h, w = xb.shape
        k, positions, dev = geom.taps, n * h * w, xb.device
        pos, ch = _channels_last(xb).nonzero(as_tuple=True)
        count = torch.bincount(pos, minlength=positions + 1)
        start = count.cumsum(0) - count
        src = geom.batched(n).to(dev)
        lens = count[src]
        crow = F.pad(lens.reshape(-1, k).sum(1).cumsum(0), (1, 0))
        nnz = int(crow[-1])
        base = torch.repeat_interleave(start[src] - (lens.cumsum(0) - lens), lens, output_size=nnz)
        taps = (torch.arange(k, device=dev) * c).repeat(lens.numel() // k)
        cols = ch[base + torch.arange(nnz, device=dev)] + torch.repeat_interleave(taps, lens, output_size=nnz)
        return crow, cols


BUILDERS: dict[str, IndexBuilder] = {"numpy": NumpyBuilder(), "torch": TorchBuilder()}


def builder_for(device: torch.device, name: str = "auto") -> IndexBuilder:
    """``auto``: numpy on CPU, torch elsewhere; or a name of :data:`BUILDERS`."""
    if name == "auto":
        name = "numpy" if device.type == "cpu" else "torch"
    if name not in BUILDERS:
        raise ValueError(f"index builder must be auto or one of {', '.join(BUILDERS)}, got {name!r}")
    if name == "numpy" and device.type != "cpu":
        raise ValueError(f"the numpy index builder runs on the CPU, not on {device}")
    return BUILDERS[name]
