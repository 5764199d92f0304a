"""Neurotrophic rates and the run-length-independent schedule."""

from __future__ import annotations

import math

import pytest

from spikeforge.develop.config import DevelopConfig
from spikeforge.develop.rates import absolute_alpha, next_rate, rate_increment
from spikeforge.develop.schedule import Schedule

CFG = DevelopConfig()


def test_reference_schedule_for_a_300_epoch_run() -> None:
    s = Schedule.from_config(CFG, 300)
    assert s.consecutive == 18 and s.first_pruning_epoch == 37
    assert not s.constrained(18) and s.constrained(19)
    assert not s.pruning(36) and s.pruning(37)
    assert [s.steps(e) for e in (36, 37, 38, 60)] == [[], [0], [1], [23]]
    assert s.count(11) == 11


@pytest.mark.parametrize("epochs", [4, 20, 77, 600])
def test_short_and_long_runs_cover_every_reference_epoch_once(epochs: int) -> None:
    s = Schedule.from_config(DevelopConfig(min_consecutive_epochs=1), epochs)
    assert s.consecutive == max(1, round(18 * epochs / 300))
    assert Schedule.from_config(CFG, epochs).consecutive == max(3, round(18 * epochs / 300))
    covered = [k for e in range(1, epochs + 1) for k in s.steps(e)]
    assert covered == list(range(len(covered)))  # contiguous, no gaps, no repeats
    assert covered[-1] == math.floor(s.offset(epochs) + 1e-9)


def test_absolute_rule_matches_the_reference_formula() -> None:
    # p_fc += alpha(k) * S / Z with alpha(0) = 1, Z = 10: 195 survivors add 19.5 points
    assert rate_increment([0], 195, None, CFG) == pytest.approx(19.5)
    assert absolute_alpha(1, CFG) == pytest.approx(math.exp(-1))
    assert absolute_alpha(23, CFG) == CFG.last_rate_tail


def test_relative_rule_uses_survivors_of_the_next_pruned_layer() -> None:
    assert rate_increment([0], 38, 190, CFG) == pytest.approx(0.2)
    assert rate_increment([5], 38, 190, CFG) == pytest.approx(0.2 * math.exp(-1))
    assert rate_increment([0], 10, 0, CFG) == pytest.approx(10.0)  # no surviving targets: guarded


def test_rates_converge_as_survivors_fall() -> None:
    """Closed loop: the rate sets the survivors, which feed the next increment."""
    n = 300
    for epochs in (20, 300):
        s = Schedule.from_config(CFG, epochs)
        rate, history, per_ref_epoch = CFG.fc_initial_rate, [], []
        for e in range(s.first_pruning_epoch, epochs + 1):
            survivors = n - math.floor(n * rate / 100)
            new = next_rate(rate, s.steps(e), survivors, None, CFG)
            per_ref_epoch.append((new - rate) / len(s.steps(e)))
            rate = new
            history.append(rate)
        assert history == sorted(history) and history[-1] < CFG.max_rate
        assert per_ref_epoch[0] > 10.0 and per_ref_epoch[-1] < 0.01  # pruning slows to a crawl
        assert 55.0 < history[-1] < 75.0
