"""Outputs that cannot destroy work: every command that writes refuses an existing output, a run directory or a
file inside one unless ``--force``; never writes into its own input; ``--force`` replaces only what spikeforge wrote,
and only once the command succeeded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from develop_helpers import synthetic_splits
from reliability_helpers import cli, snapshot, tiny_run

import spikeforge.data
from spikeforge.train.rundir import load_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    base = tmp_path_factory.mktemp("outputs")
    yield {"pure": tiny_run(base / "pure", hybrid=False), "hybrid": tiny_run(base / "hybrid", hybrid=True)}


@pytest.fixture
def data(monkeypatch: pytest.MonkeyPatch) -> None:
    """compact verifies on test data: the tiny runs' synthetic splits."""
    monkeypatch.setattr(spikeforge.data, "load_dataset", lambda cfg, root=None: synthetic_splits())


def test_a_command_never_writes_over_or_into_its_input(runs: dict[str, Path],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    run = runs["hybrid"]
    before = snapshot(run)
    for force in ([], ["--force"]):
        res = cli(capsys, "convert", run, "--out", run, *force)
        assert res.code == 1 and res.error_line == (f"spikeforge convert: error: --out {run} is the input {run}; a "
                                                    "command never writes over its input")
        weights = run / "checkpoints" / "epoch-0002" / "model.safetensors"
        res = cli(capsys, "export", run, "--out", weights, *force)
        assert res.error_line == (f"spikeforge export: error: --out {weights} is inside the input {run}; a command "
                                  "never writes into its input")
        res = cli(capsys, "compact", run, "--out", run.parent, *force)
        assert res.error_line == (f"spikeforge compact: error: --out {run.parent} contains the input {run}; choose an "
                                  "output beside it")
    assert snapshot(run) == before


def test_paths_inside_another_run(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, other = runs["pure"], tiny_run(tmp_path / "other", hybrid=False)
    before = snapshot(other)
    res = cli(capsys, "export", src, "--out", other / "model.nir")
    assert res.error_line == (f"spikeforge export: error: --out {other / 'model.nir'} is inside the run directory "
                              f"{other}; choose a path outside it or pass --force")
    latest = other / "checkpoints" / "latest"
    res = cli(capsys, "export", src, "--out", latest, "--force")
    assert res.error_line == (f"spikeforge export: error: --out {latest} is one of the files of the run directory "
                              f"{other}; choose another path")
    assert snapshot(other) == before
    assert cli(capsys, "export", src, "--out", other / "model.nir", "--force").code == 0
    assert snapshot(other) == {**before, "model.nir": snapshot(other)["model.nir"]}


def test_existing_outputs_need_force_and_force_replaces_only_spikeforge_outputs(
        runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], data: None) -> None:
    src, out = runs["pure"], tmp_path / "compacted"
    assert cli(capsys, "compact", src, "--out", out, "--samples", "8").code == 0
    first = snapshot(out)
    res = cli(capsys, "compact", src, "--out", out, "--samples", "8")
    assert res.error_line == (f"spikeforge compact: error: --out {out} already exists and is not empty (a run "
                              "directory); choose another path or pass --force to replace it")
    assert snapshot(out) == first
    assert cli(capsys, "compact", src, "--out", out, "--samples", "4", "--force").code == 0
    assert load_run(out).meta["compacted_from"] == str(src) and not list(tmp_path.glob(".*"))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    for command in (["compact", src], ["convert", runs["hybrid"]], ["import", tmp_path / "missing.nir"]):
        res = cli(capsys, *command, "--out", mine, "--force")
        assert res.code == 1, command
    assert snapshot(mine) == {"thesis.tex": snapshot(mine)["thesis.tex"]} and (mine / "thesis.tex").read_text() == \
        "years of work"
    res = cli(capsys, "compact", src, "--out", mine, "--force")
    assert res.error_line == (f"spikeforge compact: error: --out {mine} is a non-empty folder that spikeforge did not "
                              "write; --force replaces only run and converted directories")


def test_a_failed_command_restores_the_output_it_was_to_replace(
        runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        data: None) -> None:
    import spikeforge.develop.compact as compact

    src, out = runs["pure"], tmp_path / "compacted"
    assert cli(capsys, "compact", src, "--out", out, "--samples", "8").code == 0
    before = snapshot(out)
    real = compact.write_compacted

    def crash_after_writing(*args: object, **kwargs: object) -> object:
        real(*args, **kwargs)  # type: ignore[arg-type]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(compact, "write_compacted", crash_after_writing)
    res = cli(capsys, "compact", src, "--out", out, "--force")
    assert res.error_line == "spikeforge compact: error: [Errno 28] No space left on device"
    assert snapshot(out) == before and not list(tmp_path.glob(".*"))
    fresh = tmp_path / "fresh"
    assert cli(capsys, "compact", src, "--out", fresh).code == 1 and not fresh.exists()  # nothing half-written


def test_train_protects_runs_and_foreign_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from reliability_helpers import TINY_SETS, mnist_folder

    data = mnist_folder(tmp_path / "mnist")
    tiny = [a for s in TINY_SETS for a in ("--set", s)] + ["--quiet", "--device", "cpu", "--data", str(data)]
    run = tmp_path / "run"
    assert cli(capsys, "train", "--recipe", "mnist-sdsnn", "--out", run, *tiny).code == 0
    before = snapshot(run)
    res = cli(capsys, "train", "--recipe", "mnist-sdsnn", "--out", run, *tiny)
    assert res.error_line == (f"spikeforge train: error: {run} already holds a run (checkpoint of epoch 1); pass "
                              "--resume to continue it or --force to replace it")
    assert snapshot(run) == before
    res = cli(capsys, "train", "--recipe", "mnist-sdsnn", "--out", run, *tiny, "--force", "--resume")
    assert res.error_line == ("spikeforge train: error: --resume continues a run and --force replaces it: pass one of "
                              "them")
    assert cli(capsys, "train", "--recipe", "mnist-sdsnn", "--out", run, *tiny, "--force",
               "--set", "train.seed=1").code == 0
    assert load_run(run).recipe.train.seed == 1 and sorted(p.name for p in (run / "checkpoints").iterdir()) == \
        ["best", "epoch-0001", "latest"]
    for force in ([], ["--force"]):
        res = cli(capsys, "train", "--recipe", "mnist-sdsnn", "--out", data, *tiny, *force)
        assert res.error_line == (f"spikeforge train: error: --out {data} is a non-empty folder that is not a run "
                                  "directory; choose a new or empty folder (--force replaces only run directories)")
