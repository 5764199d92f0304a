"""NIR export: graph structure, file round trip, semantics against an independent NIR simulator,
developed and compacted runs, refusals, and the ``spikeforge export`` command."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from develop_helpers import synthetic_splits, tiny_config, tiny_model, tiny_recipe
from numpy.lib.stride_tricks import sliding_window_view

from spikeforge import layers as L
from spikeforge.cli import main as cli_main
from spikeforge.develop.compact import compact_run
from spikeforge.export import export_run, model_to_nir, nir_neuron, write_nir
from spikeforge.hybrid.spiking_relu import SpikingReLU
from spikeforge.models import build_model, neuron_sites, replace_module
from spikeforge.neurons import IFNode, NeuronConfig, NeuronParams, lif_beta_params, lif_params
from spikeforge.train.checkpoint import load_tensors
from spikeforge.train.engine import train
from spikeforge.train.run_files import RunDir
from spikeforge.train.rundir import load_run

DT = 1.0
OUT_TOL = 1e-10  # float64 readout agreement
MARGIN = 1e-9  # no membrane may land this close to a threshold (≥ vs > and rounding could then differ)
T, B = 5, 3
PLIF_TAU_START, PLIF_TAU_STEP = 1.5, 0.25  # distinct learned τ per PLIF site


# ------------------------------------------------------------------ an independent NIR simulator


def np_conv2d(x: np.ndarray, node: nir.Conv2d) -> np.ndarray:
    """``[B, C, H, W]`` cross-correlation with zero padding, stride and dilation (groups = 1)."""
    assert node.groups == 1
    (ph, pw), (sh, sw), (dh, dw) = node.padding, node.stride, node.dilation
    w = node.weight
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    span = ((w.shape[2] - 1) * dh + 1, (w.shape[3] - 1) * dw + 1)
    win = sliding_window_view(xp, span, axis=(2, 3))[:, :, ::sh, ::sw, ::dh, ::dw]
    return np.einsum("bchwij,ocij->bohw", win, w) + node.bias[None, :, None, None]


def np_avgpool(x: np.ndarray, node: nir.AvgPool2d) -> np.ndarray:
    (kh, kw), (sh, sw) = node.kernel_size, node.stride
    assert not np.any(node.padding)
    return sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw].mean(axis=(-2, -1))


class NirSimulator:
    """Forward Euler (step ``dt``) of a NIR graph, per time step, nodes in topological order.

    LIF: ``v += dt/τ · (v_leak − v + R·I)``; IF: ``v += dt · R·I``; then ``z = v > v_threshold`` and
    ``v = v_reset`` where ``z``. NIR does not fix the initial state: LIF starts at ``v_leak``, IF at 0.
    A node's input is the sum of its predecessors' outputs.
    """

    def __init__(self, graph: nir.NIRGraph, dt: float = DT) -> None:
        self.graph, self.dt = graph, dt
        self.preds = {k: [a for a, b in graph.edges if b == k] for k in graph.nodes}
        self.order: list[str] = []
        while len(self.order) < len(graph.nodes):
            self.order += [k for k in graph.nodes if k not in self.order
                           and all(p in self.order for p in self.preds[k])]
        self.margin = np.inf

    def neuron(self, node: object, i: np.ndarray, v: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(node, nir.LIF):
            v = np.broadcast_to(node.v_leak, i.shape) if v is None else v
            v = v + self.dt / node.tau * (node.v_leak - v + node.r * i)
        else:
            v = np.zeros_like(i) if v is None else v
            v = v + self.dt * node.r * i
        self.margin = min(self.margin, float(np.abs(v - node.v_threshold).min()))
        z = v > node.v_threshold
        return z.astype(np.float64), np.where(z, node.v_reset, v)

    def step(self, name: str, x: np.ndarray, state: dict[str, np.ndarray]) -> np.ndarray:
        node = self.graph.nodes[name]
        if isinstance(node, nir.Input | nir.Output):
            return x
        if isinstance(node, nir.Conv2d):
            return np_conv2d(x, node)
        if isinstance(node, nir.AvgPool2d):
            return np_avgpool(x, node)
        if isinstance(node, nir.Flatten):
            assert node.start_dim == 0 and node.end_dim == -1
            return x.reshape(x.shape[0], -1)
        if isinstance(node, nir.Affine):
            return x @ node.weight.T + node.bias
        if isinstance(node, nir.LIF | nir.IF):
            z, state[name] = self.neuron(node, x, state.get(name))
            return z
        raise AssertionError(f"simulator: unsupported node {type(node).__name__}")

    def run(self, x_seq: np.ndarray) -> dict[str, np.ndarray]:
        """Every node's output ``[T, B, ...]`` for the input ``x_seq [T, B, ...]``."""
        state: dict[str, np.ndarray] = {}
        rec: dict[str, list[np.ndarray]] = {k: [] for k in self.order}
        for x in x_seq:
            out: dict[str, np.ndarray] = {}
            for k in self.order:
                inp = x if not self.preds[k] else sum(out[p] for p in self.preds[k])
                out[k] = self.step(k, inp, state)
                rec[k].append(out[k])
        return {k: np.stack(v) for k, v in rec.items()}


