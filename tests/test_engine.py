"""Training engine: every packaged static recipe trains on tiny files in the exact official
format, writes a loadable run directory, resumes, and evaluates; schedules behave."""

from __future__ import annotations

import gzip
import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spikeforge.cli import main
from spikeforge.train.config import ScheduleConfig
from spikeforge.train.engine import lr_factor, train
from spikeforge.train.recipe import load_recipe
from spikeforge.train.rundir import load_run

TINY = ["train.epochs=1", "train.batch_size=8", "train.eval_batch_size=8", "data.time_steps=2"]


def write_idx(path: Path, arr: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def make_mnist(root: Path, n_train: int = 24, n_test: int = 8) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        write_idx(root / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return root


def make_cifar(root: Path, classes: int) -> Path:
    rng = np.random.default_rng(1)
    if classes == 10:
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            doc = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": list(range(4)),
                   b"batch_label": name.encode()}
            (folder / name).write_bytes(pickle.dumps(doc, protocol=2))
        (folder / "batches.meta").write_bytes(pickle.dumps(
            {b"label_names": [f"c{i}".encode() for i in range(10)], b"num_cases_per_batch": 4}, protocol=2))
    else:
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True)
        for name, n in (("train", 12), ("test", 4)):
            doc = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"fine_labels": list(range(n)),
                   b"coarse_labels": [0] * n, b"filenames": [b"x.png"] * n}
            (folder / name).write_bytes(pickle.dumps(doc, protocol=2))
        (folder / "meta").write_bytes(pickle.dumps(
            {b"fine_label_names": [f"f{i}".encode() for i in range(100)],
             b"coarse_label_names": [f"g{i}".encode() for i in range(20)]}, protocol=2))
    return root


def make_image_folder(root: Path, size: int = 40) -> Path:
    rng = np.random.default_rng(2)
    for split, n in (("train", 3), ("val", 1)):
        for c in ("ant", "bee"):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return root


@pytest.mark.parametrize(("recipe", "maker", "extra"), [
    ("mnist-sdsnn", make_mnist, ["model.width=0.25"]),
    ("cifar10-resnet19", lambda p: make_cifar(p, 10), ["model.width=0.0625"]),
    ("cifar100-resnet19", lambda p: make_cifar(p, 100), ["model.width=0.0625"]),
    ("cifar10-convnet", lambda p: make_cifar(p, 10), ["model.width=0.0625"]),
    ("imagenet-resnet34", make_image_folder, ["model.width=0.0625", "model.input_size=32"]),
])
def test_recipe_smoke(tmp_path: Path, recipe: str, maker, extra: list[str]) -> None:
    data = maker(tmp_path / "data")
    r = load_recipe(recipe, TINY + extra)
    rec = train(r, tmp_path / "run", data_root=data, device="cpu", quiet=True)
    assert 0.0 <= rec["test_accuracy"] <= 1.0 and rec["epoch"] == 1
    assert set(rec["firing_rates"]) and all(0.0 <= v <= 1.0 for v in rec["firing_rates"].values())
    for name in ("recipe.toml", "data.json", "metrics.jsonl", "training.png", "checkpoints/latest",
                 *(f"checkpoints/epoch-0001/{f}" for f in ("model.safetensors", "model.json", "optim.safetensors",
                                                          "optim.json", "manifest.json"))):
        assert (tmp_path / "run" / name).is_file(), name
    loaded = load_run(tmp_path / "run")
    assert loaded.recipe.name == recipe and loaded.meta["epoch"] == 1


