"""Frame cache: the key covers files and every parameter, writes are atomic, reloads hit."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from events_helpers import nmnist_bytes, random_events

import spikeforge.data.events.datasets as ds
from spikeforge.data.config import DataConfig
from spikeforge.data.events import EVENT_DATASETS, FrameSpec
from spikeforge.data.events import cache as C

N_FILES = 3
READ_SECONDS = 5.0  # upper bound of the concurrent-read test
MIN_READS = 200


def _files(tmp_path: Path) -> list[Path]:
    out = []
    for i in range(N_FILES):
        p = tmp_path / f"{i}.bin"
        p.write_bytes(bytes([i]) * 10)
        out.append(p)
    return out


def test_key_changes_with_every_parameter(tmp_path: Path) -> None:
    files = _files(tmp_path)
    base = FrameSpec(34, 34, 10)
    params = {**base.params(), "skip_bad": False}
    key = C.cache_key("nmnist", "train", files, params)
    assert key == C.cache_key("nmnist", "train", list(files), dict(params))
    variants = [FrameSpec(34, 34, 11), FrameSpec(34, 34, 10, split_by="time"), FrameSpec(34, 34, 10, size=17),
                FrameSpec(34, 34, 10, crop=32), FrameSpec(34, 34, 10, denoise_us=1000), FrameSpec(35, 34, 10)]
    keys = {C.cache_key("nmnist", "train", files, {**v.params(), "skip_bad": False}) for v in variants}
    keys |= {C.cache_key("nmnist", "train", files, {**params, "skip_bad": True}),
             C.cache_key("nmnist", "test", files, params), C.cache_key("other", "train", files, params),
             C.cache_key("nmnist", "train", files[:2], params)}
    assert key not in keys and len(keys) == len(variants) + 4
    files[0].write_bytes(b"x" * 11)  # size changes
    k2 = C.cache_key("nmnist", "train", files, params)
    os.utime(files[1], ns=(1, 1))  # mtime changes
    k3 = C.cache_key("nmnist", "train", files, params)
    assert len({key, k2, k3}) == 3


def _split(n: int, fill: int) -> C.CachedSplit:
    return C.CachedSplit(np.full((n, 2, 2, 4, 4), fill, np.uint8), np.arange(n, dtype=np.int64), ["bad.bin"])


def test_atomic_write_roundtrip_and_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c" / "e.safetensors"
    C.write_atomic(path, _split(3, 7), "k1")
    got = C.read_cached(path, "k1")
    assert got is not None and got.from_cache and (got.x == 7).all() and got.skipped == ["bad.bin"]
    assert C.read_cached(path, "other-key") is None
    assert os.listdir(path.parent) == ["e.safetensors"]

    def broken(tensors: dict, filename: str, metadata: dict) -> None:
        Path(filename).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(C, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        C.write_atomic(path, _split(3, 9), "k2")
    assert os.listdir(path.parent) == ["e.safetensors"]  # temp removed, old entry intact
    got = C.read_cached(path, "k1")
    assert got is not None and (got.x == 7).all()
    path.write_bytes(b"garbage")  # unreadable entries are treated as misses
    assert C.read_cached(path, "k1") is None


def test_concurrent_readers_never_see_partial_files(tmp_path: Path) -> None:
    path = tmp_path / "e.safetensors"
    stop = threading.Event()
    errors: list[str] = []

    def writer(fill: int) -> None:
        while not stop.is_set():
            C.write_atomic(path, _split(64, fill), "k")

    threads = [threading.Thread(target=writer, args=(f,)) for f in (1, 2)]
    for t in threads:
        t.start()
    seen = 0
    try:
        deadline = time.monotonic() + READ_SECONDS
        while seen < MIN_READS and time.monotonic() < deadline:
            got = C.read_cached(path, "k")
            if got is None:
                continue
            seen += 1
            if got.x.shape != (64, 2, 2, 4, 4) or len(np.unique(got.x)) != 1:
                errors.append("partial")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert seen > 0 and not errors
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []


def test_second_load_hits_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    for split in ("Train", "Test"):
        for d in range(10):  # all ten digit folders
            (tmp_path / "nm" / split / str(d)).mkdir(parents=True)
            (tmp_path / "nm" / split / str(d) / f"0000{d}.bin").write_bytes(
                nmnist_bytes(random_events(rng, 50, 34, 10**5)))
    cfg = DataConfig(name="nmnist", time_steps=3)
    cfg.events.cache_dir = str(tmp_path / "cache")
    first = EVENT_DATASETS["nmnist"](tmp_path / "nm", cfg)
    assert first.info.cache_hits == ()
    assert len(list((tmp_path / "cache").glob("nmnist-*.safetensors"))) == 2

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("cache miss: frames were rebuilt")

    monkeypatch.setattr(ds, "build_frames", no_decoding)
    second = EVENT_DATASETS["nmnist"](tmp_path / "nm", cfg)
    assert second.info.cache_hits == ("train", "test")
    assert (second.train.x == first.train.x).all() and (second.test.y == first.test.y).all()
    cfg.time_steps = 4  # any parameter change is a miss
    with pytest.raises(AssertionError, match="cache miss"):
        EVENT_DATASETS["nmnist"](tmp_path / "nm", cfg)


def test_default_cache_dir_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(C.CACHE_ENV, str(tmp_path / "here"))
    assert C.default_cache_dir() == tmp_path / "here"
    monkeypatch.delenv(C.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert C.default_cache_dir() == tmp_path / "spikeforge" / "events"


def test_unwritable_cache_only_warns(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.warns(UserWarning, match="could not write the event cache"):
        built = C.cached_split(blocker / "sub", "n", "train", [], {}, lambda: _split(2, 3))
    assert (built.x == 3).all() and not built.from_cache
