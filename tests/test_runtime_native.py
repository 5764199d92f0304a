"""The compiled event kernels (runtime/native.py + csrc/events.c): exact sums, counts, threads, build failures."""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from reparam_models import T, make_hybrid, random_input

from spikeforge.reparam import ConvertedModel, InputSpec, convert_model
from spikeforge.reparam.executor import module_key
from spikeforge.reparam.graph import Node
from spikeforge.runtime import EventRuntime, RuntimeConfig, conv_geometry, native
from spikeforge.runtime import events as events_module
from spikeforge.runtime.kernels import conv_pair_count
from spikeforge.runtime.report import LayerCount, RuntimeReport

TOL = 1e-10


@pytest.fixture
def many_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Split even the tests' small calls between threads (the real split is by work)."""
    monkeypatch.setattr(native, "MIN_WORK_PER_THREAD", 1)
needs_compiler = pytest.mark.skipif(not native.available(), reason="no working C compiler here (cc/$CC): "
                                    "the compiled kernels cannot be built, the runtime uses the torch kernels")


def _spikes(shape: tuple[int, ...], density: float, seed: int) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < density


@needs_compiler
@pytest.mark.parametrize("outputs", [1, 7, 10, 16, 20, 33, 64, 65, 130])
@pytest.mark.parametrize("density", [0.0, 0.1, 0.6, 1.0])
def test_linear_equals_the_dense_product_with_the_event_count(outputs: int, density: float,
                                                               many_threads: None) -> None:
    gen = torch.Generator().manual_seed(outputs)
    for fan_in, bias in ((1, True), (9, False), (300, True), (4500, False)):  # 4500 rows: a narrowed tile
        x = _spikes((37, fan_in), density, fan_in)
        w = torch.randn(outputs, fan_in, dtype=torch.float64, generator=gen)
        b = torch.randn(outputs, dtype=torch.float64, generator=gen) if bias else None
        tiled = native.tiled(w.t().contiguous(), b)
        for threads in (1, 3):
            y, events = native.linear(x, tiled, threads)
            torch.testing.assert_close(y, F.linear(x.double(), w, b), rtol=0, atol=TOL)
            assert events == int(x.sum())
        assert torch.equal(native.linear(x, tiled, 1)[0], y)  # the row split does not change a sum


@needs_compiler
def test_int64_sums_are_exact() -> None:
    gen = torch.Generator().manual_seed(3)
    x = _spikes((50, 70), 0.3, 1)
    w = torch.randint(-(2**40), 2**40, (21, 70), generator=gen)
    b = torch.randint(-(2**40), 2**40, (21,), generator=gen)
    y, _ = native.linear(x, native.tiled(w.t().contiguous(), b), 2)
    assert y.dtype == torch.int64 and torch.equal(y, x.long() @ w.t() + b)
    xc = _spikes((3, 4, 6, 5), 0.4, 2)
    wc = torch.randint(-(2**40), 2**40, (9, 4, 3, 3), generator=gen)
    geom = conv_geometry((6, 5), (3, 3), [1, 1], [1, 1], [1, 1], xc.device)
    table = native.tiled(wc.permute(2, 3, 1, 0).reshape(-1, 9).contiguous(), None)
    expected = F.conv2d(xc.double(), wc.double(), None, 1, 1)  # |sums| < 2⁵³ here: float64 is exact
    for mode in native.CONV_MODES:
        yc, _ = native.conv(xc, table, geom, 2, mode)
        assert torch.equal(yc, expected.long())


CONVS = [  # (C, O, H, W, kernel, stride, padding, dilation)
    (1, 15, 9, 9, 3, 1, 1, 1), (5, 16, 8, 7, 3, 2, 1, 1), (20, 70, 6, 6, 3, 1, 0, 1), (3, 8, 10, 10, 5, 1, 2, 2),
    (7, 3, 5, 5, 1, 1, 0, 1), (16, 64, 8, 8, 4, 2, 1, 1), (70, 20, 4, 5, 3, 1, 1, 1),  # 70: the 64-byte scan
    (2, 3, 3, 3, 3, 1, 0, 1),  # 1×1 outputs of 3 channels: a whole 8-wide store spans the next images' rows
]