def site_spikes(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    spikes: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, o, n=n: spikes.__setitem__(n, o.detach()))
             for n, m in neuron_sites(model).items()]
    with torch.no_grad():
        out = model(x)
    for h in hooks:
        h.remove()
    return out, spikes


# ------------------------------------------------------------------ models


def randomise_norms(model: torch.nn.Module, seed: int = 3) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                for t, lo, hi in ((m.running_mean, -0.3, 0.3), (m.running_var, 0.5, 1.5),
                                  (m.weight, 0.5, 1.5), (m.bias, -0.2, 0.6)):
                    t.copy_(torch.rand(t.shape, generator=gen) * (hi - lo) + lo)
    return model


def model_with(name: str, neuron: NeuronConfig, size: int | None = None, **model_kw: object) -> torch.nn.Module:
    cfg = tiny_config(name)
    cfg.neuron = neuron
    cfg.input_size = size or cfg.input_size
    for k, v in model_kw.items():
        setattr(cfg, k, v)
    torch.manual_seed(0)
    return randomise_norms(build_model(cfg)).double().eval()


def shape_of(name: str, size: int) -> tuple[int, int, int]:
    return (tiny_config(name).in_channels, size, size)


# ------------------------------------------------------------------ 1. structure and round trip


@pytest.mark.parametrize("name", ["sdsnn_convnet", "cifar_convnet"])
def test_round_trip_chain_and_weights(name: str, tmp_path: Path) -> None:
    model = randomise_norms(tiny_model(name)).eval()
    cfg = tiny_config(name)
    graph = model_to_nir(model, (cfg.in_channels, cfg.input_size, cfg.input_size))
    write_nir(graph, tmp_path / "m.nir")
    back = nir.read(tmp_path / "m.nir")
    children = [n for n, m in model.named_children() if not isinstance(m, torch.nn.BatchNorm2d)]
    chain = ["input", *children, "output"]
    assert back.edges == list(zip(chain[:-1], chain[1:], strict=True))
    kinds = {"input": nir.Input, "output": nir.Output, "flatten": nir.Flatten, "fc1": nir.Affine,
             "fc2": nir.Affine, "conv1": nir.Conv2d, "pool1": nir.AvgPool2d, "sn1": nir.LIF}
    for k, cls in kinds.items():
        assert type(back.nodes[k]) is cls, k
    assert back.metadata["readout_node"] == "fc2" and float(back.metadata["dt"]) == DT
    for fc in ("fc1", "fc2"):
        lin = model.get_submodule(fc)
        assert np.array_equal(back.nodes[fc].weight, lin.weight.detach().numpy())
        assert np.array_equal(back.nodes[fc].bias, lin.bias.detach().numpy())
    # conv weights: with batch norm folded in, the NIR conv computes conv → BN (eval statistics)
    x = torch.rand(4, cfg.in_channels, cfg.input_size, cfg.input_size)
    conv = back.nodes["conv1"]
    got = F.conv2d(x, torch.from_numpy(conv.weight), torch.from_numpy(conv.bias), padding=tuple(conv.padding))
    with torch.no_grad():
        ref = model.conv1(x[None])[0]
        ref = model.bn1(ref[None])[0] if hasattr(model, "bn1") else ref
    assert torch.allclose(got, ref, atol=1e-5)
    assert back.nodes["sn1"].tau.shape == tuple(back.nodes["conv1"].output_type["output"])


