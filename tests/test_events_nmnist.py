"""N-MNIST: real files decode to plausible events; hand-written files decode exactly; loader."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from events_helpers import events, nmnist_bytes, random_events

from spikeforge.data.config import DataConfig
from spikeforge.data.events import EVENT_DATASETS, EventFormatError, read_nmnist
from spikeforge.data.events.nmnist import NMNIST_SIZE

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nmnist-1k"
REAL_TRAIN, REAL_TEST = 1000, 100
MAX_DURATION_US = 400_000  # saccades total ~300 ms
MIN_EVENTS, MAX_EVENTS = 500, 20_000
DIGITS = 10
needs_real = pytest.mark.skipif(not (REAL / "Train").is_dir(),
                                reason=f"real N-MNIST subset not found at {REAL} (see shared/data/README.md)")


@needs_real
def test_real_files_decode_plausibly() -> None:
    files = sorted(REAL.glob("*/*/*.bin"))
    assert len(files) == REAL_TRAIN + REAL_TEST
    for f in files:
        ev = read_nmnist(f)
        assert MIN_EVENTS < len(ev) < MAX_EVENTS, f
        assert ev["x"].max() < NMNIST_SIZE and ev["y"].max() < NMNIST_SIZE and ev["x"].min() >= 0
        assert (np.diff(ev["t"]) >= 0).all(), f
        assert 0 <= ev["t"][0] and ev["t"][-1] < MAX_DURATION_US
        assert set(np.unique(ev["p"]).tolist()) == {0, 1}


@needs_real
def test_real_subset_loads_as_frames(tmp_path: Path) -> None:
    cfg = DataConfig(name="nmnist", time_steps=5, train_limit=30, test_limit=10)
    cfg.events.cache_dir = str(tmp_path)
    cfg.events.crop = 32
    s = EVENT_DATASETS["nmnist"](REAL, cfg)
    assert s.train.x.shape == (30, 5, 2, 32, 32) and s.test.x.shape == (10, 5, 2, 32, 32)
    assert s.info.kind == "frames" and s.info.in_channels == 2 and s.info.input_size == 32
    # files are ordered by their official MNIST index: MNIST's first training labels
    assert s.train.y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    first = sorted(REAL.glob("Train/*/00001.bin"))[0]
    ev = read_nmnist(first)
    inside = ((ev["x"] >= 1) & (ev["x"] < 33) & (ev["y"] >= 1) & (ev["y"] < 33)).sum()
    assert int(s.train.x[0].sum()) == inside


def test_registered_with_the_data_package() -> None:
    from spikeforge.data import datasets

    table = datasets()
    assert all(table[name] is EVENT_DATASETS[name] for name in ("nmnist", "dvsgesture", "cifar10dvs"))


def test_handwritten_file_decodes_exactly(tmp_path: Path) -> None:
    ev = events([(0, 0, 0, 0), (33, 1, 1, 1), (5, 33, 65_535, 1), (17, 9, 65_536, 0), (2, 3, 2**23 - 1, 1)])
    f = tmp_path / "00001.bin"
    f.write_bytes(nmnist_bytes(ev))
    np.testing.assert_array_equal(read_nmnist(f), ev)
    rng = np.random.default_rng(0)
    big = random_events(rng, 1000, NMNIST_SIZE, 2**23)
    f.write_bytes(nmnist_bytes(big))
    np.testing.assert_array_equal(read_nmnist(f), big)


@pytest.mark.parametrize("content, problem", [(b"", "empty"), (b"\x01" * 12, "truncated mid-event")])
def test_malformed_files_name_file_and_problem(tmp_path: Path, content: bytes, problem: str) -> None:
    f = tmp_path / "bad.bin"
    f.write_bytes(content)
    with pytest.raises(EventFormatError, match=problem) as e:
        read_nmnist(f)
    assert str(f) in str(e.value)


def _tree(root: Path, n_per_digit: int, rng: np.random.Generator) -> dict[Path, np.ndarray]:
    out = {}
    idx = 0
    for split in ("Train", "Test"):
        for _ in range(n_per_digit):
            for d in range(DIGITS):  # the loader needs all ten digit folders
                idx += 1
                folder = root / split / str(d)
                folder.mkdir(parents=True, exist_ok=True)
                ev = random_events(rng, 40 + 10 * d, NMNIST_SIZE, 300_000)
                (folder / f"{idx:05d}.bin").write_bytes(nmnist_bytes(ev))
                out[folder / f"{idx:05d}.bin"] = ev
    return out


def test_loader_labels_order_and_skip_bad(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    _tree(tmp_path / "nm", 2, rng)
    cfg = DataConfig(name="nmnist", time_steps=4)
    cfg.events.cache_dir = str(tmp_path / "cache")
    s = EVENT_DATASETS["nmnist"](tmp_path / "nm", cfg)
    assert s.train.y.tolist() == list(range(DIGITS)) * 2 and len(s.test) == 2 * DIGITS
    assert s.train.x.shape == (2 * DIGITS, 4, 2, 34, 34)
    # every event counted once
    assert s.train.x.sum(dim=(1, 2, 3, 4)).tolist() == [40 + 10 * d for d in range(DIGITS)] * 2
    bad = tmp_path / "nm" / "Train" / "1" / "00099.bin"
    bad.write_bytes(b"\x00" * 7)
    with pytest.raises(EventFormatError, match="00099.bin: truncated"):
        EVENT_DATASETS["nmnist"](tmp_path / "nm", cfg)
    cfg.events.skip_bad = True
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        s = EVENT_DATASETS["nmnist"](tmp_path / "nm", cfg)
    assert len(s.train) == 2 * DIGITS and s.info.skipped == 1 and str(bad) in s.info.skipped_files[0]
    assert any("00099.bin" in str(x.message) for x in w)
