"""Thread count from the free cores: /proc/stat arithmetic, bounds and the non-Linux fallback."""

from __future__ import annotations

from pathlib import Path

import pytest

from spikeforge import threads


def test_free_cores_from_two_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    samples = iter([(1000, 4000), (1150, 4400)])  # 150 of 400 jiffies idle over the interval
    monkeypatch.setattr(threads, "_cpu_times", lambda: next(samples))
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    assert threads.free_cores(0.0) == pytest.approx(1.5)
    samples = iter([(0, 100), (0, 200)])  # everything busy: still one thread
    monkeypatch.setattr(threads, "_cpu_times", lambda: next(samples))
    assert threads.auto_threads(0.0) == 1


def test_proc_stat_parsing_and_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  10 0 20 300 5 0 1 0 0 0\ncpu0 5 0 10 150 2 0 0 0 0 0\n")
    assert threads._cpu_times(str(stat)) == (305, 336)

    def broken() -> tuple[int, int]:
        raise OSError("no /proc here")

    monkeypatch.setattr(threads, "_cpu_times", broken)
    assert threads.free_cores(0.0) == threads.usable_cores()


def test_real_machine_within_bounds() -> None:
    assert 0.0 <= threads.free_cores(0.05) <= threads.usable_cores()
    assert 1 <= threads.auto_threads(0.05) <= threads.usable_cores()
