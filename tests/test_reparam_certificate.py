"""The certificate: a constructed reassociation failure is reported and not certified; masks are baked."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from develop_helpers import tiny_config

from spikeforge import layers as L
from spikeforge.develop.masking import attach_channel_gate, attach_mask, following_batchnorms, sync_gates
from spikeforge.hybrid.spiking_relu import SpikingReLU
from spikeforge.models import build_model
from spikeforge.models.common import Net
from spikeforge.reparam import Batch, InputSpec, convert_model, verify_models

F64 = torch.float64
STEP = 0.351  # not a power of two: x/s and the plane sums round differently
LEVELS = 7
T, B = 2, 64
FEATURES, HIDDEN, OUT = 12, 16, 24


def boundary_model(seed: int = 0) -> Net:
    """fc2's pre-activations sit *exactly* on rounding boundaries of sr2 in real arithmetic.

    sr1 (s = 1) emits integers q; fc2's weights are (s/2)·a with integers a, so fc2(q) = (s/2)·Σ a q,
    which is (k + ½)·s whenever Σ a q is odd. In float64 the hybrid (fc2 reading s₁·q) and the
    converted graph (fc2 reading sr1's threshold units) sum different products in different orders:
    the last bit — and so the rounding — differs at some of those boundaries.
    """
    g = torch.Generator().manual_seed(seed)
    fc1, fc2, out = L.Linear(FEATURES, HIDDEN, dtype=F64), L.Linear(HIDDEN, OUT, dtype=F64), L.Linear(OUT, 3, dtype=F64)
    sr1, sr2 = SpikingReLU(LEVELS).to(F64), SpikingReLU(LEVELS).to(F64)
    with torch.no_grad():
        fc1.weight.copy_(torch.randint(-1, 2, (HIDDEN, FEATURES), generator=g).to(F64))
        fc2.weight.copy_(torch.randint(-3, 4, (OUT, HIDDEN), generator=g).to(F64) * (STEP / 2))
        out.weight.copy_(torch.randn(3, OUT, generator=g, dtype=F64))
        for lin in (fc1, fc2, out):
            lin.bias.zero_()
        sr1.step.fill_(1.0)
        sr2.step.fill_(STEP)
    mods = [("flatten", L.Flatten()), ("fc1", fc1), ("sr1", sr1), ("fc2", fc2), ("sr2", sr2), ("out", out)]
    return Net(OrderedDict(mods)).eval()


@pytest.mark.parametrize("coding", ["bitplane", "unary"])
def test_reassociation_flips_are_reported_and_not_certified(coding: str) -> None:
    model = boundary_model()
    x = torch.randint(0, 4, (T, B, 1, 1, FEATURES), generator=torch.Generator().manual_seed(1)).to(F64)
    graph = convert_model(model, InputSpec((1, 1, FEATURES), T), coding)
    res = verify_models(model, graph, [Batch(x, x)])
    cert = res["certificate"]
    assert res["site_mismatches"]["sr2"] > 0 and res["site_mismatches"]["sr1"] == 0
    assert res["max_abs_logit_diff"] > 1e-3 and not res["exact"]
    assert not cert["certified"] and cert["guarantee"] == "failed"
    assert cert["margin"] == 0.0 and cert["near_boundary"] >= res["spike_flips"]
    assert set(cert["uncertified_sites"]) == {"sr2"} and cert["uncertified_sites"]["sr2"] >= res["spike_flips"]


def test_same_model_off_the_boundaries_is_certified() -> None:
    """The same weights with inputs that keep every q₁ even (one feature at 2): margins ≥ s/2 ≫ the bound."""
    model = boundary_model()
    hot = torch.randint(0, FEATURES, (T, B), generator=torch.Generator().manual_seed(1))
    x = 2.0 * torch.nn.functional.one_hot(hot, FEATURES).to(F64).reshape(T, B, 1, 1, FEATURES)
    graph = convert_model(model, InputSpec((1, 1, FEATURES), T))
    res = verify_models(model, graph, [Batch(x, x)])
    cert = res["certificate"]
    assert res["spike_flips"] == 0 and res["exact"] and cert["certified"], cert
    assert cert["margin"] > 100 * cert["max_bound"] and res["max_abs_logit_diff"] <= cert["logit_bound"]


@torch.no_grad()
def test_unbaked_pruning_masks_are_baked_by_the_converter() -> None:
    """An in-memory developed model (masks applied in forward, weights unmasked) converts what it computes."""
    cfg = tiny_config("cifar_convnet")
    torch.manual_seed(0)
    model = build_model(cfg).to(F64).eval()
    names = ["conv2", "conv3", "fc1"]
    for n in names:
        layer = attach_mask(model.get_submodule(n))
        w = layer.weight_mask
        w.copy_((torch.rand(w.shape, generator=torch.Generator().manual_seed(len(n))) < 0.6).to(w.dtype))
        w[: w.shape[0] // 3] = 0  # whole neurons pruned: their biases must vanish too
    bn_of = following_batchnorms(model, names)
    for bn in bn_of.values():
        attach_channel_gate(model.get_submodule(bn))
    sync_gates(model, bn_of)
    shape = (cfg.in_channels, cfg.input_size, cfg.input_size)
    x = torch.rand(T, 4, *shape, generator=torch.Generator().manual_seed(3), dtype=F64) * 3
    graph = convert_model(model, InputSpec(shape, T))
    assert not any(float(model.get_submodule(n).weight.abs().min()) == 0 for n in names)  # not baked in place
    res = verify_models(model, graph, [Batch(x, x)])
    assert res["exact"] and res["spike_flips"] == 0, res["max_abs_logit_diff"]
    assert float(model.fc1(torch.ones(1, 1, model.fc1.in_features, dtype=F64)).abs().max()) > 0


def test_verification_holds_one_batch_at_a_time() -> None:
    """verify_models consumes batches lazily and keeps none but the current one: memory does not grow with them."""
    import gc
    import weakref

    model = boundary_model()
    graph = convert_model(model, InputSpec((1, 1, FEATURES), T))
    previous: list[weakref.ref[torch.Tensor]] = []

    def batches():  # noqa: ANN202
        for seed in range(4):
            gc.collect()
            assert all(r() is None for r in previous[:-1]), "an earlier batch is still referenced"
            x = torch.randint(0, 2, (T, 8, 1, 1, FEATURES), generator=torch.Generator().manual_seed(seed)).to(F64)
            previous.append(weakref.ref(x))
            yield Batch(x, x.clone())

    res = verify_models(model, graph, batches())
    assert res["samples"] == 32 and len(previous) == 4
