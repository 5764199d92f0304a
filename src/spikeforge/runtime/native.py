"""The event runtime's compiled CPU kernels: ``csrc/events.c`` built once with the system C compiler.

Each kernel scans the bool spikes of its rows and adds one weight row per event (see the C file's
header for the sums); the float64 variants sum in the order of the events, the int64 ones exactly.
They replace, on CPU, what costs the torch/numpy path its time at small and medium sizes: building
index lists, a sparse-matrix object and a product per call (``bench/event_runtime.py`` compares).

Build: ``$CC`` (else ``cc``) ``-O3 -march=native -shared -fPIC``, once per source, flags, compiler
and CPU, into ``$SPIKEFORGE_NATIVE_DIR`` (else ``$XDG_CACHE_HOME/spikeforge/native`` or
``~/.cache/spikeforge/native``), written to a temporary name and renamed, so concurrent processes
never load half a library. Loaded with :mod:`ctypes`, which releases the GIL during a call: the
callers split a layer between threads (linear: output columns; conv: images).

No compiler, or a failed build: :func:`load` raises :class:`NativeUnavailable` with one line
saying why; the runtime (``RuntimeConfig.kernel = "auto"``) then warns once and runs the torch/numpy
kernels (the results and counts are the same, only the speed differs).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from .indices import ConvGeometry

SOURCE = Path(__file__).with_name("csrc") / "events.c"
DIR_ENV = "SPIKEFORGE_NATIVE_DIR"
FLAGS = ("-O3", "-march=native", "-std=c11", "-shared", "-fPIC")
PORTABLE_FLAGS = ("-O3", "-std=c11", "-shared", "-fPIC")  # tried when the compiler does not know -march=native
BUILD_TIMEOUT_S = 120
INT32_LIMIT = 2**31 - 1  # the kernels index events with int32
DTYPES = {torch.float64: "f64", torch.int64: "i64"}

_I64, _PTR = ctypes.c_int64, ctypes.c_void_p
_LINEAR_ARGS = [_PTR, _I64, _I64, _PTR, _I64, _I64, _I64, _I64, _PTR, _PTR]
_CONV_ARGS = [_PTR, _I64, _I64, _I64, _PTR, _I64, _I64, _PTR, _PTR, _PTR, _I64, _I64, _I64, _PTR, _PTR]


class NativeUnavailable(RuntimeError):
    """The compiled kernels cannot be built or loaded here (the message is one line saying why)."""


def cache_dir() -> Path:
    if os.environ.get(DIR_ENV):
        return Path(os.environ[DIR_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "spikeforge" / "native"


def _cpu_id() -> str:
    """What ``-march=native`` depends on: the CPU's flags (a cache folder shared by different CPUs gets
    one library per CPU kind)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _compiler() -> str:
    cc = os.environ.get("CC") or "cc"
    path = shutil.which(cc)
    if path is None:
        raise NativeUnavailable(f"no C compiler: {cc!r} is not on PATH (set CC to one)")
    return path