@needs_compiler
@pytest.mark.parametrize("mode", list(native.CONV_MODES))
@pytest.mark.parametrize("density", [0.0, 0.05, 0.5])
@pytest.mark.parametrize("spec", CONVS)
def test_conv_equals_conv2d_with_the_pair_count(spec: tuple[int, ...], density: float, mode: str,
                                                many_threads: None) -> None:
    c, o, h, w_, k, s, p, d = spec
    gen = torch.Generator().manual_seed(c * o)
    x = _spikes((5, c, h, w_), density, c + o)
    w = torch.randn(o, c, k, k, dtype=torch.float64, generator=gen)
    b = torch.randn(o, dtype=torch.float64, generator=gen)
    geom = conv_geometry((h, w_), (k, k), [s, s], [p, p], [d, d], x.device)
    table = native.tiled(w.permute(2, 3, 1, 0).reshape(-1, o).contiguous(), b)
    expected = F.conv2d(x.double(), w, b, s, p, d)
    y, pairs = native.conv(x, table, geom, 2, mode)
    torch.testing.assert_close(y, expected, rtol=0, atol=TOL)
    assert pairs == conv_pair_count(x, geom)
    y_cl, _ = native.conv(x.contiguous(memory_format=torch.channels_last), table, geom, 1, mode)
    assert torch.equal(y_cl, y)  # channels-last spikes read in place; the image split changes no sum


@needs_compiler
def test_runtime_native_equals_torch_kernels_and_reports_it(many_threads: None) -> None:
    model, shape = make_hybrid("sdsnn", "lif_hard")
    graph = convert_model(model, InputSpec(shape, T))
    x = random_input(shape, seed=5)
    out, rep = EventRuntime(graph).run(x)
    ref, rep_torch = EventRuntime(graph, config=RuntimeConfig(kernel="torch")).run(x)
    torch.testing.assert_close(out, ConvertedModel(graph)(x), rtol=0, atol=1e-9)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-9)
    assert "native" in {c.method for c in rep.layers} and "native" not in {c.method for c in rep_torch.layers}
    assert [(c.events, c.accumulations) for c in rep.layers] == [(c.events, c.accumulations) for c in rep_torch.layers]
    one = EventRuntime(graph, config=RuntimeConfig(threads=1)).run(x)[0]
    assert torch.equal(one, EventRuntime(graph, config=RuntimeConfig(threads=3)).run(x)[0])


def test_an_unknown_kernel_name_is_refused() -> None:
    model, shape = make_hybrid("mlp", "if_soft")
    with pytest.raises(ValueError, match="event kernel must be one of auto, native, torch"):
        EventRuntime(convert_model(model, InputSpec(shape, T)), config=RuntimeConfig(kernel="fast"))


def test_rows_too_long_for_int32_event_indices_are_refused_and_the_runtime_falls_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    huge = torch.zeros(1, dtype=torch.bool).expand(3, 2**31)  # no memory: a view
    with pytest.raises(ValueError, match="too large for the compiled event kernels' int32"):
        native.linear(huge, native.tiled(torch.zeros(4, 2, dtype=torch.float64), None))
    monkeypatch.setattr(native, "INT32_LIMIT", 8)  # every layer of the model is "too large" now
    model, shape = make_hybrid("sdsnn", "if_soft")
    graph = convert_model(model, InputSpec(shape, T))
    x = random_input(shape, seed=3)
    out, rep = EventRuntime(graph).run(x)
    assert "native" not in {c.method for c in rep.layers}
    torch.testing.assert_close(out, ConvertedModel(graph)(x), rtol=0, atol=1e-9)


