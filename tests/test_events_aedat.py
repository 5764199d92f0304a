"""AEDAT 3.1 / 2.0 / 4.0 files written in the official layouts decode exactly; DVS128 Gesture
label files cut the right samples; CIFAR10-DVS split; malformed files give clear errors."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
from events_helpers import (
    AEDAT3_HEADER,
    DVS128,
    aedat2_bytes,
    aedat3_file,
    aedat3_packet,
    aedat3_polarity,
    aedat4_file,
    events,
    flatbuffer_events,
    flatbuffer_other,
    gesture_folder,
    random_events,
)

from spikeforge.data.config import DataConfig
from spikeforge.data.events import (
    EVENT_DATASETS,
    EventFormatError,
    read_aedat2,
    read_aedat3,
    read_aedat4,
    read_gesture_labels,
)
from spikeforge.data.events.datasets import CIFAR10_CLASSES

OVERFLOW_T = 2**31


def test_aedat3_roundtrip_skips_other_packets_and_invalid_events(tmp_path: Path) -> None:
    a = events([(0, 0, 5, 0), (127, 3, 6, 1), (64, 127, 6, 1)])
    b = events([(1, 2, OVERFLOW_T + 7, 1), (100, 50, OVERFLOW_T + 9, 0)])
    special = aedat3_packet(0, struct.pack("<Ii", 0xFFFFFFFF, 8), 1)  # a special-event packet
    invalid = events([(9, 9, 8, 1), (10, 10, 8, 0)])
    f = aedat3_file(tmp_path / "rec.aedat", [aedat3_polarity(a), special,
                                             aedat3_polarity(invalid, valid=[False, True]),
                                             aedat3_polarity(b, overflow=1)])
    np.testing.assert_array_equal(read_aedat3(f), np.concatenate([a, invalid[1:], b]))


def test_aedat3_random_roundtrip(tmp_path: Path) -> None:
    ev = random_events(np.random.default_rng(0), 5000, DVS128, 10**7)
    f = aedat3_file(tmp_path / "r.aedat", [aedat3_polarity(ev[:2000]), aedat3_polarity(ev[2000:])])
    np.testing.assert_array_equal(read_aedat3(f), ev)


@pytest.mark.parametrize("content, problem", [
    (b"", "empty"),
    (b"#!AER-DAT2.0\r\n#!END-HEADER\r\n", "expected the file to start with '#!AER-DAT3.1'"),
    (b"#!AER-DAT3.1\r\n#Format: RAW\r\n", "header has no '#!END-HEADER' line"),
    (AEDAT3_HEADER + b"\x01\x00\x01\x00", "truncated packet header"),
    (AEDAT3_HEADER + aedat3_polarity(events([(1, 1, 1, 1)] * 3))[:-5], "truncated mid-packet"),
])
def test_aedat3_malformed(tmp_path: Path, content: bytes, problem: str) -> None:
    f = tmp_path / "bad.aedat"
    f.write_bytes(content)
    with pytest.raises(EventFormatError, match=problem) as e:
        read_aedat3(f)
    assert str(e.value).startswith(str(f))


def test_aedat2_roundtrip_drops_special_events(tmp_path: Path) -> None:
    ev = random_events(np.random.default_rng(1), 3000, DVS128, 10**6)
    ev[:4] = events([(0, 0, 0, 0), (127, 0, 1, 1), (0, 127, 2, 1), (127, 127, 3, 0)])
    f = tmp_path / "cifar10_cat_0.aedat"
    f.write_bytes(aedat2_bytes(ev, special=3))
    np.testing.assert_array_equal(read_aedat2(f), ev)


@pytest.mark.parametrize("content, problem", [
    (b"#!AER-DAT1.0\r\n" + b"\0" * 6, "unsupported AEDAT version '1.0'"),
    (b"\x00\x01" * 8, "expected the file to start with '#!AER-DAT2.0'"),
    (aedat2_bytes(events([(1, 1, 1, 1)]))[:-3], "truncated mid-event"),
])
def test_aedat2_malformed(tmp_path: Path, content: bytes, problem: str) -> None:
    f = tmp_path / "bad.aedat"
    f.write_bytes(content)
    with pytest.raises(EventFormatError, match=problem) as e:
        read_aedat2(f)
    assert str(f) in str(e.value)


@pytest.mark.parametrize("size_prefixed", [True, False])
def test_aedat4_uncompressed_roundtrip(tmp_path: Path, size_prefixed: bool) -> None:
    ev = random_events(np.random.default_rng(2), 300, DVS128, 10**6)
    f = aedat4_file(tmp_path / "c.aedat4", [flatbuffer_events(ev[:100]), flatbuffer_other(),
                                            flatbuffer_events(ev[100:])], size_prefixed=size_prefixed)
    np.testing.assert_array_equal(read_aedat4(f), ev)


def test_aedat4_errors(tmp_path: Path) -> None:
    f = aedat4_file(tmp_path / "t.aedat4", [flatbuffer_events(events([(1, 2, 3, 1)] * 4))])
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(EventFormatError, match="truncated mid-packet"):
        read_aedat4(f)
    f = aedat4_file(tmp_path / "z.aedat4", [flatbuffer_events(events([(1, 2, 3, 1)]))], compression=3)
    try:
        import zstandard  # noqa: F401
    except ImportError:
        with pytest.raises(ModuleNotFoundError, match="dv-processing"):
            read_aedat4(f)
    else:
        with pytest.raises(EventFormatError, match="cannot decompress"):
            read_aedat4(f)
    f.write_bytes(b"#!AER-DAT3.1\r\n")
    with pytest.raises(EventFormatError, match="expected '#!AER-DAT4.0'"):
        read_aedat4(f)


# ------------------------------------------------------------------------------ DVS128 Gesture
def _recording(rng: np.random.Generator, n: int = 4000, t_max: int = 4_000_000) -> np.ndarray:
    return random_events(rng, n, DVS128, t_max)


def _count(ev: np.ndarray, start: int, end: int) -> int:
    return int(((ev["t"] >= start) & (ev["t"] < end)).sum())


def test_gesture_labels_cut_samples(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    a, b = _recording(rng), _recording(rng)
    rows_a = [(1, 100_000, 1_000_000), (11, 1_500_000, 2_600_000), (5, 3_000_000, 3_900_000)]
    rows_b = [(3, 0, 2_000_000)]
    gesture_folder(tmp_path, {"user01_fluorescent": (a, rows_a), "user02_lab": (b, rows_b)},
                   ["user01_fluorescent"], ["user02_lab"])
    cfg = DataConfig(name="dvsgesture", time_steps=4)
    cfg.events.cache_dir = str(tmp_path / "cache")
    cfg.events.size = 32
    s = EVENT_DATASETS["dvsgesture"](tmp_path, cfg)
    assert s.train.y.tolist() == [0, 10, 4] and s.test.y.tolist() == [2]
    assert s.train.x.shape == (3, 4, 2, 32, 32) and s.info.num_classes == 11
    counts = s.train.x.long().sum(dim=(1, 2, 3, 4)).tolist()
    assert counts == [_count(a, st, en) for _, st, en in rows_a]
    cfg.events.split_by = "time"  # frames split the labelled window into 4 equal parts
    s = EVENT_DATASETS["dvsgesture"](tmp_path / "DvsGesture", cfg)
    quarter = 500_000
    per_frame = s.test.x[0].long().sum(dim=(1, 2, 3)).tolist()
    assert per_frame == [_count(b, k * quarter, (k + 1) * quarter) for k in range(4)]


@pytest.mark.parametrize("text, problem", [
    ("cls,start,end\n1,0,10\n", "bad label header"),
    ("class,startTime_usec,endTime_usec\n12,0,10\n", "line 2: class 12 is outside 1..11"),
    ("class,startTime_usec,endTime_usec\n1,0,10\n2,abc,5\n", "line 3: expected three integers"),
    ("class,startTime_usec,endTime_usec\n1,50,10\n", "line 2: bad time window"),
    ("class,startTime_usec,endTime_usec\n", "no label rows"),
])
def test_gesture_bad_label_rows(tmp_path: Path, text: str, problem: str) -> None:
    f = tmp_path / "user01_led_labels.csv"
    f.write_text(text)
    with pytest.raises(EventFormatError, match=problem) as e:
        read_gesture_labels(f)
    assert str(f) in str(e.value)


def test_gesture_skip_bad(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    recs = {f"user0{i}_led": (_recording(rng, 500), [(2, 0, 1_000_000)]) for i in range(1, 5)}
    base = gesture_folder(tmp_path, recs, ["user01_led", "user02_led"], ["user03_led", "user04_led"])
    (base / "user02_led_labels.csv").write_text("class,startTime_usec,endTime_usec\n99,0,5\n")
    aedat = base / "user03_led.aedat"
    aedat.write_bytes(aedat.read_bytes()[:-4])
    cfg = DataConfig(name="dvsgesture", time_steps=2)
    cfg.events.cache_dir = str(tmp_path / "cache")
    with pytest.raises(EventFormatError, match="user02_led_labels.csv: line 2"):
        EVENT_DATASETS["dvsgesture"](tmp_path, cfg)
    cfg.events.skip_bad = True
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        s = EVENT_DATASETS["dvsgesture"](tmp_path, cfg)
    assert len(s.train) == 1 and len(s.test) == 1 and s.info.skipped == 2
    assert any("user03_led.aedat" in f for f in s.info.skipped_files)


# ---------------------------------------------------------------------------------- CIFAR10-DVS
def test_cifar10dvs_split_is_deterministic_and_disjoint(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    per_class = 10
    for cls in CIFAR10_CLASSES:
        (tmp_path / cls).mkdir()
        for i in range(per_class):
            ev = random_events(rng, 20, DVS128, 10**5)
            (tmp_path / cls / f"cifar10_{cls}_{i}.aedat").write_bytes(aedat2_bytes(ev))
    cfg = DataConfig(name="cifar10dvs", time_steps=2)
    cfg.events.cache = False
    cfg.events.size = 48
    s1 = EVENT_DATASETS["cifar10dvs"](tmp_path, cfg)
    s2 = EVENT_DATASETS["cifar10dvs"](tmp_path, cfg)
    assert len(s1.train) == 90 and len(s1.test) == 10
    assert s1.test.y.tolist() == list(range(10)) and s1.train.y[:10].tolist() == list(range(10))
    assert s1.train.x.shape == (90, 2, 2, 48, 48) and s1.train.x.sum() == 90 * 20
    assert (s1.train.x == s2.train.x).all() and (s1.test.x == s2.test.x).all()
    train_set = {tuple(x.flatten().nonzero().flatten().tolist()) for x in s1.train.x}
    assert not any(tuple(x.flatten().nonzero().flatten().tolist()) in train_set for x in s1.test.x)
