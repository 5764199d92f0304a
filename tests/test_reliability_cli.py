"""One clear line per error: ``spikeforge <command>: error: <message>`` on stderr, exit 1 (2 for usage),
a traceback only with ``--debug`` or ``SPIKEFORGE_DEBUG=1``; Ctrl-C says where the run can be resumed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from reliability_helpers import TINY_SETS, cli, mnist_folder, snapshot, tiny_run

import spikeforge.train.engine as engine
from spikeforge.cli import main

TINY = [a for s in TINY_SETS for a in ("--set", s)] + ["--quiet", "--device", "cpu"]


@pytest.mark.parametrize("command", ["evaluate", "convert", "verify", "compact", "export", "plot"])
def test_every_command_reports_a_missing_run_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        command: str) -> None:
    missing = tmp_path / "missing"
    args = [command, missing] + (["--out", tmp_path / "out"] if command in ("convert", "compact", "export") else [])
    res = cli(capsys, *args)
    assert res.code == 1 and res.error_line.startswith(f"spikeforge {command}: error: {missing}")
    assert "Traceback" not in res.err and not (tmp_path / "out").exists()


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    res = cli(capsys, "train")
    assert res.code == 2 and res.err.splitlines()[-1] == ("spikeforge train: error: the following arguments are "
                                                          "required: --recipe")
    res = cli(capsys, "trian")
    assert res.code == 2 and "unknown command 'trian'" in res.err.splitlines()[-1]
    res = cli(capsys, "evaluate", "run", "--batch-size", "many")
    assert res.code == 2 and "argument --batch-size: invalid int value: 'many'" in res.err.splitlines()[-1]


def test_debug_shows_the_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match="missing"):
        main(["evaluate", str(tmp_path / "missing"), "--debug"])
    monkeypatch.setenv("SPIKEFORGE_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        main(["plot", str(tmp_path / "missing")])
    monkeypatch.setenv("SPIKEFORGE_DEBUG", "0")
    assert cli(capsys, "plot", tmp_path / "missing").code == 1


def test_internal_errors_name_their_type(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import spikeforge.commands.plot as plot

    def broken(args: object) -> int:
        raise KeyError("momentum")

    monkeypatch.setattr(plot, "run", broken)
    res = cli(capsys, "plot", tmp_path)
    assert res.code == 1 and res.error_line == ("spikeforge plot: error: KeyError: 'momentum' (an internal error; "
                                                "--debug shows where, please report it)")


def test_warnings_are_one_line_each(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = mnist_folder(tmp_path / "mnist")
    run = tmp_path / "run"
    assert cli(capsys, "train", "--recipe", "mnist-sdsnn", "--data", data, "--out", run, *TINY).code == 0
    (data / "t10k-labels-idx1-ubyte.gz").touch()  # same content
    other = mnist_folder(tmp_path / "other", n_test=6)
    res = cli(capsys, "evaluate", run, "--data", other, "--json")
    assert res.code == 0 and json.loads(res.out)["samples"] == 6
    lines = res.err.splitlines()
    assert lines and all(line.startswith("spikeforge evaluate: warning: data folder ") for line in lines), lines
    assert any("test.samples = 6 here, but 8 in the data the run was trained on" in line for line in lines)


def test_ctrl_c_says_where_to_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    data = mnist_folder(tmp_path / "mnist")
    run = tmp_path / "run"
    real = engine.train_one_epoch

    def interrupted_in_epoch_2(session: object, epoch: int) -> dict[str, object]:
        if epoch == 2:
            raise KeyboardInterrupt
        return real(session, epoch)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "train_one_epoch", interrupted_in_epoch_2)
    args = ["train", "--recipe", "mnist-sdsnn", "--data", str(data), "--out", str(run), *TINY, "--epochs", "3"]
    res = cli(capsys, *args)
    assert res.code == 130
    assert res.error_line == (f"spikeforge train: interrupted; {run} holds the checkpoint of epoch 1; continue with: "
                              f"spikeforge {' '.join(args)} --resume")
    assert not (run / "train.lock").exists()  # released
    monkeypatch.setattr(engine, "train_one_epoch", real)
    res = cli(capsys, *args, "--resume")
    assert res.code == 0 and json.loads(res.out)["epoch"] == 3


def test_plot_and_evaluate_of_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tiny_run(tmp_path / "run")
    before = snapshot(run)
    res = cli(capsys, "evaluate", run, "--best", "--batch-size", "0")
    assert res.code == 1 and res.error_line == "spikeforge evaluate: error: --batch-size must be >= 1, got 0"
    res = cli(capsys, "plot", run)
    assert res.code == 0 and res.out.split() == [str(run / "training.png"), str(run / "development.png")]
    assert {k: v for k, v in snapshot(run).items() if not k.endswith(".png")} == \
        {k: v for k, v in before.items() if not k.endswith(".png")}