@pytest.fixture
def fresh_native(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The compiled-kernel state of a new process, building into ``tmp_path``."""
    monkeypatch.setattr(native, "_loaded", None)
    monkeypatch.setattr(native, "_failure", None)
    monkeypatch.setattr(events_module, "_warned_native", False)
    monkeypatch.setenv(native.DIR_ENV, str(tmp_path))
    return tmp_path


def test_without_a_compiler_auto_warns_once_and_runs_the_torch_kernels(fresh_native: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "/nonexistent/spikeforge-cc")
    with pytest.raises(native.NativeUnavailable, match="no C compiler: '/nonexistent/spikeforge-cc'"):
        native.load()
    model, shape = make_hybrid("sdsnn", "if_soft")
    graph = convert_model(model, InputSpec(shape, T))
    x = random_input(shape, seed=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out, rep = EventRuntime(graph).run(x)
        EventRuntime(graph).run(x)
    assert [str(w.message).count("compiled kernels are unavailable") for w in caught] == [1]
    assert "native" not in {c.method for c in rep.layers}
    torch.testing.assert_close(out, ConvertedModel(graph)(x), rtol=0, atol=1e-9)
    with pytest.raises(native.NativeUnavailable, match="no C compiler"):
        EventRuntime(graph, config=RuntimeConfig(kernel="native")).run(x)


@pytest.fixture
def broken_source(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The kernels' source replaced by a file that does not compile."""
    broken = tmp_path / "src" / "events.c"
    broken.parent.mkdir()
    broken.write_text("int64_t linear_f64(void) { return undefined_name; }\n")
    monkeypatch.setattr(native, "SOURCE", broken)
    return broken


@needs_compiler
def test_a_failed_compile_names_the_error_and_leaves_no_file(fresh_native: Path, broken_source: Path) -> None:
    with pytest.raises(native.NativeUnavailable, match=r"compiling events\.c with .* failed: .*error"):
        native.load()
    assert not list(fresh_native.glob("*.so")) and not list(fresh_native.glob("*.tmp"))


@needs_compiler
def test_the_library_is_built_once_and_reused(fresh_native: Path) -> None:
    first = native.build()
    stamp = first.stat().st_mtime_ns
    assert native.build() == first and first.stat().st_mtime_ns == stamp
    assert [p.name for p in fresh_native.iterdir()] == [first.name]
    assert native.load().path == first


@needs_compiler
def test_an_empty_batch_gives_empty_outputs() -> None:
    tiled = native.tiled(torch.ones(4, 3, dtype=torch.float64), torch.ones(3, dtype=torch.float64))
    y, events = native.linear(torch.zeros(0, 4, dtype=torch.bool), tiled, 2)
    assert y.shape == (0, 3) and events == 0
    geom = conv_geometry((3, 3), (1, 1), [1, 1], [0, 0], [1, 1], torch.device("cpu"))
    y, pairs = native.conv(torch.zeros(0, 4, 3, 3, dtype=torch.bool), tiled, geom, 2)
    assert y.shape == (0, 3, 3, 3) and pairs == 0


@needs_compiler
def test_any_nonzero_byte_is_an_event_and_float_spikes_are_compared_with_zero() -> None:
    gen = torch.Generator().manual_seed(9)
    raw = torch.randint(0, 256, (6, 150), dtype=torch.uint8, generator=gen) * (torch.rand(6, 150) < 0.3)
    w = torch.randn(5, 150, dtype=torch.float64, generator=gen)
    tiled = native.tiled(w.t().contiguous(), None)
    expected = F.linear((raw != 0).double(), w)
    for x in (raw, raw.view(torch.bool), (raw != 0).double()):
        y, events = native.linear(x, tiled)
        torch.testing.assert_close(y, expected, rtol=0, atol=TOL)
        assert events == int((raw != 0).sum())


@needs_compiler
def test_mismatched_layouts_are_refused() -> None:
    tiled = native.tiled(torch.ones(9 * 2, 3, dtype=torch.float64), None)
    geom = conv_geometry((4, 4), (3, 3), [1, 1], [1, 1], [1, 1], torch.device("cpu"))
    with pytest.raises(ValueError, match=r"geometry for \(4, 4\) inputs got \(5, 5\)"):
        native.conv(torch.zeros(1, 2, 5, 5, dtype=torch.bool), tiled, geom)
    with pytest.raises(ValueError, match="tiles must be contiguous"):
        native.TiledWeights(tiled.tiles.transpose(1, 2), None, tiled.width, 3)
    with pytest.raises(ValueError, match="tiled bias"):
        native.TiledWeights(tiled.tiles, torch.zeros(3, dtype=torch.float64), tiled.width, 3)


def test_contradicting_method_and_kernel_are_refused() -> None:
    model, shape = make_hybrid("mlp", "if_soft")
    graph = convert_model(model, InputSpec(shape, T))
    for method, kernel in (("native", "torch"), ("csr", "native")):
        with pytest.raises(ValueError, match="contradict each other"):
            EventRuntime(graph, config=RuntimeConfig(method=method, kernel=kernel))


@needs_compiler
def test_the_torch_integer_path_equals_the_compiled_one() -> None:
    model, shape = make_hybrid("mlp", "if_soft")
    graph = convert_model(model, InputSpec(shape, T))
    for n in graph.synaptic():  # integer weights and biases: both runtimes take the int path
        for name, t in n.tensors.items():
            n.tensors[name] = torch.randint(-3, 4, t.shape, generator=torch.Generator().manual_seed(1)).to(t.dtype)
    x = random_input(shape, seed=6)
    out, rep = EventRuntime(graph).run(x)
    ref, rep_torch = EventRuntime(graph, config=RuntimeConfig(kernel="torch")).run(x)
    assert "int" in {c.method for c in rep.layers} and torch.equal(out, ref)
    assert [c.accumulations for c in rep.layers] == [c.accumulations for c in rep_torch.layers]


@needs_compiler
def test_a_failed_build_is_not_retried_by_the_next_process(fresh_native: Path, broken_source: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(native.NativeUnavailable):
        native.build()
    assert list(fresh_native.glob("*.failed"))

    def no_compile(*_args: object) -> str:
        raise AssertionError("compiled again")

    monkeypatch.setattr(native, "_compile", no_compile)
    with pytest.raises(native.NativeUnavailable, match="error"):
        native.build()


def test_a_shared_temporary_folder_is_not_trusted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(native.tempfile, "gettempdir", lambda: str(tmp_path))
    folder = tmp_path / f"spikeforge-native-{os.getuid()}"
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)
    with pytest.raises(native.NativeUnavailable, match="not a private folder"):
        native._private_tmp()
    folder.chmod(0o700)
    assert native._private_tmp() == folder


@needs_compiler
def test_a_bound_kernel_equals_the_checked_call_and_refuses_other_inputs() -> None:
    gen = torch.Generator().manual_seed(11)
    w = torch.randn(300, 10, dtype=torch.float64, generator=gen)
    tiled = native.tiled(w, torch.randn(10, dtype=torch.float64, generator=gen))
    x = _spikes((12, 300), 0.1, 4)
    bound = native.bind_linear(tiled, x.shape, 2)
    for _ in range(2):  # the same pointers serve every call
        y, events = bound(x)
        assert torch.equal(y, native.linear(x, tiled, 2)[0]) and events == int(x.sum())
    assert torch.equal(bound(x.t().contiguous().t())[0], y)  # a strided view is copied, not misread
    for bad, why in ((x[:5], r"shape \(12, 300\), got torch.bool \(5, 300\)"), (x.double(), "got torch.float64")):
        with pytest.raises(ValueError, match=why):
            bound(bad)
    with pytest.raises(ValueError, match=r"spikes are \[N, F\], got shape \(12, 3, 100\)"):
        native.bind_linear(tiled, (12, 3, 100))
    geom = conv_geometry((6, 6), (3, 3), [1, 1], [1, 1], [1, 1], torch.device("cpu"))
    table = native.tiled(torch.randn(9 * 4, 5, dtype=torch.float64, generator=gen), None)
    xc = _spikes((3, 4, 6, 6), 0.2, 5)
    conv = native.bind_conv(table, geom, xc.shape, 1, "scatter")
    assert torch.equal(conv(xc)[0], native.conv(xc, table, geom, 1, "scatter")[0])
    with pytest.raises(ValueError, match=r"shape \(3, 4, 6, 6\), got torch.bool \(2, 4, 6, 6\)"):
        conv(xc[:2])
    with pytest.raises(ValueError, match="conv mode must be one of auto, gather, scatter, got 'fast'"):
        native.bind_conv(table, geom, xc.shape, 1, "fast")


@needs_compiler
def test_the_runtime_plans_per_input_layout_and_rebinds_when_the_threads_change() -> None:
    model, shape = make_hybrid("sdsnn", "if_soft")
    graph = convert_model(model, InputSpec(shape, T))
    runtime, dense = EventRuntime(graph), ConvertedModel(graph)
    threads = torch.get_num_threads()
    try:
        for batch, n in ((4, 1), (3, 1), (4, 2)):  # a smaller batch is a new layout; new thread counts rebind
            torch.set_num_threads(n)
            x = random_input(shape, seed=batch, b=batch)
            torch.testing.assert_close(runtime.run(x)[0], dense(x), rtol=0, atol=1e-9)
    finally:
        torch.set_num_threads(threads)
    layouts = {key[1][0] for key in runtime._calls}  # noqa: SLF001 - the plans' input shapes
    assert {int(s[1]) for s in layouts} == {3, 4}
    bound = {k for call in runtime._calls.values() for k in call.kernels}  # noqa: SLF001
    assert {t for _, t in bound} == {1, 2}


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    pytest.skip("no /proc/self/status VmRSS here")


@needs_compiler
def test_changing_thread_counts_neither_leak_nor_exceed_the_pool() -> None:
    gen = torch.Generator().manual_seed(12)
    x = _spikes((120, 7840), 0.1, 6)
    tiled = native.tiled(torch.randn(7840, 300, dtype=torch.float64, generator=gen), None)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(3)  # the pool: the kernels enter it whole, the members they do not need idle
        expected = native.linear(x, tiled, 1)[0]
        for n in (3, 2):
            native.linear(x, tiled, n)  # every member's event lists made once
        before = _rss_mib()
        for _ in range(60):  # asking for 3 then 2 threads: no member ends (and leaks its lists), none restarts
            for n in (3, 2):
                assert torch.equal(native.linear(x, tiled, n)[0], expected)
        assert _rss_mib() - before < 8
        torch.set_num_threads(1)  # a pool smaller than asked for: one member does every row
        assert torch.equal(native.linear(x, tiled, 4)[0], expected)
    finally:
        torch.set_num_threads(threads)


@needs_compiler
def test_python_threads_may_call_the_kernels_at_once() -> None:
    gen = torch.Generator().manual_seed(13)
    tiled = native.tiled(torch.randn(500, 40, dtype=torch.float64, generator=gen), None)
    xs = [_spikes((64, 500), 0.2, seed) for seed in range(4)]
    expected = [native.linear(x, tiled, 1)[0] for x in xs]
    bound = native.bind_linear(tiled, (64, 500), 2)

    def work(k: int) -> bool:
        return all(torch.equal(bound(xs[k])[0], expected[k]) for _ in range(30))

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(work, range(4)))


