"""Run directory → ``spikeforge convert`` → ``spikeforge verify`` on the bundled MNIST subset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from reparam_models import calibrate_steps, randomize

from spikeforge.cli import main
from spikeforge.data.config import DataConfig
from spikeforge.hybrid.config import HybridConfig
from spikeforge.hybrid.policy import apply_hybrid
from spikeforge.models import ModelConfig, build_model
from spikeforge.neurons import NeuronConfig
from spikeforge.reparam import convert_run, load_graph, verify
from spikeforge.train.recipe import Recipe
from spikeforge.train.rundir import save_model

SITES = ["sn2", "sn3"]
LEVELS = 5
TEST_SAMPLES = 48
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # only to calibrate the random model's steps


def _make_run(path: Path, encoding: str) -> Path:
    recipe = Recipe(name="tiny-hybrid",
                    model=ModelConfig(name="sdsnn_convnet", num_classes=10, in_channels=1, input_size=28,
                                      width=0.3,
                                      neuron=NeuronConfig(kind="lif", tau=2.0, threshold=0.5)),
                    data=DataConfig(name="mnist-bundled", time_steps=3, test_limit=TEST_SAMPLES, encoding=encoding),
                    hybrid=HybridConfig(sites=",".join(SITES), levels=LEVELS))
    torch.manual_seed(0)
    model = build_model(recipe.model)
    apply_hybrid(model, SITES, LEVELS)
    randomize(model, torch.Generator().manual_seed(0))
    x = (torch.rand(3, 8, 1, 28, 28) - MNIST_MEAN) / MNIST_STD
    calibrate_steps(model.eval(), x)
    save_model(path, model, recipe, {"hybrid": {"sites": SITES, "levels": LEVELS, "policy": ",".join(SITES)}})
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_run(tmp_path_factory.mktemp("run"), "direct")


def test_rate_encoding_same_draws(tmp_path: Path) -> None:
    """A stochastic encoding: both models get the same spike draws; the first layer is then binary too."""
    run = _make_run(tmp_path / "run", "rate")
    convert_run(run, tmp_path / "conv")
    res = verify(tmp_path / "conv", batch_size=16, limit=32, snn=False)
    assert res["exact"] and res["binary_inputs"] and res["spike_flips"] == 0
    assert all(lay["binary"] for lay in res["layers"]) and res["macs"] == 0.0


def test_convert_and_verify_api(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "conv"
    graph = convert_run(run_dir, out, input_encoding="bitplane")
    assert (out / "graph.json").is_file() and (out / "model.safetensors").is_file()
    assert load_graph(out).meta["source"]["run_dir"] == str(run_dir.resolve())
    assert graph.meta["input_encoding"] == "bitplane" and graph.input.attrs["encoding"] == "pixels"
    res = verify(out, batch_size=20)
    assert res["samples"] == TEST_SAMPLES
    assert res["max_abs_logit_diff"] <= 1e-9 and res["argmax_agreement"] == 1.0 and res["binary_inputs"]
    assert res["macs"] == 0.0  # bitplane input: no MAC anywhere
    assert res["neuron_only"] and res["certificate"]["certified"] and res["input_encoding"] == "bitplane"
    assert res["batch_size"] == 20 and res["peak_rss_mb"] > 0
    e = res["energy"]
    assert e["converted"]["energy_pj"] == pytest.approx(res["sops"] * 0.9)
    assert e["ann"]["macs"] > 0 and e["snn"]["sops"] > 0 and e["hybrid"]["macs"] > 0
    assert 0.0 <= res["accuracy"] <= 1.0 and res["accuracy"] == res["hybrid_accuracy"]


def test_cli_convert_verify_json(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "conv"
    assert main(["convert", str(run_dir), "--out", str(out), "--coding", "unary"]) == 0
    assert "MACs" in capsys.readouterr().out
    assert main(["verify", str(out), "--json", "--batch-size", "16"]) == 0
    res = json.loads(capsys.readouterr().out)
    for key in ("max_abs_logit_diff", "argmax_agreement", "binary_inputs", "accuracy", "sops", "macs",
                "energy_pj"):
        assert key in res
    assert res["binary_hidden_inputs"] and res["argmax_agreement"] == 1.0 and res["max_abs_logit_diff"] <= 1e-9
    assert not res["binary_inputs"] and res["first_non_binary"] == "conv1"  # the analog first layer, named
    assert res["macs"] > 0 and res["analog_input_layers"] == ["conv1"]
    assert main(["verify", str(out), "--no-snn", "--limit", "10"]) == 0
    text = capsys.readouterr().out
    assert "verification: PASS" in text and "| conv1 |" in text


def test_cli_verify_event_runtime(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``verify --event``: the runtime on the same bounded batches, equal to dense, counts = verifier's."""
    out = tmp_path / "conv"
    convert_run(run_dir, out, input_encoding="bitplane")
    assert main(["verify", str(out), "--json", "--event", "--no-snn", "--batch-size", "20"]) == 0
    res = json.loads(capsys.readouterr().out)
    ev = res["event_runtime"]
    assert ev["equal"] and ev["max_abs_diff_vs_dense"] <= 1e-9 and ev["counts_match_verifier"]
    assert ev["samples"] == TEST_SAMPLES and ev["accumulations_per_sample"] == pytest.approx(res["sops"], rel=1e-12)
    assert ev["layers"] and all(set(lay["methods"]) <= {"int", "native", "sparse", "dense"} for lay in ev["layers"])
    assert all(lay["seconds"] > 0 and lay["events"] <= lay["inputs"] for lay in ev["layers"])
    assert res["peak_rss_mb"] > 0 and ev["dense_seconds"] > 0 and ev["event_seconds"] > 0
    assert main(["verify", str(out), "--event", "--no-snn", "--limit", "10"]) == 0
    text = capsys.readouterr().out
    assert "event-driven runtime: equal" in text and "| method |" in text
