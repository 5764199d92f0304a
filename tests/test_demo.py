"""``spikeforge demo`` end to end on a slice of the bundled MNIST subset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spikeforge.cli import main


def test_demo_trains_converts_verifies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    code = main(["demo", "--out", str(out), "--epochs", "1", "--device", "cpu",
                 "--set", "data.train_limit=200", "--set", "data.test_limit=100", "--set", "model.width=0.5"])
    text = capsys.readouterr().out
    assert code == 0
    assert "| none |" in text and "| first:1 | sn1 |" in text
    assert "every synaptic layer sees only binary spikes (bit-plane input encoding): yes" in text
    rows = json.loads((out / "comparison.json").read_text())
    assert [r["policy"] for r in rows] == ["none", "first:1"]
    for r in rows:
        assert r["max_abs_logit_diff"] <= 1e-9 and r["argmax_agreement"] == 1.0 and r["binary_inputs"]
        assert r["macs"] == 0  # bit-plane input: even the first layer only accumulates
    assert (out / "accuracy_vs_energy.png").stat().st_size > 0
