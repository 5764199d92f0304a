"""Event-driven execution of a converted graph: only the spikes that occur are propagated.

The graph runs node by node, every node over all ``T`` steps at once: a neuron node runs its
``T`` steps (sequential, :func:`spikeforge.reparam.ops.neuron_op`), after which the next
synaptic node knows its input for all steps and handles the ``T·B`` rows in one call of a kernel
of :mod:`spikeforge.runtime.kernels`. Per synaptic node and call the runtime picks the method:

    integer   weights, bias (and bias map) integer-valued and Σ|W| + |bias| < 2⁶³ per output:
              accumulate in int64 (``scatter``), exact, no float reassociation; the sum is
              converted to float64 once (exact below 2⁵³)
    native    on CPU, with the compiled kernels (:mod:`spikeforge.runtime.native`, ``RuntimeConfig.kernel``):
              input density ρ = events / inputs ≤ the native crossover of the op (``native_*`` fields), or
              a small linear call (dense product < native_small_macs) at any density, counted by the kernel.
              Integer layers use the int64 variant of the same kernels (still reported as ``int``).
    sparse    without them (``kernel = "torch"``, a GPU, or no C compiler): ρ ≤ crossover(op) (scaled
              down for narrow layers: linear by O / linear_full_outputs, conv by C_in·C_out / conv_full_width,
              each at most 1), dense product ≥ min_sparse_macs and (conv) input channels ≥
              min_sparse_channels: ``csr`` (events × weights)
    dense     otherwise: ``F.linear`` / ``F.conv2d`` on the binary input (the accumulations are
              still counted from the events)
    analog    a non-binary input (the analog first layer): dense, counted as MACs

The crossovers (:class:`RuntimeConfig`) are where the sparse product and the dense float64
product took the same time on the development machine (``bench/event_runtime.py`` measures
them); they change only the speed, never the result or the counts.

Counting (equal to the verifier's, :mod:`spikeforge.energy`): ``C_out`` accumulations per
(event, tap) pair landing inside the output (linear: per event); an analog layer costs
``out_elements · C_in · kH · kW`` MACs. Pools before a synaptic node are folded into its weights
(:func:`spikeforge.reparam.synapse.folded`); the threshold units, sum pools and weighted adds run
as the dense executor runs them, their events counted as
:func:`spikeforge.reparam.ops.unit_accumulations` defines, in ``RuntimeReport.unit_events``.
:class:`spikeforge.runtime.stream.StreamingRuntime` runs one step at a time.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

from ..reparam.graph import SPIKING_OPS, ConvertedGraph, Node
from ..reparam.ops import (
    concat_inputs,
    crop_input,
    input_op,
    neuron_op,
    run_elementwise,
    split_steps,
    threshold_op,
    unit_accumulations,
)
from ..reparam.synapse import FoldedSynapse, folded
from .indices import ConvGeometry, IndexBuilder, builder_for, conv_geometry
from .kernels import event_conv, event_linear, weight_tiles
from .native import Kernel, NativeUnavailable, TiledWeights, bind_conv, bind_linear, fits, load, tiled
from .report import LayerCount, RuntimeReport

F64 = torch.float64
INT_ACC_LIMIT = 2**62  # an int64 accumulator holds Σ|W| + |bias| below this with room to spare
METHOD_INT, METHOD_SPARSE, METHOD_DENSE, METHOD_ANALOG = "int", "sparse", "dense", "analog"
METHOD_NATIVE = "native"  # the compiled C kernels (float64 events; integer layers keep the name "int")
KERNELS = ("auto", "native", "torch")
MAX_PLANS = 256  # per-layout call plans kept (layers × distinct input shapes); a runtime fed more starts over
NeuronFn = Callable[[Node, torch.Tensor], torch.Tensor]  # (node, membrane input [T, B, ...]) -> spikes


@dataclass(frozen=True)
class RuntimeConfig:
    """How the runtime chooses a method per synaptic node and call (see the module docstring). Frozen: an
    :class:`EventRuntime` plans each layer's calls from it once (``dataclasses.replace`` makes a changed copy
    for a new runtime).

    ``method``: ``"auto"`` (integer, else native/sparse/dense by density), or force ``"native"``,
    ``"csr"``, ``"scatter"`` or ``"dense"`` for every binary layer (float64).
    """

    method: str = "auto"
    kernel: str = "auto"  # the event kernels on CPU: auto (the compiled C kernels of runtime/native.py when
    # they build, else torch/numpy, with a warning), native (required: an error if they do not build), torch
    linear_crossover: float = 0.12  # sparse up to this input density (measured: 784…8192 → 128…2048, T·B = 128)
    conv_crossover: float = 0.20  # measured: 3×3 and folded 4×4/2 convs, 15…128 channels, T·B = 128
    linear_full_outputs: int = 64  # a linear layer with fewer outputs O has its crossover scaled by O / this:
    # the per-event costs of the sparse product (row bookkeeping) weigh more when an event adds few weights
    conv_full_width: int = 1024  # a conv with C_in·C_out below this has its crossover scaled by C_in·C_out / this:
    # building the sparse im2col costs per (output position, tap), the dense product C_in·C_out MACs there
    min_sparse_channels: int = 8  # conv: fewer input channels, building the sparse im2col costs more than conv2d
    min_sparse_macs: int = 1 << 20  # a call whose dense product is smaller runs dense (fixed costs dominate)
    linear_tile_density: float = 0.02  # linear: above this density the product runs in column tiles of Wᵀ
    # (measured on the whole MLP, caches cold between calls: at 2.5 % 16.2 → 14.3 ms, at 1.5 % 16.0 → 18.4 ms)
    integer: bool = True  # int64 accumulation when the weights are integers
    threads: int = 0  # threads per call (0: torch.get_num_threads()): the compiled kernels' share of torch's
    # OpenMP pool (at most its size); the torch kernels' conv row blocks, each building its own index lists and
    # product (linear layers run as one block there: torch's sparse product is threaded already)
    min_rows_per_thread: int = 16  # rows (T·B) per block at least; fewer rows run on one thread
    indices: str = "auto"  # how event lists are built: auto (numpy on CPU, torch elsewhere), numpy, torch
    # The compiled kernels' crossovers (measured with 1 and 2 threads, T·B = 128, against the float64 dense
    # product on float spikes): linear up to native_linear_crossover, scaled by √(rows/F) for layers
    # with more inputs F than native_linear_rows (a tile of 64 columns of Wᵀ then no longer stays in cache:
    # 8192 → 128 at 20 % 0.57×); conv up to native_conv_crossover scaled by √(C_in·C_out / native_conv_full_width)
    # when below it (few weights per event: a 1 → 15-channel conv is at par at 5 % on 2 threads, 0.6× at 30 %)
    native_linear_crossover: float = 0.25  # 784…2048 → 10…2048: 1.04–1.71× dense at 20–30 %
    native_linear_rows: int = 2048
    native_conv_crossover: float = 0.30  # C_in·C_out ≥ 512: 1.5–5× dense at 30 %
    native_conv_full_width: int = 512
    native_conv_min_crossover: float = 0.12  # but at least this (the scatter kernel: 1 → 15 channels 1.1× at 10 %)
    native_small_macs: int = 1 << 22  # a linear call whose dense product is smaller runs compiled at any density,
    # its events counted by the kernel, not before it: a 10-way readout's kernel is at par with `F.linear` near
    # 10 % and 0.5–0.6× at 30 %, but the runtime's dense path, which also turns the bool spikes into floats and
    # counts them, measured 0.4–0.5× at 10 % and 0.3× at 30 % in place — the kernel is the faster choice throughout


@dataclass
class _Layer:
    """A synaptic node prepared for execution (cached per node)."""

    syn: FoldedSynapse
    rows: torch.Tensor  # float64 weight table: Wᵀ [F, O] or [kH, kW, C, O]
    integer: bool
    int_rows: torch.Tensor | None = None
    int_bias: torch.Tensor | None = None
    int_bias_map: torch.Tensor | None = None
    geom: ConvGeometry | None = None
    tiles: list[torch.Tensor] | None = None  # linear: column tiles of Wᵀ for the sparse product
    native: dict[bool, TiledWeights] = field(default_factory=dict)  # by integer: the C kernels' tiles

    def native_weights(self, integer: bool) -> TiledWeights:
        if integer not in self.native:
            rows, bias = (self.int_rows, self.int_bias) if integer else (self.rows, self.syn.bias)
            assert rows is not None
            self.native[integer] = tiled(rows.reshape(-1, rows.shape[-1]), bias)
        return self.native[integer]


@dataclass
class _Call:
    """What every call of one synaptic node with one input layout (shapes, strides, dtypes, device) shares,
    found on the first such call: the per-call path then runs the kernel and the counts only."""

    lay: _Layer
    hwc: tuple[int, int, int] | None  # a linear layer read from channels-last spikes
    mixed: bool  # inputs of several dtypes: converted to float64 first
    spikes_only: bool  # every input is a spiking node's output (binary by construction)
    native: bool  # the compiled kernels run these calls (CPU, and the per-row sizes fit their int32 indices)
    small: bool  # a small float linear call: compiled at any density, its events counted by the kernel
    dense_macs: int  # of the dense product (conv: an estimate, see EventRuntime._dense_macs)
    per_out: int  # weights per output
    kernels: dict[tuple[bool, int], Kernel] = field(default_factory=dict)  # by (integer, threads): bound kernels


def _integral(t: torch.Tensor | None) -> bool:
    return t is None or bool(torch.isfinite(t).all() and torch.equal(t, t.round()))


def integer_weights(syn: FoldedSynapse) -> bool:
    """Whether every weight and bias is an integer and no output's Σ|W| + |bias| can overflow int64."""
    if not (_integral(syn.weight) and _integral(syn.bias) and _integral(syn.bias_map)):
        return False
    bound = syn.weight.abs().flatten(1).sum(1)
    if syn.bias is not None:
        bound = bound + syn.bias.abs()
    if syn.bias_map is not None:
        bound = bound + syn.bias_map.abs().flatten(1).amax(1)
    return bool((bound < INT_ACC_LIMIT).all())