@needs_compiler
def test_one_layer_fed_contiguous_and_channels_last_spikes_plans_each_layout() -> None:
    model, shape = make_hybrid("sdsnn", "if_soft")
    graph = convert_model(model, InputSpec(shape, T))
    runtime = EventRuntime(graph)
    node = next(n for n in graph.synaptic() if n.op == "linear")
    seen: list[list[torch.Tensor]] = []
    synaptic = runtime.synaptic

    def capture(n: Node, xs: list[torch.Tensor], count: LayerCount) -> torch.Tensor:
        if n is node:
            seen.append(xs)
        return synaptic(n, xs, count)

    runtime.synaptic = capture  # type: ignore[method-assign]
    runtime.run(random_input(shape, seed=7))
    spikes = [_spikes(tuple(x.shape), 0.2, 8 + k) for k, x in enumerate(seen[0])]
    expected = ConvertedModel(graph).synapses[module_key(node.name)]([x.double() for x in spikes])
    last = [x.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3) if x.dim() == 5 else x  # as convs leave them
            for x in spikes]
    for xs in ([x.contiguous() for x in spikes], last, [x.contiguous() for x in spikes]):
        y = synaptic(node, xs, RuntimeReport(2, T).layer(node.name))
        torch.testing.assert_close(y, expected, rtol=0, atol=1e-9)
    assert len({key for key in runtime._calls if key[0] == node.name}) >= 2  # noqa: SLF001