def _compile(cc: str, flags: Sequence[str], out: Path) -> str | None:
    """Compile to ``out``; the compiler's first error line, or None on success."""
    tmp = out.with_name(f"{out.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        proc = subprocess.run([cc, *flags, str(SOURCE), "-o", str(tmp)], capture_output=True, text=True,
                              timeout=BUILD_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"{type(err).__name__}: {err}"
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        lines = [ln for ln in proc.stderr.splitlines() if "error" in ln] or proc.stderr.splitlines() or ["?"]
        return lines[0].strip()
    os.replace(tmp, out)
    return None


def build(directory: Path | None = None) -> Path:
    """The compiled library's path, building it if this source/compiler/CPU has none yet."""
    cc = _compiler()
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as err:
        raise NativeUnavailable(f"C compiler {cc} does not run: {err}") from None
    directory = directory or cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        directory = Path(tempfile.gettempdir()) / f"spikeforge-native-{os.getuid()}"
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise NativeUnavailable(f"no folder to build the compiled event kernels in ({DIR_ENV}): {err}") from None
    errors: list[str] = []
    for flags in (FLAGS, PORTABLE_FLAGS):
        key = hashlib.sha256("\0".join([SOURCE.read_text(), cc, version, _cpu_id(), *flags]).encode())
        lib = directory / f"events-{key.hexdigest()[:20]}.so"
        if lib.exists():
            return lib
        failure = _compile(cc, flags, lib)
        if failure is None:
            return lib
        errors.append(failure)
    raise NativeUnavailable(f"compiling {SOURCE.name} with {cc} failed: {errors[-1]}")


@dataclass(frozen=True)
class Kernels:
    """The loaded library: one linear and one conv function per dtype."""

    linear: dict[torch.dtype, Callable[..., int]]
    conv: dict[torch.dtype, Callable[..., int]]
    path: Path


_lock = threading.Lock()
_loaded: Kernels | None = None
_failure: NativeUnavailable | None = None


def load() -> Kernels:
    """The kernels of this process (built and loaded on the first call; a failure is remembered)."""
    global _loaded, _failure
    if _loaded is not None:
        return _loaded
    with _lock:
        if _loaded is None and _failure is None:
            try:
                path = build()
                lib = ctypes.CDLL(str(path))
            except NativeUnavailable as err:
                _failure = err
            except OSError as err:
                _failure = NativeUnavailable(f"loading the compiled event kernels failed: {err}")
            else:
                fns: dict[str, dict[torch.dtype, Callable[..., int]]] = {"linear": {}, "conv": {}}
                for kind, args in (("linear", _LINEAR_ARGS), ("conv", _CONV_ARGS)):
                    for dtype, suffix in DTYPES.items():
                        fn = getattr(lib, f"{kind}_{suffix}")
                        fn.argtypes, fn.restype = args, _I64
                        fns[kind][dtype] = fn
                _loaded = Kernels(fns["linear"], fns["conv"], path)
        if _failure is not None:
            raise _failure
        assert _loaded is not None
        return _loaded


def available() -> bool:
    try:
        load()
    except NativeUnavailable:
        return False
    return True


def _run(pool: ThreadPoolExecutor | None, jobs: Sequence[Callable[[], int]]) -> int:
    """Run the C calls (on the pool's threads when more than one); the sum of their counts."""
    if not jobs:  # no rows
        return 0
    counts = [job() for job in jobs] if len(jobs) == 1 or pool is None else list(pool.map(lambda job: job(), jobs))
    if any(c < 0 for c in counts):
        raise MemoryError("the compiled event kernel could not allocate its event lists")
    return sum(counts)


WIDTHS = (8, 16, 32, 64)  # the tile widths the C file is compiled for


@dataclass(frozen=True)
class TiledWeights:
    """A layer's weight rows ``[F, O]`` (linear ``Wᵀ``; conv ``W`` as ``[kH·kW·C, O]``) as the C kernels read
    them: ``tiles [⌈O/width⌉, F, width]``, each tile the contiguous rows of ``width`` output columns
    (zero-padded past ``O``), and the bias padded the same way. Made once per layer."""

    tiles: torch.Tensor
    bias: torch.Tensor | None
    width: int
    outputs: int

    @property
    def n_tiles(self) -> int:
        return int(self.tiles.shape[0])

    @property
    def rows(self) -> int:
        return int(self.tiles.shape[1])


def tile_width(outputs: int) -> int:
    """The narrowest compiled width holding ``outputs`` columns (the widest, 64, for more)."""
    return next((w for w in WIDTHS if w >= outputs), WIDTHS[-1])


def tiled(rows: torch.Tensor, bias: torch.Tensor | None) -> TiledWeights:
    """:class:`TiledWeights` of ``rows [F, O]`` (float64 or int64, on the CPU) and ``bias [O]``."""
    if rows.dtype not in DTYPES:
        raise ValueError(f"compiled event kernels sum float64 or int64 weights, not {rows.dtype}")
    f, o = rows.shape
    width = tile_width(int(o))
    n = -(-int(o) // width)
    padded = torch.zeros(f, n * width, dtype=rows.dtype)
    padded[:, :o] = rows
    tiles = padded.reshape(f, n, width).permute(1, 0, 2).contiguous()
    b = None
    if bias is not None:
        b = torch.zeros(n * width, dtype=rows.dtype)
        b[:o] = bias.to(rows.dtype)
    return TiledWeights(tiles, b, width, int(o))


def _check(x: torch.Tensor, per_row: int) -> None:
    if x.device.type != "cpu":
        raise ValueError(f"the compiled event kernels run on the CPU, not on {x.device}")
    if per_row * max(int(x.shape[0]), 1) >= INT32_LIMIT:
        raise ValueError(f"too many inputs for the compiled event kernels' int32 event lists: {tuple(x.shape)}")


def linear(xb: torch.Tensor, weights: TiledWeights, threads: int = 1,
           pool: ThreadPoolExecutor | None = None) -> tuple[torch.Tensor, int]:
    """``xb [N, F]`` bool → ``(y [N, O] = x·Wᵀ + bias, events)``; the tiles (output columns) are split
    between ``threads`` calls run on ``pool``."""
    n, f = xb.shape
    _check(xb, f)
    if f != weights.rows:
        raise ValueError(f"linear layer of {weights.rows} inputs got {f}")
    tw = weights.tiles
    fn = load().linear[tw.dtype]
    xb = xb.contiguous()
    out = torch.empty(n, weights.outputs, dtype=tw.dtype)
    parts = max(1, min(threads, weights.n_tiles))
    edges = [weights.n_tiles * k // parts for k in range(parts + 1)]
    args = (xb.data_ptr(), n, f, tw.data_ptr(), weights.outputs, weights.width)
    bp, op = (None if weights.bias is None else weights.bias.data_ptr()), out.data_ptr()
    jobs = [partial(fn, *args, t0, t1, bp, op) for t0, t1 in zip(edges[:-1], edges[1:], strict=True) if t1 > t0]
    events = _run(pool, jobs) // max(len(jobs), 1)  # every part scanned all rows
    return out, events


CONV_MODES = {"auto": 0, "gather": 1, "scatter": 2}


def conv(xb: torch.Tensor, weights: TiledWeights, geom: ConvGeometry, threads: int = 1,
         pool: ThreadPoolExecutor | None = None, mode: str = "auto") -> tuple[torch.Tensor, int]:
    """``xb [N, C, H, W]`` bool, ``weights`` tiled from ``W`` as ``[kH·kW·C, O]`` → ``(y [N, O, Ho, Wo]``
    (channels-last strides), ``(event, tap) pairs``); the images are split between ``threads`` calls.

    ``mode``: per image, ``gather`` (each output position sums the events its taps read, in registers),
    ``scatter`` (each event adds its weight rows to the outputs its taps reach: cheaper when events are
    few per position) or ``auto`` (chosen per image by the C file's cost rule)."""
    n, c, h, w = xb.shape
    _check(xb, h * w * c)
    if geom.taps * c != weights.rows:
        raise ValueError(f"conv layer of {weights.rows} (tap, channel) rows got {geom.taps} taps × {c} channels")
    tw = weights.tiles
    fn = load().conv[tw.dtype]
    x = xb.permute(0, 2, 3, 1).contiguous()  # a view when the spikes are channels-last already
    src = geom.source32()
    inv_ptr, inv = geom.inverse32()
    ho, wo = geom.out_hw
    p, o = ho * wo, weights.outputs
    out = torch.empty(n, ho, wo, o, dtype=tw.dtype)
    parts = max(1, min(threads, n))
    edges = [n * k // parts for k in range(parts + 1)]
    bp = None if weights.bias is None else weights.bias.data_ptr()
    xp, op, item = x.data_ptr(), out.data_ptr(), out.element_size()
    fixed = (h * w, c, src.data_ptr(), p, geom.taps, inv_ptr.data_ptr(), inv.data_ptr(), tw.data_ptr(), o,
             weights.width, CONV_MODES[mode], bp)
    jobs = [partial(fn, xp + m0 * h * w * c, m1 - m0, *fixed, op + m0 * p * o * item)
            for m0, m1 in zip(edges[:-1], edges[1:], strict=True) if m1 > m0]
    pairs = _run(pool, jobs)
    return out.permute(0, 3, 1, 2), pairs