def test_neuron_mapping_reproduces_the_charge_equation() -> None:
    cases = [(lif_params(2.0, v_reset=0.0), {"tau": 2.0, "r": 1.0, "v_leak": 0.0}),
             (lif_params(4.0, decay_input=False, v_reset=-0.2), {"tau": 4.0, "r": 4.0, "v_leak": -0.2}),
             (lif_beta_params(0.2, v_reset=0.1), {"tau": 1.25, "r": 1.25, "v_leak": 0.1})]
    rng = np.random.default_rng(0)
    v, x = rng.normal(size=16), rng.normal(size=16)
    for p, expected in cases:
        for dt in (1.0, 0.5):
            n = nir_neuron("sn", p, dt)
            assert n.kind == "LIF" and n.v_threshold == p.threshold and n.v_reset == p.v_reset
            assert n.tau == pytest.approx(expected["tau"] * dt) and n.r == pytest.approx(expected["r"])
            assert n.v_leak == pytest.approx(expected["v_leak"])
            euler = v + dt / n.tau * (n.v_leak - v + n.r * x)
            assert np.allclose(euler, float(p.decay) * v + float(p.input_gain) * x + float(p.bias), atol=1e-12)
    n = nir_neuron("sn", NeuronParams(1.0, 0.5, 0.0, 0.3, 0.0), dt=0.5)
    assert n.kind == "IF" and n.r == pytest.approx(1.0)


def test_threshold_equality_is_the_documented_difference() -> None:
    """spikeforge fires at h ≥ θ, NIR at v > θ: a membrane exactly on θ spikes only in spikeforge."""
    model = torch.nn.Sequential()
    model.add_module("flatten", L.Flatten())
    model.add_module("sn", IFNode(threshold=1.0, v_reset=0.0))
    graph = model_to_nir(model.double(), (1, 1, 1))
    x = torch.tensor([1.0, 1.0 + 1e-6], dtype=torch.float64).view(1, 2, 1, 1, 1)  # [T=1, B=2, C, H, W]
    with torch.no_grad():
        ours = model(x)[0, :, 0]
    theirs = NirSimulator(graph).run(x.numpy())["output"][0, :, 0]
    assert ours.tolist() == [1.0, 1.0] and theirs.tolist() == [0.0, 1.0]


# ------------------------------------------------------------------ 2. semantics


SEMANTIC_CASES = {
    "lif-tau": ("sdsnn_convnet", NeuronConfig(threshold=0.2), None, {}),
    "if": ("sdsnn_convnet", NeuronConfig(kind="if", threshold=0.4), None, {}),
    "lif-beta-spiking-out": ("sdsnn_convnet", NeuronConfig(beta=0.2, threshold=0.25), None,
                             {"spiking_output": True}),
    "lif-vreset": ("sdsnn_convnet", NeuronConfig(tau=3.0, decay_input=False, threshold=0.3, v_reset=-0.1), None, {}),
    "plif-bn": ("cifar_convnet", NeuronConfig(kind="plif", tau=3.0, threshold=0.3), None, {}),
    "vgg11-avg-gap": ("vgg11", NeuronConfig(threshold=0.2), 32, {"pool": "avg", "width": 1 / 64}),
}