def test_the_call_plans_stay_bounded_when_every_input_length_is_new(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events_module, "MAX_PLANS", 4)
    model, shape = make_hybrid("mlp", "if_soft")
    graph = convert_model(model, InputSpec(shape, T))
    runtime, dense = EventRuntime(graph), ConvertedModel(graph)
    for steps in range(2, 8):  # a new T each call: new layouts for every layer
        x = random_input(shape, seed=steps, t=steps)
        torch.testing.assert_close(runtime.run(x)[0], dense(x), rtol=0, atol=1e-9)
        assert len(runtime._calls) <= 4  # noqa: SLF001


CANARY = -7.25  # what the guard zones around a raw kernel call's output hold before and after it
GUARD = 64  # float64 elements of guard on each side: more than a whole 64-wide tile store could spill


@needs_compiler
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_the_kernels_write_nothing_outside_their_output(threads: int) -> None:
    """The conv kernels store a row's partial tile whole where the rows after it are the same thread's:
    with guard zones around the output, any store past its end (or before it) shows."""
    kernels, pool = native.load(), torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        for c, o, hw, k, pad in ((2, 3, 3, 3, 0), (1, 15, 6, 3, 1), (3, 20, 4, 1, 0), (5, 70, 3, 3, 1)):
            geom = conv_geometry((hw, hw), (k, k), [1, 1], [pad, pad], [1, 1], torch.device("cpu"))
            w = torch.randn(o, c, k, k, dtype=torch.float64, generator=torch.Generator().manual_seed(o))
            table = native.tiled(w.permute(2, 3, 1, 0).reshape(-1, o).contiguous(), None)
            x = _spikes((5, hw, hw, c), 0.5, o)  # channels-last bytes, as the kernel reads them
            src, (inv_ptr, inv) = geom.source32(), geom.inverse32()
            (ho, wo), n_out = geom.out_hw, 5 * geom.out_hw[0] * geom.out_hw[1] * o
            for mode in native.CONV_MODES.values():
                buf = torch.full((n_out + 2 * GUARD,), CANARY, dtype=torch.float64)
                out = buf[GUARD:GUARD + n_out]
                kernels.conv[torch.float64](x.data_ptr(), 5, hw * hw, c, src.data_ptr(), ho * wo, geom.taps,
                                            inv_ptr.data_ptr(), inv.data_ptr(), table.tiles.data_ptr(), o,
                                            table.width, mode, None, out.data_ptr(), threads)
                assert (buf[:GUARD] == CANARY).all() and (buf[GUARD + n_out:] == CANARY).all(), (c, o, mode)
                expected = F.conv2d(x.permute(0, 3, 1, 2).double(), w, None, 1, pad)
                torch.testing.assert_close(out.view(5, ho, wo, o).permute(0, 3, 1, 2), expected, rtol=0, atol=TOL)
        for f, o in ((9, 3), (70, 20), (300, 65)):
            tiled = native.tiled(torch.randn(f, o, dtype=torch.float64), None)
            x = _spikes((7, f), 0.5, f)
            buf = torch.full((7 * o + 2 * GUARD,), CANARY, dtype=torch.float64)
            kernels.linear[torch.float64](x.data_ptr(), 7, f, tiled.tiles.data_ptr(), o, tiled.width, None,
                                          buf[GUARD:].data_ptr(), threads)
            assert (buf[:GUARD] == CANARY).all() and (buf[GUARD + 7 * o:] == CANARY).all(), (f, o)
    finally:
        torch.set_num_threads(pool)


@needs_compiler
def test_a_very_large_call_does_not_leave_its_event_lists_resident() -> None:
    x = _spikes((1024, 10_000), 0.5, 14)  # event lists of 40 MB: more than the kernels keep between calls
    tiled = native.tiled(torch.zeros(10_000, 8, dtype=torch.float64), None)
    before = _rss_mib()
    y, events = native.linear(x, tiled, 1)
    assert events == int(x.sum()) and _rss_mib() - before < 12  # the 20 MB of indices it wrote are freed