def _channels_last_hwc(x: torch.Tensor) -> tuple[int, int, int] | None:
    """``(H, W, C)`` when ``x [T, B, C, H, W]`` lies channels-last in memory (a sparse conv's spikes)."""
    if x.dim() != 5 or x.shape[2] == 1 or x.shape[3] * x.shape[4] == 1:
        return None
    c, h, w = x.shape[2:]
    st = x.stride()
    return (h, w, c) if st[2] == 1 and st[4] == c and st[3] == c * w and x.permute(0, 1, 3, 4, 2).is_contiguous() \
        else None


def _as_int(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.to(torch.int64)


class EventRuntime:
    """Runs a :class:`ConvertedGraph` event by event, in float64, on the graph tensors' device."""

    def __init__(self, graph: ConvertedGraph, device: str | torch.device | None = None,
                 method: str = "auto", config: RuntimeConfig | None = None) -> None:
        self.graph = graph
        self.config = config if config is not None else RuntimeConfig(method=method)
        self.device = torch.device(device) if device is not None else None
        self._layers: dict[str, _Layer] = {}
        self._ops = {n.name: n.op for n in graph.nodes}
        self._calls: dict[tuple[object, ...], _Call] = {}
        self._pool: ThreadPoolExecutor | None = None  # the threads of the sparse products (made on first use)
        self._pool_size = 0
        self._native: dict[str, bool] = {}  # by device type: whether the compiled kernels run there
        kernel, method = self.config.kernel, self.config.method
        if kernel not in KERNELS:
            raise ValueError(f"event kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
        self._native_wanted = method in ("auto", METHOD_NATIVE) and kernel != "torch"
        self._native_required = kernel == "native" or method == METHOD_NATIVE
        if (method == METHOD_NATIVE and kernel == "torch") or (kernel == "native" and not self._native_wanted):
            raise ValueError(f"method {method!r} and kernel {kernel!r} contradict each other: the method 'native' "
                             "is the compiled kernels; kernel 'native' needs method 'auto' or 'native'")

    def native_on(self, device: torch.device) -> bool:
        """Whether the compiled kernels run this layer call: on CPU, unless ``kernel = "torch"``; a build
        failure is an error for ``kernel = "native"``, a warning (once per process) and the torch kernels
        for ``"auto"``."""
        known = self._native.get(device.type)
        if known is not None:
            return known
        self._native[device.type] = on = self._native_check(device)
        return on

    def _native_check(self, device: torch.device) -> bool:
        if not self._native_wanted:
            return False
        if device.type != "cpu":
            if self._native_required:
                raise ValueError(f"the compiled event kernels run on the CPU, not on {device}")
            return False
        try:
            load()
        except NativeUnavailable as err:
            if self._native_required:
                raise
            if not _warned_native:
                _warn_native(err)
            return False
        return True

    @property
    def method(self) -> str:
        return self.config.method

    def target_device(self, x: torch.Tensor) -> torch.device:
        return self.device or next((t.device for n in self.graph.nodes for t in n.tensors.values()), x.device)

    def _layer(self, node: Node, device: torch.device, hwc: tuple[int, int, int] | None = None) -> _Layer:
        """The prepared layer; ``hwc``: a linear layer read from channels-last ``[H, W, C]`` spikes, its
        weight columns permuted to that order once (the spikes are then flattened without a copy)."""
        key = node.name if hwc is None else f"{node.name}/hwc"
        if key not in self._layers:
            syn = folded(node).to(self.device or device, F64)
            if hwc is not None:
                h, w_, c = hwc
                cl = syn.weight.reshape(-1, c, h, w_).permute(0, 2, 3, 1).reshape(syn.weight.shape[0], -1)
                syn = replace(syn, weight=cl.contiguous())
            w = syn.weight
            rows = (w.t() if node.op == "linear" else w.permute(2, 3, 1, 0)).contiguous()
            lay = _Layer(syn, rows, self.config.integer and integer_weights(syn))
            if lay.integer:
                lay.int_rows, lay.int_bias, lay.int_bias_map = _as_int(rows), _as_int(syn.bias), _as_int(syn.bias_map)
            self._layers[key] = lay
        return self._layers[key]

    def choose(self, node: Node, lay: _Layer, density: float, dense_macs: int, native: bool = False) -> str:
        """The method for one call: ``int``, ``native``, ``sparse`` or ``dense`` (binary input)."""
        cfg = self.config
        if cfg.method != "auto":
            return cfg.method
        if lay.integer:
            return METHOD_INT
        w = lay.syn.weight
        outputs, fan_in = int(w.shape[0]), int(w.shape[1])
        if native:
            if node.op == "linear":
                crossover = cfg.native_linear_crossover * min(1.0, cfg.native_linear_rows / fan_in) ** 0.5
            else:
                width = min(1.0, fan_in * outputs / cfg.native_conv_full_width)
                crossover = max(cfg.native_conv_min_crossover, cfg.native_conv_crossover * width**0.5)
            return METHOD_NATIVE if density <= crossover else METHOD_DENSE
        if node.op == "linear":
            crossover = cfg.linear_crossover * min(1.0, outputs / cfg.linear_full_outputs)
        else:
            crossover = cfg.conv_crossover * min(1.0, fan_in * outputs / cfg.conv_full_width)
        wide = node.op == "linear" or fan_in >= cfg.min_sparse_channels
        big = dense_macs >= cfg.min_sparse_macs
        return METHOD_SPARSE if density <= crossover and wide and big else METHOD_DENSE

    def synaptic(self, node: Node, xs: list[torch.Tensor], count: LayerCount) -> torch.Tensor:
        """One synaptic node over all rows ``[T, B, ...]`` of its inputs; adds to ``count``."""
        key = (node.name, *[(x.shape, x.stride(), x.dtype, x.device) for x in xs])
        call = self._calls.get(key)
        if call is None:
            if len(self._calls) >= MAX_PLANS:  # inputs of ever new lengths (event streams): start over
                self._calls.clear()
            call = self._calls[key] = self._plan(node, xs)
        t, b = xs[0].shape[:2]
        lay = call.lay
        f = lay.syn
        flat = self._flat(node, call.hwc, lay, [x.to(F64) for x in xs] if call.mixed else xs)
        count.inputs += flat.numel()
        if flat.dtype != torch.bool:
            xb = flat.ne(0)
            if not (call.spikes_only or torch.equal(xb, flat.eq(1))):  # analog: dense MACs
                count.events += int(xb.sum())
                y = F.linear(flat, f.weight, f.bias) if node.op == "linear" else \
                    F.conv2d(flat, f.weight, f.bias, f.stride, f.padding, f.dilation)
                y = y if f.bias_map is None else y + f.bias_map
                count.macs += y.numel() * call.per_out
                count.dense_macs += y.numel() * call.per_out
                count.used(METHOD_ANALOG)
                return split_steps(y, (t, b))
            flat = xb  # the events as bool from here on (the dense method converts them back)
        if call.small:  # the kernel counts the events itself
            y, acc = self._run_native(node, call, flat, False)
            method, events = METHOD_NATIVE, acc // int(f.weight.shape[0])
        else:
            build = builder_for(flat.device, self.config.indices)
            events = build.count(flat)
            density = events / max(flat.numel(), 1)
            method = self.choose(node, lay, density, call.dense_macs, call.native)
            if call.native and method in (METHOD_NATIVE, METHOD_INT):
                y, acc = self._run_native(node, call, flat, method == METHOD_INT)
            else:
                y, acc = self._run_binary(node, lay, flat, method, events, density, build)
        count.events += events
        count.accumulations += acc
        count.dense_macs += y.numel() * call.per_out
        count.used(method)
        return split_steps(y, (t, b))

    @staticmethod
    def _flat(node: Node, hwc: tuple[int, int, int] | None, lay: _Layer, xs: list[torch.Tensor]) -> torch.Tensor:
        """The inputs ``[T, B, ...]`` as one ``[T·B, ...]`` (concatenated, flattened for a linear layer, cropped
        for a conv)."""
        x = xs[0].permute(0, 1, 3, 4, 2).flatten(2) if hwc else concat_inputs(xs, flatten=node.op == "linear")
        if node.op == "conv":
            x = crop_input(x, lay.syn.crop)
        return x.flatten(0, 1)

    def _plan(self, node: Node, xs: list[torch.Tensor]) -> _Call:
        """The layout-dependent decisions of :meth:`synaptic` for these inputs, made once per layout."""
        hwc = _channels_last_hwc(xs[0]) if node.op == "linear" and len(xs) == 1 else None
        lay = self._layer(node, xs[0].device, hwc)
        mixed = len({x.dtype for x in xs}) > 1
        flat = self._flat(node, hwc, lay, [x.to(F64) for x in xs] if mixed else xs)
        native = self.native_on(flat.device) and self._fits_native(node, lay, flat)
        dense_macs = self._dense_macs(node, lay, flat)
        small = native and node.op == "linear" and self.config.method == "auto" and not lay.integer \
            and dense_macs < self.config.native_small_macs
        spikes_only = all(self._ops[i] in SPIKING_OPS for i in node.inputs)  # binary by construction
        return _Call(lay, hwc, mixed, spikes_only, native, small, dense_macs, int(lay.syn.weight[0].numel()))

    def _geometry(self, lay: _Layer, flat: torch.Tensor) -> ConvGeometry:
        """The conv layer's geometry for this input size (made once per size)."""
        f, hw = lay.syn, (int(flat.shape[2]), int(flat.shape[3]))
        if lay.geom is None or lay.geom.in_hw != hw:
            lay.geom = conv_geometry(hw, (int(f.weight.shape[2]), int(f.weight.shape[3])), f.stride,
                                     f.padding, f.dilation, flat.device)
        return lay.geom

    def _fits_native(self, node: Node, lay: _Layer, flat: torch.Tensor) -> bool:
        """Whether this call's per-row sizes fit the compiled kernels' int32 indices (else the torch kernels)."""
        return fits(flat, None if node.op == "linear" else self._geometry(lay, flat))

    @staticmethod
    def _dense_macs(node: Node, lay: _Layer, flat: torch.Tensor) -> int:
        """Multiply-accumulates of the dense product of this call (conv: per input position, an estimate)."""
        w = lay.syn.weight
        per_row = int(w.numel()) if node.op == "linear" else int(w.numel()) * int(flat[0, 0].numel())
        return int(flat.shape[0]) * per_row

    def _run_binary(self, node: Node, lay: _Layer, flat: torch.Tensor, method: str,
                    events: int, density: float, build: IndexBuilder) -> tuple[torch.Tensor, int]:
        f = lay.syn
        kernel = {METHOD_SPARSE: "csr", METHOD_INT: "scatter"}.get(method, method)
        integer = method == METHOD_INT
        rows = lay.int_rows if integer else lay.rows
        bias = lay.int_bias if integer else f.bias
        assert rows is not None
        if node.op == "linear":
            tiles = None
            if kernel == "csr" and density > self.config.linear_tile_density:
                lay.tiles = weight_tiles(rows) if lay.tiles is None else lay.tiles
                tiles = lay.tiles
            # one block: torch's sparse product already uses every thread (blocks on threads measured slower)
            y, acc = event_linear(flat, f.weight, bias, rows, kernel, events, tiles, build)
            return (y.to(F64) if integer else y), acc
        geom, bias_map = self._geometry(lay, flat), lay.int_bias_map if integer else f.bias_map

        def run(part: torch.Tensor) -> tuple[torch.Tensor, int]:
            return event_conv(part, f.weight, bias, bias_map, f.stride, f.padding, f.dilation, rows, kernel, geom,
                              build)
        y, acc = run(flat) if kernel == "dense" else self._in_parts(run, flat)
        return (y.to(F64) if integer else y), acc

    def _threads(self) -> int:
        return max(1, self.config.threads or torch.get_num_threads())

    def _pool_of(self, threads: int) -> ThreadPoolExecutor | None:
        """The runtime's worker threads (``threads`` of them; made on first use, remade when that changes)."""
        if threads <= 1:
            return None
        if self._pool is None or self._pool_size != threads:
            if self._pool is not None:
                self._pool.shutdown()
            self._pool, self._pool_size = ThreadPoolExecutor(threads, thread_name_prefix="spikeforge-events"), threads
        return self._pool

    def _run_native(self, node: Node, call: _Call, flat: torch.Tensor, integer: bool) -> tuple[torch.Tensor, int]:
        """One call through the compiled kernels (float64, or int64 for an integer layer), bound to this
        layer and input shape on its first call."""
        threads, lay = self._threads(), call.lay
        kernel = call.kernels.get((integer, threads))
        if kernel is None:
            weights = lay.native_weights(integer)
            kernel = call.kernels[integer, threads] = bind_linear(weights, flat.shape, threads) \
                if node.op == "linear" else bind_conv(weights, self._geometry(lay, flat), flat.shape, threads)
        y, found = kernel(flat)
        outputs = int(lay.syn.weight.shape[0])
        if node.op == "conv":
            bias_map = lay.int_bias_map if integer else lay.syn.bias_map
            if bias_map is not None:
                y = y + bias_map
        return (y.to(F64) if integer else y), found * outputs

    def _in_parts(self, run: Callable[[torch.Tensor], tuple[torch.Tensor, int]],
                  flat: torch.Tensor) -> tuple[torch.Tensor, int]:
        """``run`` on the images of ``flat`` dealt out to parallel threads — the index lists and the sparse
        product of each share; numpy and torch release the GIL — or on all rows at once (one thread, few rows)."""
        blocks = flat.shape[0] // max(self.config.min_rows_per_thread, 1)
        threads = min(self._threads(), blocks)
        pool = self._pool_of(threads)
        if pool is None or flat.device.type != "cpu":
            return run(flat)

        def block(part: torch.Tensor) -> tuple[torch.Tensor, int]:
            with torch.no_grad():  # a worker thread does not inherit the caller's grad mode
                return run(part)

        # images dealt out one at a time (as the compiled kernels do): the rows come step by step and the first
        # steps fire least, so contiguous blocks would hand one thread most of the events
        done = list(pool.map(block, [flat[k::threads] for k in range(threads)]))
        first = done[0][0]
        fmt = torch.channels_last if first.dim() == 4 and not first.is_contiguous() else torch.contiguous_format
        y = torch.empty((flat.shape[0], *first.shape[1:]), dtype=first.dtype, device=first.device, memory_format=fmt)
        for k, (part, _) in enumerate(done):
            y[k::threads] = part
        return y, sum(a for _, a in done)

    def walk(self, x: torch.Tensor, neuron: NeuronFn, report: RuntimeReport) -> torch.Tensor:
        """Run every node on ``x [T, B, ...]``; ``neuron`` computes the neuron nodes (whole run or one step)."""
        device = self.target_device(x)
        sync = torch.cuda.synchronize if device.type == "cuda" else None
        values: dict[str, torch.Tensor] = {}
        last = self.graph.last_uses()
        for k, n in enumerate(self.graph.nodes):
            if n.op == "input":
                values[n.name] = input_op(x.to(device), n.attrs, F64)
                continue
            xs = [values[i] for i in n.inputs]
            if n.op in ("conv", "linear"):
                count = report.layer(n.name)
                t0 = time.perf_counter()
                values[n.name] = self.synaptic(n, xs, count)
                if sync is not None:
                    sync(device)
                count.seconds += time.perf_counter() - t0
            elif n.op == "neuron":
                h = xs[0]
                values[n.name] = neuron(n, h.to(F64) if h.dtype == torch.bool else h)  # bool spikes
            else:
                xs = [v.to(F64) if v.dtype == torch.bool else v for v in xs]
                y = threshold_op(xs, n.attrs, torch.bool) if n.op == "threshold" else run_elementwise(n.op, xs, n.attrs)
                values[n.name] = y
                acc = unit_accumulations(n.op, xs, y, [self._ops[i] in SPIKING_OPS for i in n.inputs])
                if acc or n.op in ("threshold", "sumpool"):
                    report.add_unit_events(n.name, acc)
            for name in n.inputs:
                if last[name] == k:
                    values.pop(name, None)
        out = values[self.graph.nodes[-1].name]
        return out.to(F64) if out.dtype == torch.bool else out

    @torch.no_grad()
    def run(self, x: torch.Tensor) -> tuple[torch.Tensor, RuntimeReport]:
        """``x [T, B, ...]`` (analog input, or integer pixels for a bitplane graph) → (output, counts)."""
        report = RuntimeReport(samples=int(x.shape[1]), time_steps=int(x.shape[0]))
        out = self.walk(x, lambda n, h: neuron_op(h, n.attrs, torch.bool), report)
        return out, report


_warned_native = False


def _warn_native(err: Exception) -> None:
    global _warned_native
    _warned_native = True
    warnings.warn(f"spikeforge event runtime: the compiled kernels are unavailable ({err}); running the "
                  "torch/numpy kernels (same results, slower; RuntimeConfig(kernel='torch') says so explicitly)",
                  RuntimeWarning, stacklevel=2)


def run_events(graph: ConvertedGraph, x: torch.Tensor) -> tuple[torch.Tensor, RuntimeReport]:
    """Convenience: ``EventRuntime(graph).run(x)``."""
    return EventRuntime(graph).run(x)
