"""Pure event-driven kernels of one synaptic layer on a binary input (all time steps at once).

The runtime flattens a synaptic layer's input over all ``T`` steps and ``B`` samples (the
previous neuron layer has run every step before it), so one call handles ``N = T·B`` rows.

Linear (``x ∈ {0,1}^{N×F}``, ``W ∈ R^{O×F}``):

    y_n = bias + Σ_{i : x_{n,i} = 1} W[:, i]                  (one weight row of ``Wᵀ`` per event)

Conv (``x ∈ {0,1}^{N×C×H×W}``, ``W ∈ R^{O×C×kH×kW}``, stride ``s``, padding ``p``, dilation ``d``):

    y[n, :, oy, ox] = bias (+ bias_map) + Σ_{taps k=(i,j)} Σ_{c : x[n, c, y_k, x_k] = 1} W[:, c, i, j]
    with y_k = oy·s − p + i·d, x_k = ox·s − p + j·d inside the input

Methods (``method=``):

- ``"csr"`` — the events as a compressed-sparse-row matrix ``S`` with values 1, times the
  weight table: linear ``S ∈ {0,1}^{N×F}`` times ``Wᵀ``; conv the *sparse im2col*
  ``S ∈ {0,1}^{N·Ho·Wo × kH·kW·C}`` (row = output position, column = tap·C + channel) times
  ``W`` laid out as ``[kH·kW·C, O]``. ``S`` is built already sorted, without a sort: the events
  are listed channels-last (``(n, y, x)`` then ``c``), so the events of one input position are
  one contiguous segment; row ``r`` of ``S`` is the concatenation over taps of the segment of
  the input position the tap reads (a precomputed :class:`ConvGeometry`). The index lists come
  from :mod:`spikeforge.runtime.indices` (numpy on CPU, torch elsewhere).
- ``"scatter"`` — the same (row, column) pairs, the weight rows gathered and ``index_add_``-ed
  (chunked, so memory stays bounded); works for every dtype, so it is the integer method.
- ``"dense"`` — ``F.linear`` / ``F.conv2d`` on the binary input (faster above a density
  crossover); the accumulations are still counted from the events.

Every method returns ``(y, accumulations)`` with ``accumulations = O · #(event, tap) pairs that
reach an output`` (linear: ``O · #events``) — the SOPs of :mod:`spikeforge.energy`.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from .indices import ConvGeometry, IndexBuilder, as_bool, builder_for, conv_geometry

__all__ = ["ConvGeometry", "conv_geometry", "conv_pair_count", "event_conv", "event_linear", "row_pointers",
           "scatter_rows", "weight_tiles"]

SCATTER_CHUNK = 1 << 15  # (row, weight-row) pairs gathered at once by the scatter method
LINEAR_TILE = 32  # output columns per sparse product: a [F, 32] float64 tile of Wᵀ stays in L2 (measured best)
METHODS = ("csr", "scatter", "dense")
# torch warns once per process that sparse CSR is "in beta"; silenced by message, once, at import: a
# `catch_warnings` around each call is not thread-safe (the conv row blocks run on threads) and could leave
# every UserWarning of the process switched off
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
INT32_INDEX_LIMIT = 2**31 - 1


def _quiet_csr(s: torch.Tensor, table: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return s @ table if bias is None else torch.addmm(bias, s, table)


def _csr(crow: torch.Tensor, cols: torch.Tensor, shape: tuple[int, int], dtype: torch.dtype) -> torch.Tensor:
    """The events as a CSR matrix of ones; int32 indices where they fit (the CPU sparse product converts
    int64 indices to int32 on every call — once per weight tile — otherwise)."""
    if crow.device.type == "cpu" and max(int(crow[-1]), *shape) < INT32_INDEX_LIMIT:
        crow, cols = crow.to(torch.int32), cols.to(torch.int32)
    ones = torch.ones(cols.numel(), dtype=dtype, device=cols.device)
    return torch.sparse_csr_tensor(crow, cols, ones, shape, check_invariants=False)


def row_pointers(counts: torch.Tensor) -> torch.Tensor:
    """CSR row pointers ``[0, c_0, c_0 + c_1, …]`` from per-row counts."""
    return F.pad(counts.cumsum(0), (1, 0))


def scatter_rows(n_rows: int, rows: torch.Tensor, cols: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """``out[r] = Σ_{pairs (r, k)} table[k]`` in ``table``'s dtype (exact in int64), chunk by chunk."""
    out = torch.zeros(n_rows, table.shape[1], dtype=table.dtype, device=table.device)
    for i in range(0, rows.numel(), SCATTER_CHUNK):
        out.index_add_(0, rows[i:i + SCATTER_CHUNK], table[cols[i:i + SCATTER_CHUNK]])
    return out


def _check(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"event kernel method must be one of {', '.join(METHODS)}, got {method!r}")


