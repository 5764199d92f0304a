"""``spikeforge sites``: the site table and the policy's choice."""

from __future__ import annotations

import pytest

from spikeforge.cli import main


def test_sites_lists_shapes_and_selection(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sites", "--recipe", "mnist-sdsnn", "--set", 'hybrid.sites="sn2,sn_out"']) == 0
    out = capsys.readouterr().out
    lines = {line.split()[1]: line.split() for line in out.splitlines() if line[:3].strip().isdigit()}
    assert lines["sn1"][2:] == ["LIFNode", "15x28x28", "11760", "-"]
    assert lines["sn2"][2:] == ["LIFNode", "40x14x14", "7840", "ReLU"]
    assert lines["sn3"][2:] == ["LIFNode", "300", "300", "-"]
    assert lines["sn_out"][2:] == ["LIFNode", "10", "10", "ReLU"]
    assert "selects 2 of 4 sites: sn2, sn_out" in out


def test_sites_without_hybrid_and_auto_without_data(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sites", "--recipe", "mnist-sdsnn"]) == 0
    assert "no [hybrid] section" in capsys.readouterr().out
    assert main(["sites", "--recipe", "mnist-sdsnn", "--set", 'hybrid.sites="auto:0.25"']) == 0
    assert "pass --data" in capsys.readouterr().out


def test_sites_bad_policy(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sites", "--recipe", "mnist-sdsnn", "--set", 'hybrid.sites="lats:1"']) == 1  # one line, exit 1
    assert capsys.readouterr().err.startswith("spikeforge sites: error: packaged recipe mnist-sdsnn: hybrid.sites: "
                                              "hybrid policy 'lats:1': unknown policy 'lats'")
