"""RunDir: the one owner of a run directory's files; failure paths name the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from spikeforge.train.run_files import RunDir


def _commit(run: RunDir, epoch: int) -> None:
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 2)).sum().backward()
    opt.step()
    run.commit_checkpoint(model, opt, {"name": "r"}, {"m": {"k": 1}}, {"m": [{"s": epoch}]}, epoch, 0.5)


def test_start_checks_and_checkpoint_round_trip(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    with pytest.raises(FileNotFoundError, match=r"optim\.json not found \(nothing to resume\)"):
        run.check_can_start(resume=True)
    run.check_can_start(resume=False)
    run.create()
    run.append_metrics({"epoch": 1, "x": 1.0})
    with pytest.raises(FileExistsError, match="already holds a run"):
        run.check_can_start(resume=False)
    _commit(run, 1)
    ckpt = run.last_checkpoint()
    assert (ckpt.epoch, ckpt.best_accuracy, ckpt.hook_states) == (1, 0.5, {"m": [{"s": 1}]})
    assert ckpt.methods_meta() == {"m": {"k": 1}} and run.method_meta("m") == {"k": 1}
    model, opt = torch.nn.Linear(2, 1), None
    run.load_weights_into(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    run.load_optimizer_into(opt, ckpt)
    assert opt.state_dict()["state"][0]["momentum_buffer"].shape == (1, 2)
    with pytest.raises(FileExistsError, match="already holds a model"):
        run.check_new_model()


def test_interrupted_checkpoint_is_refused(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    _commit(run, 2)
    meta = json.loads((tmp_path / RunDir.MODEL_META).read_text())
    meta["epoch"] = 3  # model.json of epoch 3 written, optim.json of epoch 3 not (a crash between the two)
    (tmp_path / RunDir.MODEL_META).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="model.json is at epoch 3 but optim.json at 2"):
        run.last_checkpoint()


def test_metrics_truncation_and_bad_lines(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    for e in (1, 2, 3):
        run.append_metrics({"epoch": e})
    run.truncate_metrics(2)
    assert [r["epoch"] for r in run.read_metrics()] == [1, 2]
    with open(tmp_path / RunDir.METRICS, "a") as f:
        f.write("{not json\n")
    with pytest.raises(ValueError, match=r"metrics\.jsonl:3: not valid JSON"):
        run.read_metrics()
    with pytest.raises(FileNotFoundError, match="no metrics"):
        RunDir(tmp_path / "none").read_metrics()


def test_recipe_document_and_artifacts(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    with pytest.raises(FileNotFoundError, match="is this a run directory"):
        run.read_recipe_document()
    run.write_recipe('name = "from-toml"\n')
    assert run.read_recipe_document() == {"name": "from-toml"} and run.recipe_source().endswith("recipe.toml")
    run.save_model({"w": torch.zeros(1)}, {"name": "from-json"}, {})
    assert run.read_recipe_document() == {"name": "from-json"}  # model.json is authoritative
    assert run.artifact("plot.png") == tmp_path / "plot.png"
    for bad in ("model.json", "../x.png", "a/b.png"):
        with pytest.raises(ValueError, match="not a valid artifact name"):
            run.artifact(bad)
    assert json.loads(run.write_json_artifact("report.json", {"a": 1}).read_text()) == {"a": 1}
