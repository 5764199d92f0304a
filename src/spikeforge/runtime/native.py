"""The event runtime's compiled CPU kernels: ``csrc/events.c`` built once with the system C compiler.

Each kernel scans the bool spikes of its rows and adds one weight row per event (see the C file's
header for the sums); the float64 variants sum in the order of the events, the int64 ones exactly.
They replace, on CPU, what costs the torch/numpy path its time at small and medium sizes: building
index lists, a sparse-matrix object and a product per call (``bench/event_runtime.py`` compares).

Build: ``$CC`` (else ``cc``) ``-O3 -march=native -shared -fPIC -fopenmp``, once per source, flags,
compiler and CPU, into ``$SPIKEFORGE_NATIVE_DIR`` (else ``$XDG_CACHE_HOME/spikeforge/native`` or
``~/.cache/spikeforge/native``), written to a temporary name and renamed, so concurrent processes never
load half a library; without OpenMP, then without ``-march=native``, if those fail. Loaded with
:mod:`ctypes` (the GIL is released during a call). A call deals its rows (linear) or images (conv) out
to the threads of an OpenMP team, one at a time: the library links ``libgomp.so.1``, which resolves to the
one torch already loaded, so the kernels run on torch's own worker threads — a second thread pool would
compete with them (GNU OpenMP workers spin for milliseconds after each parallel torch op). The team is
torch's pool as torch sized it (``torch.set_num_threads``): a call uses at most that many threads, whatever
its ``threads`` asks for.

No compiler, or a failed build: :func:`load` raises :class:`NativeUnavailable` with one line
saying why; the runtime (``RuntimeConfig.kernel = "auto"``) then warns once and runs the torch/numpy
kernels (the results and counts are the same, only the speed differs).
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch

from .indices import ConvGeometry

SOURCE = Path(__file__).with_name("csrc") / "events.c"
DIR_ENV = "SPIKEFORGE_NATIVE_DIR"
FLAGS = ("-O3", "-march=native", "-std=c11", "-shared", "-fPIC")
PORTABLE_FLAGS = ("-O3", "-std=c11", "-shared", "-fPIC")  # tried when the compiler does not know -march=native
OPENMP = "-fopenmp"  # tried first with each: the kernels' threads then come from the process's OpenMP runtime
# (torch's libgomp, already loaded: no second pool of threads spinning against torch's between layers)
BUILD_TIMEOUT_S = 120
INT32_LIMIT = 2**31 - 1  # the kernels index events with int32
DTYPES = {torch.float64: "f64", torch.int64: "i64"}

_I64, _PTR = ctypes.c_int64, ctypes.c_void_p
T = TypeVar("T")
_LINEAR_ARGS = [_PTR, _I64, _I64, _PTR, _I64, _I64, _PTR, _PTR, _I64]
_CONV_ARGS = [_PTR, _I64, _I64, _I64, _PTR, _I64, _I64, _PTR, _PTR, _PTR, _I64, _I64, _I64, _PTR, _PTR, _I64]


class NativeUnavailable(RuntimeError):
    """The compiled kernels cannot be built or loaded here (the message is one line saying why)."""


def cache_dir() -> Path:
    if os.environ.get(DIR_ENV):
        return Path(os.environ[DIR_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "spikeforge" / "native"


def _private_tmp() -> Path:
    """``$TMPDIR/spikeforge-native-<uid>``, only if it is this user's and closed to others (a library found
    there is loaded, so another user must not be able to plant one)."""
    path = Path(tempfile.gettempdir()) / f"spikeforge-native-{os.getuid()}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        st = path.stat()
    except OSError as err:
        raise NativeUnavailable(f"no folder to build the compiled event kernels in (set {DIR_ENV}): {err}") from None
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise NativeUnavailable(f"{path} is not a private folder of this user; set {DIR_ENV} to one")
    return path


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


def shares_torch_openmp() -> bool:
    """Whether a library linked with ``-fopenmp`` (``libgomp.so.1``) would use torch's OpenMP runtime: torch's
    parallel backend is OpenMP and the process has a ``libgomp.so.1`` loaded (torch's), which the loader reuses
    by name. Otherwise a second runtime would start its own threads, competing with torch's."""
    if "OpenMP" not in torch.__config__.parallel_info():
        return False
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return False
    return any(line.endswith("/libgomp.so.1") for line in maps.splitlines())


def _compile(cc: str, flags: Sequence[str], out: Path, source: Path | None = None) -> str | None:
    """Compile ``source`` (default :data:`SOURCE`) to ``out``; the compiler's first error line, or None on success."""
    source = source or SOURCE
    tmp = out.with_name(f"{out.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        proc = subprocess.run([cc, *flags, str(source), "-o", str(tmp)], capture_output=True, text=True,
                              timeout=BUILD_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as err:
        tmp.unlink(missing_ok=True)
        return f"{type(err).__name__}: {err}"
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        lines = [ln for ln in proc.stderr.splitlines() if "error" in ln] or proc.stderr.splitlines() or ["?"]
        return lines[0].strip()
    os.replace(tmp, out)
    return None


def candidates() -> list[tuple[str, ...]]:
    """The flag sets to try, best first: OpenMP only where it shares torch's runtime, ``-march=native``
    before a portable build."""
    openmp = [OPENMP] if shares_torch_openmp() else []
    return [(*FLAGS, *openmp), *([FLAGS] if openmp else []), (*PORTABLE_FLAGS, *openmp),
            *([PORTABLE_FLAGS] if openmp else [])]


def build(directory: Path | None = None, flags: Sequence[str] | None = None, source: Path | None = None) -> Path:
    """The compiled library of ``source`` (default: the event kernels) for one flag set (default: the first of
    :func:`candidates` that compiles), building it if this source/compiler/CPU/flags has none yet. A failed
    compile leaves a ``.failed`` note (its error) so later processes do not retry it."""
    source = source or SOURCE
    cc = _compiler()
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as err:
        raise NativeUnavailable(f"C compiler {cc} does not run: {err}") from None
    directory = directory or cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        directory = _private_tmp()
    errors: list[str] = []
    for option in ([tuple(flags)] if flags is not None else candidates()):
        key = hashlib.sha256("\0".join([source.read_text(), cc, version, _cpu_id(), *option]).encode())
        lib = directory / f"{source.stem}-{'omp-' if OPENMP in option else ''}{key.hexdigest()[:20]}.so"
        note = lib.with_suffix(".failed")
        if lib.exists():
            return lib
        if note.exists():
            errors.append(note.read_text(errors="replace").strip() or "?")
            continue
        failure = _compile(cc, option, lib, source)
        if failure is None:
            return lib
        errors.append(failure)
        try:
            note.write_text(failure + "\n")
        except OSError:
            pass
    raise NativeUnavailable(f"compiling {source.name} with {cc} failed: {errors[-1] if errors else '?'}")


@dataclass(frozen=True)
class Kernels:
    """The loaded library: one linear and one conv function per dtype."""

    linear: dict[torch.dtype, Callable[..., int]]
    conv: dict[torch.dtype, Callable[..., int]]
    path: Path
    openmp: bool  # built with OpenMP (torch's runtime): a call runs on several threads


_lock = threading.Lock()
_loaded: Kernels | None = None
_failure: NativeUnavailable | None = None


def _open(path: Path) -> Kernels:
    lib = ctypes.CDLL(str(path))
    fns: dict[str, dict[torch.dtype, Callable[..., int]]] = {"linear": {}, "conv": {}}
    for kind, args in (("linear", _LINEAR_ARGS), ("conv", _CONV_ARGS)):
        for dtype, suffix in DTYPES.items():
            fn = getattr(lib, f"{kind}_{suffix}")
            fn.argtypes, fn.restype = args, _I64
            fns[kind][dtype] = fn
    return Kernels(fns["linear"], fns["conv"], path, path.name.startswith("events-omp-"))


def first_loading(open_library: Callable[[Path], T], what: str, source: Path | None = None) -> T:
    """``open_library`` of ``source``'s library (default :data:`SOURCE`) built with the first of :func:`candidates`
    that compiles and loads; :class:`NativeUnavailable` with the last reason when none does. ``what`` names the
    library in that reason."""
    reasons: list[str] = []
    for flags in candidates():
        try:
            return open_library(build(flags=flags, source=source))
        except NativeUnavailable as err:
            reasons.append(str(err))
        except (OSError, AttributeError) as err:
            reasons.append(f"loading {what} failed: {err}")
    raise NativeUnavailable(reasons[-1] if reasons else "no build to try")


def load() -> Kernels:
    """The kernels of this process (built and loaded on the first call, trying :func:`candidates` in turn
    until one compiles and loads; a failure is remembered)."""
    global _loaded, _failure
    if _loaded is not None:
        return _loaded
    with _lock:
        if _loaded is None and _failure is None:
            try:
                _loaded = first_loading(_open, "the compiled event kernels")
            except NativeUnavailable as err:
                _failure = err
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


def _checked(count: int) -> int:
    if count < 0:
        raise MemoryError("the compiled event kernel could not allocate its event lists")
    return count


MIN_WORK_PER_THREAD = 1 << 19  # per thread at least (linear: rows · inputs · tiles; conv: images · (inputs +
# outputs)); a smaller call runs on fewer threads
# (a thread hand-off costs ≈ 50 µs here: 128 × 300 → 10 took 0.03 ms on one thread, 0.09–0.15 ms on two)
WIDTHS = (8, 16, 32, 64)  # the tile widths the C file is compiled for
TILE_BYTES = 1 << 20  # a tile of a layer's weight rows at most this large, if its width can shrink to fit (it stays
# in L2 while random events read it: 7840 → 300 at 10 %, 2 threads: width 64 4.6 ms, 16 2.7 ms; 2048 → 2048: 64 best)
MIN_WIDTH = 16  # narrower tiles cost more per event than their cache misses (measured: 8 slowest everywhere)


@dataclass(frozen=True)
class TiledWeights:
    """A layer's weight rows ``[F, O]`` (linear ``Wᵀ``; conv ``W`` as ``[kH·kW·C, O]``) as the C kernels read
    them: ``tiles [⌈O/width⌉, F, width]``, each tile the contiguous rows of ``width`` output columns
    (zero-padded past ``O``), and the bias padded the same way. Made once per layer."""

    tiles: torch.Tensor
    bias: torch.Tensor | None
    width: int
    outputs: int

    def __post_init__(self) -> None:  # the C kernels read these as raw memory: refuse any other layout
        t, b = self.tiles, self.bias
        layout = t.dim() == 3 and t.is_contiguous() and t.shape[2] == self.width and self.width in WIDTHS
        if t.dtype not in DTYPES or t.device.type != "cpu" or not layout \
                or not 0 < self.outputs <= t.shape[0] * self.width:
            raise ValueError(f"tiles must be contiguous CPU float64/int64 [n, rows, width] for {self.outputs} "
                             f"outputs, width in {WIDTHS}; got {t.dtype} {tuple(t.shape)} on {t.device}")
        if b is not None and (b.dtype != t.dtype or b.device.type != "cpu" or not b.is_contiguous()
                              or tuple(b.shape) != (t.shape[0] * self.width,)):
            raise ValueError(f"the tiled bias must be contiguous CPU {t.dtype} [{t.shape[0] * self.width}]")

    @property
    def n_tiles(self) -> int:
        return int(self.tiles.shape[0])

    @property
    def rows(self) -> int:
        return int(self.tiles.shape[1])


def tile_width(outputs: int, rows: int = 0, itemsize: int = 8) -> int:
    """The narrowest compiled width holding ``outputs`` columns (the widest, 64, for more), narrowed for
    layers with many weight rows so that one tile (``rows · width`` weights) fits in :data:`TILE_BYTES`
    (an event reads a random row of it), but not below :data:`MIN_WIDTH`."""
    width = next((w for w in WIDTHS if w >= outputs), WIDTHS[-1])
    while width > MIN_WIDTH and rows * width * itemsize > TILE_BYTES:
        width //= 2
    return width


def tiled(rows: torch.Tensor, bias: torch.Tensor | None, width: int = 0) -> TiledWeights:
    """:class:`TiledWeights` of ``rows [F, O]`` (float64 or int64, on the CPU) and ``bias [O]``; ``width``
    one of :data:`WIDTHS` (0: :func:`tile_width`)."""
    if rows.dtype not in DTYPES:
        raise ValueError(f"compiled event kernels sum float64 or int64 weights, not {rows.dtype}")
    f, o = rows.shape
    width = width or tile_width(int(o), int(f), rows.element_size())
    if width not in WIDTHS:
        raise ValueError(f"tile width must be one of {WIDTHS}, got {width}")
    n = -(-int(o) // width)
    padded = torch.zeros(f, n * width, dtype=rows.dtype, device="cpu")
    padded[:, :o] = rows.cpu()
    tiles = padded.reshape(f, n, width).permute(1, 0, 2).contiguous()
    b = None
    if bias is not None:
        b = torch.zeros(n * width, dtype=rows.dtype, device="cpu")
        b[:o] = bias.to("cpu", rows.dtype)
    return TiledWeights(tiles, b, width, int(o))


def fits(x: torch.Tensor, geom: ConvGeometry | None = None) -> bool:
    """Whether a call's per-row sizes fit the kernels' int32 event indices: linear ``x [N, F]`` its inputs
    ``F``; conv ``x [N, C, H, W]`` (with its ``geom``) ``H·W·C`` and output positions × taps."""
    return _fits(tuple(x.shape), geom)


def _fits(shape: tuple[int, ...], geom: ConvGeometry | None) -> bool:
    sizes = [int(shape[1])] if geom is None else [math.prod(shape[1:]), geom.out_hw[0] * geom.out_hw[1] * geom.taps]
    return all(s < INT32_LIMIT for s in sizes)


def _too_large(shape: tuple[int, ...]) -> ValueError:
    return ValueError(f"an input of shape {shape} is too large for the compiled event kernels' int32 event indices")


Kernel = Callable[[torch.Tensor], tuple[torch.Tensor, int]]  # spikes -> (sums, events or (event, tap) pairs)
SPIKE_BYTES = (torch.bool, torch.uint8)


def _spikes(x: torch.Tensor) -> torch.Tensor:
    """``x`` as one byte per element on the CPU (bool/uint8 as is, anything else compared with 0); the sizes
    are checked when the kernel is bound."""
    if x.device.type != "cpu":
        raise ValueError(f"the compiled event kernels run on the CPU, not on {x.device}")
    return x if x.dtype in SPIKE_BYTES else x != 0


def _bound_check(xb: torch.Tensor, shape: tuple[int, ...]) -> None:
    """What a bound kernel's input must be: the C code reads its bytes as they lie in memory."""
    if tuple(xb.shape) != shape or xb.dtype not in SPIKE_BYTES or xb.device.type != "cpu":
        raise ValueError(f"this bound kernel takes CPU bool/uint8 spikes of shape {shape}, got {xb.dtype} "
                         f"{tuple(xb.shape)} on {xb.device}")


def bind_linear(weights: TiledWeights, shape: Sequence[int], threads: int = 1) -> Kernel:
    """:func:`linear` for one layer and one input shape ``[N, F]``, its checks, pointers and thread split
    found once: a runtime calling the same layer many times pays only the kernel and one output allocation."""
    if len(shape) != 2:
        raise ValueError(f"a linear layer's spikes are [N, F], got shape {tuple(shape)}")
    n, f = (int(d) for d in shape)
    if not _fits((n, f), None):
        raise _too_large((n, f))
    if f != weights.rows:
        raise ValueError(f"linear layer of {weights.rows} inputs got {f}")
    tw = weights.tiles
    fn, dtype, outputs, width = load().linear[tw.dtype], tw.dtype, weights.outputs, weights.width
    parts = max(1, min(threads, n, n * f * weights.n_tiles // MIN_WORK_PER_THREAD))
    tiles = tw.data_ptr()
    bias = None if weights.bias is None else weights.bias.data_ptr()
    want = (n, f)

    def call(xb: torch.Tensor, _keep: TiledWeights = weights) -> tuple[torch.Tensor, int]:  # _keep: the tiles read
        if xb.shape != want or xb.dtype not in SPIKE_BYTES or not xb.is_contiguous() or xb.device.type != "cpu":
            _bound_check(xb, want)
            xb = xb.contiguous()
        out = torch.empty(n, outputs, dtype=dtype)
        return out, _checked(fn(xb.data_ptr(), n, f, tiles, outputs, width, bias, out.data_ptr(), parts))

    return call


def linear(xb: torch.Tensor, weights: TiledWeights, threads: int = 1) -> tuple[torch.Tensor, int]:
    """``xb [N, F]`` bool → ``(y [N, O] = x·Wᵀ + bias, events)``; the rows are dealt out to up to ``threads``
    OpenMP threads (fewer for small calls), each scanning its rows and summing every tile: every sum runs in
    event order whatever the split."""
    xb = _spikes(xb)
    return bind_linear(weights, xb.shape, threads)(xb.contiguous())


CONV_MODES = {"auto": 0, "gather": 1, "scatter": 2}


def bind_conv(weights: TiledWeights, geom: ConvGeometry, shape: Sequence[int], threads: int = 1,
              mode: str = "auto") -> Kernel:
    """:func:`conv` for one layer, geometry and input shape ``[N, C, H, W]``, its checks and pointers found once."""
    if len(shape) != 4:
        raise ValueError(f"a conv layer's spikes are [N, C, H, W], got shape {tuple(shape)}")
    n, c, h, w = (int(d) for d in shape)
    ho, wo = geom.out_hw
    if not _fits((n, c, h, w), geom):
        raise _too_large((n, c, h, w))
    if geom.taps * c != weights.rows:
        raise ValueError(f"conv layer of {weights.rows} (tap, channel) rows got {geom.taps} taps × {c} channels")
    if tuple(geom.in_hw) != (h, w):
        raise ValueError(f"conv geometry for {tuple(geom.in_hw)} inputs got {(h, w)}")
    if mode not in CONV_MODES:
        raise ValueError(f"conv mode must be one of {', '.join(CONV_MODES)}, got {mode!r}")
    tw = weights.tiles
    fn, dtype, outputs, width = load().conv[tw.dtype], tw.dtype, weights.outputs, weights.width
    src, (inv_ptr, inv) = geom.source32(), geom.inverse32()
    parts = max(1, min(threads, n, n * (h * w * c + ho * wo * outputs) // MIN_WORK_PER_THREAD))
    pointers = (src.data_ptr(), ho * wo, geom.taps, inv_ptr.data_ptr(), inv.data_ptr(), tw.data_ptr(), outputs,
                width, CONV_MODES[mode], None if weights.bias is None else weights.bias.data_ptr())
    want = (n, c, h, w)

    def call(xb: torch.Tensor, _keep: tuple[object, ...] = (weights, src, inv_ptr, inv)) -> tuple[torch.Tensor, int]:
        if xb.shape != want or xb.dtype not in SPIKE_BYTES or xb.device.type != "cpu":
            _bound_check(xb, want)
        x = xb.permute(0, 2, 3, 1).contiguous()  # a view when the spikes are channels-last already
        out = torch.empty(n, ho, wo, outputs, dtype=dtype)
        pairs = fn(x.data_ptr(), n, h * w, c, *pointers, out.data_ptr(), parts)
        return out.permute(0, 3, 1, 2), _checked(pairs)

    return call


def conv(xb: torch.Tensor, weights: TiledWeights, geom: ConvGeometry, threads: int = 1,
         mode: str = "auto") -> tuple[torch.Tensor, int]:
    """``xb [N, C, H, W]`` bool, ``weights`` tiled from ``W`` as ``[kH·kW·C, O]`` → ``(y [N, O, Ho, Wo]``
    (channels-last strides), ``(event, tap) pairs``); the images are dealt out to up to ``threads``
    OpenMP threads.

    ``mode``: per image, ``gather`` (each output position sums the events its taps read, in registers),
    ``scatter`` (each event adds its weight rows to the outputs its taps reach: cheaper when events are
    few per position) or ``auto`` (chosen per image by the C file's cost rule)."""
    xb = _spikes(xb)
    return bind_conv(weights, geom, xb.shape, threads, mode)(xb)
