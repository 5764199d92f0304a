"""SD-SNN rules as an ordered list: each rule's declared buffers and metrics are exactly what it uses."""

from __future__ import annotations

import pytest
import torch
from develop_helpers import tiny_model

from spikeforge.develop.compact import DEV_BUFFERS, compact_state
from spikeforge.develop.config import DevelopConfig
from spikeforge.develop.development import PREFIX, Development, equip
from spikeforge.develop.masking import MASK_BUFFERS
from spikeforge.develop.rules import (
    ALL_RULES,
    OWNED_BUFFERS,
    EpochStep,
    NeuronalPruning,
    NeurotrophicRates,
    Regeneration,
    Revival,
    SynapticConstraint,
    rules_for,
)

CFG = DevelopConfig(min_consecutive_epochs=1, fc_min_inputs=4, conv_min_inputs=2)  # C = 1: pruning from epoch 3


def test_rule_order_and_optional_revival() -> None:
    order = [SynapticConstraint, Regeneration, NeuronalPruning, NeurotrophicRates]
    assert [type(r) for r in rules_for(CFG)] == order
    revive = DevelopConfig(regen_revives_neurons=True)
    assert [type(r) for r in rules_for(revive)] == [SynapticConstraint, Regeneration, Revival, NeuronalPruning,
                                                   NeurotrophicRates]


def test_equip_attaches_exactly_the_declared_buffers() -> None:
    model = tiny_model("cifar_convnet")
    bn_of = equip(model, ["conv2", "fc1"])
    for name in ("conv2", "fc1"):
        layer = model.get_submodule(name)
        assert set(dict(layer.named_buffers())) == {"weight_mask", *OWNED_BUFFERS}
    assert set(dict(model.get_submodule(bn_of["conv2"]).named_buffers())) >= {"channel_mask"}
    assert set(DEV_BUFFERS) == {*MASK_BUFFERS, *OWNED_BUFFERS}  # what compaction drops
    assert OWNED_BUFFERS == tuple(b for r in ALL_RULES for b in r.buffers)


def test_each_rule_reports_exactly_its_declared_metrics() -> None:
    model = tiny_model()
    dev = Development(model, CFG, epochs=20, layers=["conv2", "fc1"])
    for epoch in range(1, 5):  # before and after pruning starts
        step = EpochStep(epoch, dev.schedule, CFG, model, dev.layers(), dev.batchnorms, dev.rates)
        for rule in dev.rules:
            reported = rule.apply(step)
            for layer, metrics in reported.items():
                assert layer in dev.names and set(metrics) == set(rule.metrics), (type(rule).__name__, metrics)
            assert set(reported) == (set(dev.names) if rule.metrics else set())
    declared = {f"{PREFIX}.{n}.{m}" for n in dev.names for r in dev.rules for m in r.metrics}
    assert set(dev.end_epoch(5)) == declared | {f"{PREFIX}.pruning_rate"}


def test_compaction_keeps_no_development_buffer() -> None:
    model = tiny_model()
    dev = Development(model, CFG, epochs=20, layers=["conv2", "fc1"])
    for epoch in range(1, 4):
        dev.end_epoch(epoch)
    widths, state = compact_state(model.eval())
    assert widths["fc1"] < 30
    assert not [k for k in state if k.rsplit(".", 1)[-1] in DEV_BUFFERS]


def test_development_in_a_plain_loop_needs_no_engine() -> None:
    """after_step projects with project_every_step once the constraint is on (epoch > C)."""
    cfg = DevelopConfig(min_consecutive_epochs=1, project_every_step=True)
    model = tiny_model()
    dev = Development(model, cfg, epochs=20, layers=["fc1"])
    dev.end_epoch(1)
    dev.end_epoch(2)  # constrained from epoch 2 (C = 1)
    with torch.no_grad():
        model.fc1.weight.add_(10.0)
    dev.after_step()
    assert bool((model.fc1.weight <= model.fc1.range_hi).all())
    with pytest.raises(ValueError, match="not pruned"):
        Development(tiny_model(), DevelopConfig(initial_rates={"conv1": 1.0}), 20, ["fc1"])
