"""Atomic safetensors/JSON checkpoints and optimizer state round trip."""

from __future__ import annotations

import pytest
import torch

from spikeforge.train.checkpoint import (
    load_state_into,
    load_tensors,
    optimizer_from_files,
    optimizer_to_files,
    read_json,
    save_tensors,
    write_json,
)


def test_tensors_round_trip_and_no_temp_files(tmp_path) -> None:
    t = {"a": torch.randn(3, 4), "b": torch.arange(5)}
    save_tensors(tmp_path / "w.safetensors", t)
    back = load_tensors(tmp_path / "w.safetensors")
    assert torch.equal(back["a"], t["a"]) and torch.equal(back["b"], t["b"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]


def test_failed_write_keeps_previous_file(tmp_path) -> None:
    path = tmp_path / "w.safetensors"
    save_tensors(path, {"a": torch.ones(2)})
    with pytest.raises(Exception):  # noqa: B017 - any failure must leave the old file intact
        save_tensors(path, {"a": "not a tensor"})  # type: ignore[dict-item]
    assert torch.equal(load_tensors(path)["a"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]


def test_corrupt_and_missing_files_name_the_file(tmp_path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="bad.safetensors"):
        load_tensors(bad)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        read_json(tmp_path / "missing.json")
    (tmp_path / "x.json").write_text("{nope")
    with pytest.raises(ValueError, match="x.json"):
        read_json(tmp_path / "x.json")


def test_state_mismatch_is_reported(tmp_path) -> None:
    m = torch.nn.Linear(3, 2)
    with pytest.raises(ValueError, match="shape mismatches"):
        load_state_into(m, {"weight": torch.zeros(2, 4), "bias": torch.zeros(2)}, tmp_path / "f")
    with pytest.raises(ValueError, match="missing"):
        load_state_into(m, {"weight": torch.zeros(2, 3)}, tmp_path / "f")


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_optimizer_state_round_trip(tmp_path, name: str) -> None:
    torch.manual_seed(0)
    m = torch.nn.Linear(4, 3)
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) if name == "sgd" else torch.optim.Adam(m.parameters())
    for _ in range(3):
        opt.zero_grad()
        m(torch.randn(5, 4)).square().sum().backward()
        opt.step()
    tensors, rest = optimizer_to_files(opt)
    save_tensors(tmp_path / "o.safetensors", tensors)
    write_json(tmp_path / "o.json", rest)
    m2 = torch.nn.Linear(4, 3)
    m2.load_state_dict(m.state_dict())
    params = m2.parameters()
    opt2 = torch.optim.SGD(params, lr=0.1, momentum=0.9) if name == "sgd" else torch.optim.Adam(params)
    optimizer_from_files(opt2, load_tensors(tmp_path / "o.safetensors"), read_json(tmp_path / "o.json"))
    x = torch.randn(5, 4)
    for mm, oo in ((m, opt), (m2, opt2)):
        oo.zero_grad()
        mm(x).square().sum().backward()
        oo.step()
    assert torch.allclose(m.weight, m2.weight, atol=0, rtol=0)