@pytest.mark.parametrize("case", list(SEMANTIC_CASES))
def test_nir_simulation_matches_the_model(case: str) -> None:
    name, neuron, size, kw = SEMANTIC_CASES[case]
    model = model_with(name, neuron, size, **kw)
    if neuron.kind == "plif":  # a learned τ per site, read at its current value
        for i, site in enumerate(neuron_sites(model).values()):
            site.w.data.fill_(-np.log(PLIF_TAU_START - 1 + PLIF_TAU_STEP * i))  # τ = 1 + exp(−w)
    size = size or tiny_config(name).input_size
    shape = shape_of(name, size)
    graph = model_to_nir(model, shape)
    assert graph.nodes["conv1"].weight.dtype == np.float64  # arrays keep the model's dtype
    x = torch.randn(T, B, *shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 1.5
    out, spikes = site_spikes(model, x)
    sim = NirSimulator(graph)
    rec = sim.run(x.numpy())
    assert sim.margin > MARGIN  # no membrane on a threshold: h ≥ θ (spikeforge) and v > θ (NIR) agree
    for site, s in spikes.items():
        assert 0 < float(s.mean()) < 1, f"{site}: vacuous check (silent or saturated)"
        assert np.array_equal(rec[site], s.numpy()), site
    assert np.allclose(rec["output"], out.numpy(), rtol=0, atol=OUT_TOL)


# ------------------------------------------------------------------ 3. developed and compacted runs


@pytest.fixture(scope="module")
def developed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("nir") / "run"
    train(tiny_recipe(4), run_dir, quiet=True, splits=synthetic_splits())
    return run_dir


def test_developed_run_exports_effective_weights(developed_run: Path, tmp_path: Path) -> None:
    rep = export_run(developed_run, tmp_path / "dev.nir")
    graph = nir.read(tmp_path / "dev.nir")
    raw = load_tensors(RunDir(developed_run).weights_path())
    mask = raw["fc1.weight_mask"]
    dead = mask.sum(1) == 0
    assert int(dead.sum()) > 0, "the tiny run pruned no fc1 neuron; the check would be vacuous"
    fc1 = graph.nodes["fc1"]
    assert np.array_equal(fc1.weight, (raw["fc1.weight"] * mask).numpy())
    assert not fc1.weight[dead.numpy()].any() and not fc1.bias[dead.numpy()].any()
    conv2 = graph.nodes["conv2"]
    assert np.array_equal(conv2.weight, (raw["conv2.weight"] * raw["conv2.weight_mask"]).numpy())
    assert rep["nonzero_weights"] < rep["weights"]
    assert rep["readout"] == "sn_out" and isinstance(graph.nodes["sn_out"], nir.LIF)
    assert graph.edges[-1] == ("sn_out", "output")


def test_compacted_run_exports_fewer_units_with_the_same_spikes(developed_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "compact"
    rep = compact_run(developed_run, out, splits=synthetic_splits(), count_energy=False)
    export_run(out, tmp_path / "small.nir")
    graph = nir.read(tmp_path / "small.nir")
    src = load_run(developed_run).model.double()
    assert graph.nodes["fc1"].weight.shape[0] == rep["widths_after"]["fc1"] < src.fc1.out_features
    assert graph.nodes["sn3"].v_threshold.shape == (rep["widths_after"]["fc1"],)
    x = (torch.rand(T, B, 1, 8, 8, generator=torch.Generator().manual_seed(2)) < 0.5).double()
    ref, _ = site_spikes(src, x)
    sim = NirSimulator(graph)
    got = sim.run(x.numpy())["output"]
    assert sim.margin > MARGIN and float(ref.sum()) > 0
    assert np.array_equal(got, ref.numpy())


# ------------------------------------------------------------------ 4. refusals


def test_soft_reset_is_refused_naming_the_site() -> None:
    model = model_with("sdsnn_convnet", NeuronConfig(reset="soft"))
    with pytest.raises(ValueError, match=r"'sn1'.*soft reset.*hard"):
        model_to_nir(model, (1, 8, 8))


def test_residual_hybrid_and_maxpool_models_are_refused() -> None:
    cfg = tiny_config()
    cfg.name, cfg.in_channels, cfg.width = "resnet19", 3, 1 / 64
    with pytest.raises(ValueError, match=r"residual block 'layer1\.0'"):
        model_to_nir(build_model(cfg), (3, 8, 8))
    hybrid = tiny_model()
    replace_module(hybrid, "sn1", SpikingReLU(levels=15))
    with pytest.raises(ValueError, match=r"site 'sn1' is a SpikingReLU.*spikeforge convert"):
        model_to_nir(hybrid, (1, 8, 8))
    with pytest.raises(ValueError, match=r"max pool 'pool1'"):
        model_to_nir(model_with("cifar_convnet", NeuronConfig(), pool="max"), (3, 8, 8))
    with pytest.raises(ValueError, match=r"'sn'.*constant drive"):
        nir_neuron("sn", NeuronParams(1.0, 1.0, 0.1, 1.0, 0.0))


def test_missing_nir_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nir", None)
    with pytest.raises(ImportError, match=r"spikeforge\[nir\]"):
        model_to_nir(tiny_model(), (1, 8, 8))


# ------------------------------------------------------------------ 5. command line


def test_cli_export_json(developed_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli" / "model.nir"
    assert cli_main(["export", str(developed_run), "--out", str(out), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    graph = nir.read(out)
    assert rep["out"] == str(out) and rep["nodes"] == len(graph.nodes) == 13
    assert rep["neuron_sites"] == {k: int(n.v_threshold.size) for k, n in graph.nodes.items()
                                   if isinstance(n, nir.LIF)}
    assert set(rep["neuron_sites"]) == {"sn1", "sn2", "sn3", "sn_out"} and rep["time_steps"] == 4
    assert not list(out.parent.glob(".*.tmp"))  # the atomic write left no temporary file
    assert cli_main(["export", str(developed_run), "--out", str(out)]) == 1  # an existing output is kept
    assert "already exists; choose another path or pass --force" in capsys.readouterr().err
    assert cli_main(["export", str(developed_run), "--out", str(out), "--force"]) == 0
    assert "readout 'sn_out'" in capsys.readouterr().out
    assert cli_main(["export", str(tmp_path / "missing"), "--out", str(out)]) == 1
    assert "not found" in capsys.readouterr().err