def test_train_resume_evaluate_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_mnist(tmp_path / "mnist", 32, 16)
    args = ["train", "--recipe", "mnist-sdsnn", "--data", str(data), "--out", str(tmp_path / "run"), "--quiet",
            "--epochs", "1", "--device", "cpu"] + [a for s in TINY[1:] + ["model.width=0.25"] for a in ("--set", s)]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["epoch"] == 1
    assert main(args) == 1  # the CLI reports the error in one line
    assert "already holds a run (checkpoint of epoch 1); pass --resume" in capsys.readouterr().err
    assert main([*args[:-2 * (len(TINY) - 1 + 1) - 2], "--epochs", "2", "--resume",
                 *[a for s in TINY[1:] + ["model.width=0.25"] for a in ("--set", s)]]) == 0
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2]
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run"), "--data", str(data), "--json", "--device", "cpu"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["samples"] == 16 and ev["epoch"] == 2
    assert abs(ev["accuracy"] - json.loads(lines[-1])["test_accuracy"]) < 1e-9
    # the resolved recipe records the dataset folder, so later commands find it without --data
    assert load_run(tmp_path / "run").recipe.data.root == str(data.resolve())
    assert main(["evaluate", str(tmp_path / "run"), "--json", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == ev["accuracy"]


def test_training_learns_on_separable_data(tmp_path: Path) -> None:
    """A real learning check: two classes that differ in brightness are learned to > 90 %."""
    rng = np.random.default_rng(3)
    root = tmp_path / "m"
    root.mkdir()
    for split, n in (("train", 200), ("t10k", 100)):
        y = np.arange(n) % 2
        x = rng.integers(0, 60, (n, 28, 28)) + (y[:, None, None] * 180)
        write_idx(root / f"{split}-images-idx3-ubyte.gz", x)
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", y)
    r = load_recipe("mnist-sdsnn", ["train.epochs=3", "train.batch_size=20", "data.time_steps=4",
                                    "data.encoding=direct", "train.loss=ce", "model.spiking_output=false",
                                    "model.width=0.25"])
    rec = train(r, tmp_path / "run", data_root=root, device="cpu", quiet=True)
    assert rec["test_accuracy"] > 0.9


def test_lr_schedules() -> None:
    cos = ScheduleConfig(name="cosine", warmup_epochs=2, warmup_start_factor=0.1)
    assert lr_factor(0, 10, cos) == pytest.approx(0.1)
    assert lr_factor(1, 10, cos) == pytest.approx(0.55)
    assert lr_factor(2, 10, cos) == pytest.approx(1.0)
    assert lr_factor(6, 10, cos) == pytest.approx(0.5)
    assert lr_factor(10, 10, cos) == pytest.approx(0.0, abs=1e-12)
    step = ScheduleConfig(name="step", step_size=3, gamma=0.5)
    assert [lr_factor(e, 10, step) for e in (0, 2.9, 3, 6)] == [1.0, 1.0, 0.5, 0.25]
    with pytest.raises(ValueError, match="schedule.name"):
        lr_factor(0, 10, ScheduleConfig(name="linear"))


def test_bad_device_and_loss(tmp_path: Path) -> None:
    data = make_mnist(tmp_path / "mnist")
    with pytest.raises(ValueError, match="train.loss"):
        load_recipe("mnist-sdsnn", [*TINY, "train.loss=hinge", "model.width=0.25"])
    r = load_recipe("mnist-sdsnn", [*TINY, "model.width=0.25"])
    r.train.loss = "hinge"
    with pytest.raises(ValueError, match="train.loss"):
        train(r, tmp_path / "run", data_root=data, device="cpu", quiet=True)
    assert not (tmp_path / "run").exists()  # refused before anything was written
    r.train.loss = "ce"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            train(r, tmp_path / "run2", data_root=data, device="cuda", quiet=True)


def test_resume_continues_exactly(tmp_path: Path) -> None:
    """1 epoch + --resume to 3 equals 3 straight epochs, record for record (cosine lr with warm-up)."""
    data = make_mnist(tmp_path / "mnist", 48, 16)
    sets = [*TINY[1:], "model.width=0.25", "train.schedule.warmup_epochs=1", "train.optimizer.name=sgd",
            "train.optimizer.lr=0.05"]
    train(load_recipe("mnist-sdsnn", [*sets, "train.epochs=3"]), tmp_path / "a", data_root=data, device="cpu",
          quiet=True)
    train(load_recipe("mnist-sdsnn", [*sets, "train.epochs=1"]), tmp_path / "b", data_root=data, device="cpu",
          quiet=True)
    train(load_recipe("mnist-sdsnn", [*sets, "train.epochs=3"]), tmp_path / "b", data_root=data, device="cpu",
          quiet=True, resume=True)
    keys = ("epoch", "lr", "train_loss", "train_accuracy", "test_accuracy", "test_loss")
    recs = [[{k: json.loads(x)[k] for k in keys} for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
            for d in ("a", "b")]
    assert recs[0] == recs[1]


def test_compile_and_threads_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """train.compile runs the training steps through torch.compile (same numbers as eager up to float
    reassociation); train.threads sets torch's thread count; both may change on --resume; bad values are
    one line each."""
    from spikeforge.train.schema import RecipeError
    from spikeforge.train.validate import validate_recipe

    data = make_mnist(tmp_path / "mnist", 32, 16)
    settings = [*TINY, "model.width=0.25", "train.seed=3"]
    eager = train(load_recipe("mnist-sdsnn", settings), tmp_path / "eager", data_root=data, device="cpu", quiet=True)
    threads_before = torch.get_num_threads()
    try:
        compiled = train(load_recipe("mnist-sdsnn", [*settings, "train.compile=true", "train.threads=1"]),
                         tmp_path / "compiled", data_root=data, device="cpu")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads_before)
    out = capsys.readouterr().out
    assert "torch.compile" in out and "threads: 1" in out
    assert compiled["train_loss"] == pytest.approx(eager["train_loss"], rel=1e-3, abs=1e-5)
    a, b = load_run(tmp_path / "eager").model.state_dict(), load_run(tmp_path / "compiled").model.state_dict()
    assert a.keys() == b.keys()  # saved from the model, not the compiled wrapper (no _orig_mod. prefix)
    for bad, what in (("train.threads=0", "train.threads"), ('train.threads="many"', "train.threads")):
        with pytest.raises(RecipeError, match=what):
            validate_recipe(load_recipe("mnist-sdsnn", [bad]))