def weight_tiles(w_t: torch.Tensor, tile: int = LINEAR_TILE) -> list[torch.Tensor]:
    """``Wᵀ [F, O]`` as contiguous column tiles ``[F, ≤ tile]`` (one sparse product each)."""
    return [w_t[:, i:i + tile].contiguous() for i in range(0, w_t.shape[1], tile)]


def event_linear(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None,
                 w_t: torch.Tensor | None = None, method: str = "csr", nnz: int | None = None,
                 tiles: list[torch.Tensor] | None = None,
                 builder: IndexBuilder | None = None) -> tuple[torch.Tensor, int]:
    """``x [N, F]`` binary (bool, or 0/1 floats) → ``(x·Wᵀ + bias, accumulations)``; ``w_t`` = ``Wᵀ``
    contiguous ``[F, O]``.

    ``w`` and ``bias`` may be int64 (exact integer accumulation; only ``"scatter"`` then).
    ``nnz``: the number of events if already known (saves a pass of the dense method).
    ``tiles``: :func:`weight_tiles` of ``Wᵀ`` for ``"csr"``: the product runs tile by tile, so the
    weight rows it sums stay in cache while every event row reads them (worth it above a few
    percent density; below, the per-call cost of many products outweighs it).
    ``builder``: the :mod:`~spikeforge.runtime.indices` implementation (default: by device).
    """
    _check(method)
    n, o = x.shape[0], w.shape[0]
    xb = as_bool(x)
    build = builder or builder_for(x.device)
    if method == "dense":
        return F.linear(x.to(w.dtype), w, bias), (build.count(xb) if nnz is None else nnz) * o
    w_t = w.t().contiguous() if w_t is None else w_t
    crow, f_idx = build.linear(xb)
    crow, f_idx = crow.to(w_t.device), f_idx.to(w_t.device)
    if method == "csr":
        s = _csr(crow, f_idx, (n, x.shape[1]), w_t.dtype)
        parts = [_quiet_csr(s, t, None) for t in (tiles or [w_t])]
        out = parts[0] if len(parts) == 1 else torch.cat(parts, 1)
    else:
        n_idx = torch.repeat_interleave(torch.arange(n, device=w_t.device), crow.diff(), output_size=f_idx.numel())
        out = scatter_rows(n, n_idx, f_idx, w_t)
    if bias is not None:
        out += bias
    return out, int(f_idx.numel()) * o


def conv_pair_count(xb: torch.Tensor, geom: ConvGeometry) -> int:
    """``#(event, tap) pairs reaching an output`` without building them (for the dense method)."""
    n, _, h, w = xb.shape
    per_pos = xb.sum(1, dtype=torch.int64).reshape(n, h * w).sum(0)  # events per input position
    return int((per_pos * geom.reads.to(per_pos.device)).sum())  # no int64 dot on CUDA


def event_conv(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None, bias_map: torch.Tensor | None,
               stride: list[int], padding: list[int], dilation: list[int],
               taps: torch.Tensor | None = None, method: str = "csr",
               geom: ConvGeometry | None = None, builder: IndexBuilder | None = None) -> tuple[torch.Tensor, int]:
    """``x [N, C, H, W]`` binary (bool, or 0/1 floats) → ``(conv2d(x, W) + bias [+ bias_map], accumulations)``.

    ``taps`` is ``W`` as ``[kH, kW, C, O]`` contiguous, ``geom`` the layer's :func:`conv_geometry`
    (both computed if not given). Integer ``w``/``bias``/``bias_map`` (int64) need ``"scatter"``.
    """
    _check(method)
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    geom = conv_geometry((h, wd), (kh, kw), stride, padding, dilation, x.device) if geom is None else geom
    ho, wo = geom.out_hw
    xb = as_bool(x)
    if method == "dense":
        y = F.conv2d(x.to(w.dtype, memory_format=torch.contiguous_format), w, bias, stride, padding, dilation)
        acc = conv_pair_count(xb, geom) * o
    else:
        table = (w.permute(2, 3, 1, 0).contiguous() if taps is None else taps).reshape(kh * kw * c, o)
        crow, cols = (builder or builder_for(x.device)).conv(xb, geom)
        crow, cols = crow.to(table.device), cols.to(table.device)
        if method == "csr":
            flat = _quiet_csr(_csr(crow, cols, (n * ho * wo, kh * kw * c), table.dtype), table, bias)
        else:
            rows = torch.repeat_interleave(torch.arange(n * ho * wo, device=table.device), crow.diff(),
                                           output_size=cols.numel())
            flat = scatter_rows(n * ho * wo, rows, cols, table)
            if bias is not None:
                flat += bias
        y = flat.reshape(n, ho, wo, o).permute(0, 3, 1, 2)
        acc = int(cols.numel()) * o
    if bias_map is not None:
        y = y + bias_map
    return y, acc  # the sparse methods leave y channels-last (strides), which the next layer reads as is
