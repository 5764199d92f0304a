"""``spikeforge import``: run directories that evaluate, train --resume, convert, compact, export and
structural development accept (bundled MNIST subset, tiny limits)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

nir = pytest.importorskip("nir")

from spikeforge.cli import main  # noqa: E402
from spikeforge.commands.evaluate import evaluate_run  # noqa: E402
from spikeforge.export import model_to_nir, write_nir  # noqa: E402
from spikeforge.models import ModelConfig, build_model  # noqa: E402
from spikeforge.neurons import NeuronConfig  # noqa: E402
from spikeforge.nir import load  # noqa: E402
from spikeforge.nir.graphnet import GraphNet  # noqa: E402
from spikeforge.train.checkpoint import read_json  # noqa: E402
from spikeforge.train.run_files import RunDir  # noqa: E402
from spikeforge.train.rundir import load_run  # noqa: E402

RECIPE = """
name = "nir-small"
[model]
name = "sdsnn_convnet"
[data]
name = "mnist-bundled"
time_steps = 2
encoding = "direct"
train_limit = 64
test_limit = 64
[train]
epochs = 1
batch_size = 32
eval_batch_size = 64
loss = "ce"
[train.optimizer]
name = "adam"
lr = 1e-3
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("nir-import")
    torch.manual_seed(0)
    neuron = NeuronConfig(kind="lif", beta=0.2, threshold=0.5)
    model = build_model(ModelConfig(name="sdsnn_convnet", width=0.25, neuron=neuron)).eval()
    write_nir(model_to_nir(model, (1, 28, 28)), d / "chain.nir")
    rng = np.random.default_rng(0)
    nodes = {"in": nir.Input(input_type=np.array([1, 28, 28])),
             "flat": nir.Flatten(input_type={"input": np.array([1, 28, 28])}, start_dim=0, end_dim=-1),
             "fc1": nir.Affine(weight=rng.normal(0, 0.1, (32, 784)), bias=np.zeros(32)),
             "lif1": nir.LIF(tau=np.full(32, 2.0), r=np.ones(32), v_leak=np.zeros(32), v_threshold=np.full(32, 0.3)),
             "fc2": nir.Affine(weight=rng.normal(0, 0.3, (32, 32)), bias=np.zeros(32)),
             "lif2": nir.LIF(tau=np.full(32, 2.0), r=np.ones(32), v_leak=np.zeros(32), v_threshold=np.full(32, 0.3)),
             "fc3": nir.Affine(weight=rng.normal(0, 0.3, (10, 32)), bias=np.zeros(10)),
             "out": nir.Output(output_type=np.array([10]))}
    edges = [("in", "flat"), ("flat", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("fc1", "lif2"),
             ("lif2", "fc3"), ("fc3", "out")]  # fc1 also feeds lif2: a residual branch
    nir.write(d / "residual.nir", nir.NIRGraph(nodes=nodes, edges=edges, type_check=False))
    (d / "small.toml").write_text(RECIPE)
    return {"dir": d, "chain": d / "chain.nir", "residual": d / "residual.nir", "recipe": d / "small.toml"}


def cli(*args: str | Path) -> int:
    return main([str(a) for a in args])


def test_import_evaluate_equals_direct_load(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    run = files["dir"] / "chain-run"
    assert cli("import", files["chain"], "--out", run, "--recipe", files["recipe"], "--json") == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["model_class"] == "Net" and rep["semantics"]["profile"] == "spikeforge"
    recipe_text = (run / "recipe.toml").read_text()
    assert 'name = "nir"' in recipe_text and "graph = " in recipe_text
    assert RunDir(run).read_model_meta()["imported_from"]["file"].endswith("chain.nir")
    loaded = load_run(run)
    direct = load(files["chain"])
    x = torch.rand(2, 3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), direct(x), rtol=0, atol=0)
    res = evaluate_run(str(run))
    assert res["samples"] == 64 and set(res["firing_rates"]) == {"sn1", "sn2", "sn3"}
    assert cli("import", files["chain"], "--out", run) == 1  # never overwrites a run


def test_resume_fine_tunes_and_export_round_trips(files: dict[str, Path]) -> None:
    run = files["dir"] / "tune-run"
    assert cli("import", files["chain"], "--out", run, "--recipe", files["recipe"]) == 0
    before = load_run(run).model.state_dict()["fc1.weight"].clone()
    assert cli("train", "--recipe", run / "recipe.toml", "--out", run, "--resume", "--quiet") == 0
    tuned = load_run(run)
    assert tuned.meta["epoch"] == 1 and not torch.equal(tuned.model.state_dict()["fc1.weight"], before)
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert np.isfinite(record["train_loss"])
    assert cli("export", run, "--out", files["dir"] / "tuned.nir") == 0
    again = load(files["dir"] / "tuned.nir")
    x = torch.rand(2, 2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(again(x), tuned.model(x), rtol=0, atol=0)


def test_develop_compact_and_convert(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    run, small = files["dir"] / "dev-run", files["dir"] / "dev-compact"
    assert cli("import", files["chain"], "--out", run, "--recipe", files["recipe"],
               "--set", "develop.min_consecutive_epochs=1") == 0
    assert "spikeforge import: warning: develop: a 1-epoch run never prunes" in capsys.readouterr().err  # plumbing
    assert "weight_mask" in " ".join(load_run(run).model.state_dict())  # equipped before saving, like training
    assert cli("train", "--recipe", run / "recipe.toml", "--out", run, "--resume", "--quiet") == 0
    assert "spikeforge train: warning: develop: a 1-epoch run never prunes" in capsys.readouterr().err
    assert cli("compact", run, "--out", small) == 0
    assert read_json(small / "compact.json")["max_abs_output_diff"] == 0
    assert cli("convert", run, "--out", files["dir"] / "converted") == 0  # the developed run, masks baked
    assert (files["dir"] / "converted" / "graph.json").is_file()


def test_general_graph_run(files: dict[str, Path]) -> None:
    run = files["dir"] / "residual-run"
    assert cli("import", files["residual"], "--out", run, "--recipe", files["recipe"], "--dt", "1") == 0
    loaded = load_run(run)
    assert isinstance(loaded.model, GraphNet)
    assert set(evaluate_run(str(run))["firing_rates"]) == {"lif1", "lif2"}
    assert cli("train", "--recipe", run / "recipe.toml", "--out", run, "--resume", "--quiet") == 0
    assert load_run(run).meta["epoch"] == 1


def test_bad_input_one_line(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    bad = files["dir"] / "bad.nir"
    bad.write_text("hello")
    assert cli("import", bad, "--out", files["dir"] / "x") == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "bad.nir: not a NIR file" in err
    assert cli("import", files["residual"], "--out", files["dir"] / "y") == 1  # no dt for the generic profile
    assert "pass dt (--dt)" in capsys.readouterr().err
    assert not (files["dir"] / "x").exists() and not (files["dir"] / "y").exists()
