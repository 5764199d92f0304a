"""RunDir: the one owner of a run directory's files; checkpoints are committed as one; failure paths name the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from spikeforge.atomic import write_json
from spikeforge.train.checkpoint import NonFiniteError, save_tensors
from spikeforge.train.checkpoint_store import CheckpointError, CheckpointWarning
from spikeforge.train.run_files import RunDir


def _model(seed: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 2)).sum().backward()
    opt.step()
    return model, opt


def _commit(run: RunDir, epoch: int, acc: float | None = 0.5, keep: int = 2) -> torch.nn.Module:
    model, opt = _model(epoch)
    run.commit_checkpoint(model, opt, {"name": "r"}, {"m": {"k": 1}}, {"m": [{"s": epoch}]}, epoch, 0.5,
                          test_accuracy=acc, keep=keep)
    return model


def test_checkpoint_round_trip_keeps_last_k_and_the_best(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    assert run.last_checkpoint() is None and not run.holds_model()
    for epoch, acc in ((1, 0.2), (2, 0.9), (3, 0.4), (4, 0.5)):
        model = _commit(run, epoch, acc)
    kept = sorted(p.name for p in (run.path / RunDir.CHECKPOINTS).iterdir())
    assert kept == ["best", "epoch-0002", "epoch-0003", "epoch-0004", "latest"]  # last 2 and the best (epoch 2)
    ckpt = run.last_checkpoint()
    assert ckpt is not None and (ckpt.epoch, ckpt.best_accuracy, ckpt.hook_states) == (4, 0.5, {"m": [{"s": 4}]})
    assert ckpt.methods_meta() == {"m": {"k": 1}} and run.method_meta("m") == {"k": 1} and run.committed_epoch() == 4
    loaded = torch.nn.Linear(2, 1)
    run.load_weights_into(loaded)
    assert torch.equal(loaded.weight, model.weight)
    opt = torch.optim.SGD(loaded.parameters(), lr=0.1, momentum=0.9)
    run.load_optimizer_into(opt, ckpt)
    assert opt.state_dict()["state"][0]["momentum_buffer"].shape == (1, 2)
    best = RunDir(run.path, "best")
    assert best.read_model_meta()["epoch"] == 2
    assert json.loads((run.path / "checkpoints" / "best").read_text())["epoch"] == 2
    with pytest.raises(FileExistsError, match="already holds a model"):
        run.check_new_model()


def test_uncommitted_and_damaged_checkpoints_are_passed_over_and_cleaned(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    for epoch in (1, 2):
        _commit(run, epoch)
    ckpts = tmp_path / RunDir.CHECKPOINTS
    (ckpts / "epoch-0003").mkdir()  # renamed into place, but `latest` never switched: not committed
    (ckpts / ".epoch-0004.tmp-99").mkdir()  # staging folder of a killed process
    (tmp_path / ".model.json.x.tmp").write_text("{")  # temporary file of a killed write
    weights = ckpts / "epoch-0002" / RunDir.MODEL_WEIGHTS
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")  # same size, other content
    with pytest.warns(CheckpointWarning, match=r"epoch-0002 \(model.safetensors does not match its SHA-256"):
        ckpt = run.last_checkpoint()
    assert ckpt is not None and ckpt.epoch == 1
    removed = run.clean_after_crash(ckpt)
    assert sorted(removed) == [".epoch-0004.tmp-99", ".model.json.x.tmp", "epoch-0002", "epoch-0003"]
    assert RunDir(tmp_path).committed_epoch() == 1


def test_a_non_finite_state_is_never_committed(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    _commit(run, 1)
    model, opt = _model(2)
    with torch.no_grad():
        model.weight[0, 1] = float("nan")
    with pytest.raises(NonFiniteError, match=r"the model at epoch 2 \(not saved; .* keeps its checkpoint of epoch 1\): "
                                             r"tensor 'weight' \(1 of 2 values\) holds NaN"):
        run.commit_checkpoint(model, opt, {}, {}, {}, 2, 0.5)
    assert run.committed_epoch() == 1 and not (tmp_path / RunDir.CHECKPOINTS / "epoch-0002").exists()


def test_flat_layout_loads_and_an_interrupted_flat_checkpoint_is_refused(tmp_path: Path) -> None:
    """Run directories of earlier versions kept model.* and optim.* at the top (written one after another)."""
    model, opt = _model(0)
    save_tensors(tmp_path / RunDir.MODEL_WEIGHTS, model.state_dict())
    write_json(tmp_path / RunDir.MODEL_META, {"recipe": {"name": "r"}, "epoch": 3})
    save_tensors(tmp_path / RunDir.OPTIM_WEIGHTS, {})
    write_json(tmp_path / RunDir.OPTIM_META, {"epoch": 2, "best_accuracy": 0.1, "optimizer": {}, "hooks": {}})
    run = RunDir(tmp_path)
    assert run.committed_epoch() == 3 and run.read_recipe_document() == {"name": "r"}
    with pytest.raises(CheckpointError, match="model.json is at epoch 3 but optim.json at 2"):
        run.last_checkpoint()
    with pytest.raises(CheckpointError, match="keeps only its last epoch"):
        RunDir(tmp_path, "best").read_model_meta()


def test_metrics_truncation_torn_lines_and_bad_lines(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    for e in (1, 2, 3):
        run.append_metrics({"epoch": e})
    with open(tmp_path / RunDir.METRICS, "a") as f:
        f.write('{"epoch": 4, "tra')  # a crash while appending
    assert [r["epoch"] for r in run.read_metrics()] == [1, 2, 3]  # readers skip a torn last line
    run.truncate_metrics(2)
    assert (tmp_path / RunDir.METRICS).read_text() == '{"epoch": 1}\n{"epoch": 2}\n'
    with open(tmp_path / RunDir.METRICS, "a") as f:
        f.write("{not json\n")
    with pytest.raises(ValueError, match=r"metrics\.jsonl:3: not valid JSON"):
        run.read_metrics()
    with pytest.raises(FileNotFoundError, match="no metrics"):
        RunDir(tmp_path / "none").read_metrics()
    with pytest.raises(ValueError, match="NaN"):
        run.append_metrics({"epoch": 5, "loss": float("nan")})


def test_recipe_document_and_artifacts(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    with pytest.raises(FileNotFoundError, match="is this a run directory"):
        run.read_recipe_document()
    run.write_recipe('name = "from-toml"\n')
    assert run.read_recipe_document() == {"name": "from-toml"} and run.recipe_source().endswith("recipe.toml")
    run.save_model({"w": torch.zeros(1)}, {"name": "from-json"}, {})
    assert run.read_recipe_document() == {"name": "from-json"}  # the model's model.json is authoritative
    assert run.recipe_source().endswith("checkpoints/epoch-0000/model.json")
    assert run.artifact("plot.png") == tmp_path / "plot.png"
    for bad in ("model.json", "../x.png", "a/b.png", "checkpoints", ".hidden.json"):
        with pytest.raises(ValueError, match="not a valid artifact name"):
            run.artifact(bad)
    assert json.loads(run.write_json_artifact("report.json", {"a": 1}).read_text()) == {"a": 1}
    assert run.owns(tmp_path / "checkpoints" / "epoch-0000" / "model.json") and not run.owns(tmp_path / "x.nir")
