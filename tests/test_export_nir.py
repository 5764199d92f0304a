"""NIR export: graph structure, file round trip, semantics against an independent NIR simulator,
developed and compacted runs, refusals, and the ``spikeforge export`` command."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from develop_helpers import synthetic_splits, tiny_config, tiny_model, tiny_recipe
from nir_reference import NirSimulator
from reparam_models import make_hybrid, random_input

from spikeforge import layers as L
from spikeforge.cli import main as cli_main
from spikeforge.develop.compact import compact_run
from spikeforge.export import ExportOptions, export_run, graph_to_nir, model_to_nir, nir_neuron, write_nir
from spikeforge.models import build_model, neuron_sites
from spikeforge.neurons import IFNode, NeuronConfig, NeuronParams, lif_beta_params, lif_params
from spikeforge.reparam import ConvertedModel, InputSpec, convert_model
from spikeforge.reparam.graph import ConvertedGraph, Node, load_graph
from spikeforge.train.checkpoint import load_tensors
from spikeforge.train.engine import train
from spikeforge.train.run_files import RunDir
from spikeforge.train.rundir import load_run

DT = 1.0
OUT_TOL = 1e-10  # float64 readout agreement
MARGIN = 1e-9  # no membrane may land this close to a threshold (≥ vs > and rounding could then differ)
T, B = 5, 3
PLIF_TAU_START, PLIF_TAU_STEP = 1.5, 0.25  # distinct learned τ per PLIF site


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
    assert back.nodes["fc1"].weight.dtype == np.float64  # the converted graph's float64, by default
    # conv weights: with batch norm folded in, the NIR conv computes conv → BN (eval statistics)
    x = torch.rand(4, cfg.in_channels, cfg.input_size, cfg.input_size, dtype=torch.float64)
    conv = back.nodes["conv1"]
    got = F.conv2d(x, torch.from_numpy(conv.weight), torch.from_numpy(conv.bias), padding=tuple(conv.padding))
    with torch.no_grad():
        m64 = model.double()
        ref = m64.conv1(x[None])[0]
        ref = m64.bn1(ref[None])[0] if hasattr(m64, "bn1") else ref
    assert torch.allclose(got, ref, rtol=0, atol=1e-12)
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


def test_a_membrane_exactly_on_the_threshold_fires_in_both() -> None:
    """spikeforge fires at h ≥ θ, NIR at v > θ': the export writes θ' = nextafter(θ, −∞), the same comparison."""
    fc = L.Linear(1, 1)
    with torch.no_grad():
        fc.weight.fill_(1.0)
        fc.bias.zero_()
    model = torch.nn.Sequential()
    for name, m in (("flatten", L.Flatten()), ("fc", fc), ("sn", IFNode(threshold=1.0, v_reset=0.0))):
        model.add_module(name, m)
    model = model.double()
    graph = model_to_nir(model, (1, 1, 1))
    x = torch.tensor([1.0, np.nextafter(1.0, 0.0)], dtype=torch.float64).view(1, 2, 1, 1, 1)  # [T=1, B=2, ...]
    with torch.no_grad():
        ours = model(x)[0, :, 0]
    theirs = NirSimulator(graph).run(x.numpy())["output"][0, :, 0]
    assert ours.tolist() == theirs.tolist() == [1.0, 0.0]


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


# ------------------------------------------------------------------ 2b. hybrids, residual networks, options


def converted_spikes(graph: ConvertedGraph, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    rec: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        y = ConvertedModel(graph)(x, lambda n, _xs, out: rec.__setitem__(n.name, out) if n.op in (
            "neuron", "threshold") else None)
    return y, rec


def check_in_simulator(graph: ConvertedGraph, x: torch.Tensor, options: ExportOptions,
                       hybrid: torch.nn.Module | None = None) -> NirSimulator:
    """Export ``graph``, run it in the reference simulator: every neuron's and unit's spikes equal."""
    exported = graph_to_nir(graph, options)
    ref, spikes = converted_spikes(graph, x)
    sim = NirSimulator(exported, options.dt)
    rec = sim.run(x.numpy())
    assert sim.margin > MARGIN  # no membrane within float noise of its threshold on this data
    assert spikes and all(np.array_equal(rec[k], v.numpy()) for k, v in spikes.items()), \
        [k for k, v in spikes.items() if not np.array_equal(rec[k], v.numpy())]
    assert np.allclose(rec["output"], ref.numpy(), rtol=0, atol=OUT_TOL)
    if hybrid is not None:
        with torch.no_grad():
            assert np.allclose(rec["output"], hybrid(x).numpy(), rtol=0, atol=OUT_TOL)
    return sim


HYBRID_CASES = [  # model, sites, coding, options
    ("sdsnn", "all", "bitplane", ExportOptions()),
    ("sdsnn_out", "all", "unary", ExportOptions(threshold_node="threshold", scale_node="scale")),
    ("convnet_max", "every2", "bitplane", ExportOptions(pool_node="sum", dt=0.5)),
    ("mlp", "every2", "bitplane", ExportOptions(unit_r=True, scale_node="scale")),
    ("resnet19_standard", "every2", "bitplane", ExportOptions()),
    ("resnet19_sew", "none", "bitplane", ExportOptions()),  # SEW sums of spikes: integer units
    ("resnet19_sew", "every2", "unary", ExportOptions(threshold_node="threshold")),
    ("resnet19_ms", "every2", "bitplane", ExportOptions(pool_node="sum")),
    ("resnet18_sew", "every2", "bitplane", ExportOptions()),  # max pool of spikes: sum pool + OR unit
]


@pytest.mark.parametrize(("name", "sites", "coding", "options"), HYBRID_CASES)
def test_converted_hybrids_and_residual_networks_run_in_the_simulator(name: str, sites: str, coding: str,
                                                                     options: ExportOptions) -> None:
    model, shape = make_hybrid(name, "lif_hard", sites)
    x = random_input(shape, seed=11)
    graph = convert_model(model, InputSpec(shape, x.shape[0]), coding)
    check_in_simulator(graph, x, options, model)


@pytest.mark.parametrize("coding", ["bitplane", "unary"])
def test_pixel_input_and_its_bias_map_export(coding: str) -> None:
    """8-bit pixels through threshold units; the padded first conv's bias map becomes the units' drive."""
    model, shape = make_hybrid("sdsnn", "lif_hard", "all")
    gen = torch.Generator().manual_seed(3)
    pix = torch.randint(0, 256, (2, *shape), generator=gen).to(torch.float64).unsqueeze(0).expand(3, 2, *shape)
    c = shape[0]
    graph = convert_model(model, InputSpec(shape, 3, "bitplane", (0.4,) * c, (0.6,) * c), coding)
    assert "bias_map" in graph.node("conv1").tensors
    for options in (ExportOptions(), ExportOptions(threshold_node="threshold", scale_node="scale")):
        sim = check_in_simulator(graph, pix.contiguous(), options)
        readers = [sim.graph.nodes[d] for s_, d in sim.graph.edges if s_ == "input"]
        assert len(readers) == 8 and all(isinstance(r, nir.LIF | nir.Threshold) for r in readers)


def test_exported_hybrid_file_round_trip(tmp_path: Path) -> None:
    model, shape = make_hybrid("resnet19_standard", "lif_hard", "every2")
    graph = convert_model(model, InputSpec(shape, 3))
    write_nir(graph_to_nir(graph), tmp_path / "h.nir")
    back = nir.read(tmp_path / "h.nir")
    x = random_input(shape, seed=4)
    ref, _ = converted_spikes(graph, x)
    assert np.allclose(NirSimulator(back).run(x.numpy())["output"], ref.numpy(), rtol=0, atol=OUT_TOL)
    kinds = {type(n).__name__ for n in back.nodes.values()}
    assert {"Conv2d", "Affine", "LIF", "AvgPool2d", "Flatten"} <= kinds and "Threshold" not in kinds


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


def test_real_valued_max_pool_and_format1_graphs_are_refused_naming_the_node(tmp_path: Path) -> None:
    model, shape = make_hybrid("resnet18_ms", "lif_hard", "none")  # max pool of the stem's membrane
    with pytest.raises(ValueError, match=r"max pool 'stem\.pool' acts on real values"):
        model_to_nir(model, shape)
    with pytest.raises(ValueError, match=r"'sn'.*constant drive"):
        nir_neuron("sn", NeuronParams(1.0, 1.0, 0.1, 1.0, 0.0))
    old = ConvertedGraph([Node("input", "input", [], {"encoding": "analog", "shape": [2]}),
                          Node("q", "quantize", ["input"], {"step": 1.0, "levels": 3}),
                          Node("output", "output", ["q"], {"scales": [1.0]})], {"format": "spikeforge.converted/1"})
    with pytest.raises(ValueError, match=r"'q' \(quantize\).*format-1.*convert the run again"):
        graph_to_nir(old)


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


@pytest.fixture(scope="module")
def hybrid_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("nirh") / "run"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="develop: a 2-epoch run never prunes")  # pruning is not the point
        train(tiny_recipe(2, hybrid=True), run_dir, quiet=True, splits=synthetic_splits())
    return run_dir


def test_cli_exports_a_hybrid_run_and_a_converted_directory(hybrid_run: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A developed hybrid run (sn1 a SpikingReLU) exports directly and from `spikeforge convert`'s output."""
    conv = tmp_path / "conv"
    assert cli_main(["convert", str(hybrid_run), "--out", str(conv), "--coding", "unary"]) == 0
    assert "exportable to NIR" in capsys.readouterr().out
    direct, converted = tmp_path / "direct.nir", tmp_path / "converted.nir"
    assert cli_main(["export", str(hybrid_run), "--out", str(direct), "--json", "--threshold-node", "threshold",
                     "--scale-node", "scale"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["coding"] == "bitplane" and rep["neuron_only"] and rep["node_types"]["Threshold"] == 4  # L = 15
    assert cli_main(["export", str(conv), "--out", str(converted), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["coding"] == "unary" and rep["neuron_sites"]["sn1.u14"] > 0 and "Threshold" not in rep["node_types"]
    graph = load_graph(conv)
    x = (torch.rand(T, B, 1, 8, 8, generator=torch.Generator().manual_seed(2)) < 0.5).double()
    ref, spikes = converted_spikes(graph, x)
    sim = NirSimulator(nir.read(converted))
    rec = sim.run(x.numpy())
    assert sim.margin > MARGIN and all(np.array_equal(rec[k], v.numpy()) for k, v in spikes.items())
    assert np.allclose(rec["output"], ref.numpy(), rtol=0, atol=OUT_TOL)
    assert cli_main(["export", str(conv), "--out", str(tmp_path / "bad-dt.nir"), "--dt", "0"]) == 1
    assert "dt must be" in capsys.readouterr().err
