"""Op counting and the energy model, against hand-computed counts."""

from __future__ import annotations

import json
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F

from spikeforge import layers as L
from spikeforge.energy import CountConfig, EnergyModel, OpsCounter, classify_input, count_ops, popcount
from spikeforge.hybrid.spiking_relu import SpikingReLU
from spikeforge.models.common import Net
from spikeforge.neurons import IFNode, NeuronConfig


def _conv_net(groups: int = 1, in_ch: int = 1, out_ch: int = 2, padding_mode: str = "zeros") -> Net:
    return Net(OrderedDict([("conv", L.Conv2d(in_ch, out_ch, 3, stride=2, padding=1, groups=groups,
                                              padding_mode=padding_mode))]))


def test_conv_with_padding_and_stride_hand_computed() -> None:
    # 5x5 input, 3x3 kernel, stride 2, padding 1 -> 3x3 output; output row i reads input rows 2i-1..2i+1.
    # (0,0) is read only by output (0,0): fan-out 1 position; (1,1) by outputs (0|1, 0|1): 4;
    # (2,2) by (1,1): 1.
    x = torch.zeros(2, 1, 1, 5, 5)  # T=2, B=1
    x[0, 0, 0, 0, 0] = x[0, 0, 0, 1, 1] = x[0, 0, 0, 2, 2] = 1
    x[1, 0, 0, 1, 1] = 1
    rep = count_ops(_conv_net(), x)
    (lay,) = rep.layers
    assert lay.kind == "conv" and lay.binary
    assert lay.sops == (1 + 4 + 1 + 4) * 2  # × 2 output channels
    assert lay.macs == 2 * 3 * 3 * (1 * 3 * 3)  # out elements × in_ch × kH × kW per step
    assert lay.rate == pytest.approx(4 / 50)
    assert rep.sops == 20 and rep.macs == 0  # binary input: only SOPs
    assert rep.ann_macs == 162


def _unfold_sops(conv: torch.nn.Conv2d, x4: torch.Tensor) -> float:
    """Independent reference: count (output position, tap) pairs reading a non-zero input."""
    g = conv.groups
    cols = F.unfold((x4 != 0).float(), conv.kernel_size, conv.dilation, conv.padding, conv.stride)
    cols = cols.view(x4.shape[0], g, -1, cols.shape[-1])  # taps of each group
    return float(cols.sum()) * (conv.out_channels // g)


@pytest.mark.parametrize("groups", [1, 2])
def test_conv_sops_match_unfold_reference(groups: int) -> None:
    gen = torch.Generator().manual_seed(0)
    net = _conv_net(groups=groups, in_ch=4, out_ch=6)
    x = (torch.rand(3, 2, 4, 7, 6, generator=gen) < 0.3).float()
    lay = count_ops(net, x).layers[0]
    assert lay.sops == pytest.approx(_unfold_sops(net.conv, x.flatten(0, 1)) / 2)  # per sample (B = 2)
    assert lay.macs == 6 * 4 * 3 * (4 // groups) * 9


def test_replicate_padding_counts_border_reads() -> None:
    x = torch.zeros(1, 1, 1, 5, 5)
    x[0, 0, 0, 0, 0] = 1  # replicated into the padding: read by output (0,0) at 4 taps
    assert count_ops(_conv_net(padding_mode="replicate"), x).layers[0].sops == 4 * 2
    assert count_ops(_conv_net(), x).layers[0].sops == 1 * 2


def test_linear_known_spike_pattern_and_batch_average() -> None:
    net = Net(OrderedDict([("fc", L.Linear(4, 3))]))
    x = torch.tensor([[[1.0, 0, 1, 0], [0, 0, 0, 0]],
                      [[1.0, 1, 1, 1], [0, 1, 0, 0]]])  # [T=2, B=2, 4]: 2+4 and 0+1 spikes
    rep = count_ops(net, x)
    lay = rep.layers[0]
    assert lay.sops == pytest.approx((6 + 1) * 3 / 2)
    assert lay.macs == 12 and lay.rate == pytest.approx(7 / 16) and lay.binary
    assert rep.samples == 2 and rep.time_steps == 2


def test_input_classification() -> None:
    cfg = CountConfig()
    assert classify_input(torch.tensor([0.0, 1.0, 1.0]), cfg)[:2] == (True, 1)
    binary, planes, n = classify_input(torch.tensor([0.0, 0.25, 0.75, 1.0]), cfg)  # avg-pooled spikes
    assert (binary, planes) == (False, 3) and n is not None and n.tolist() == [0, 1, 3, 4]
    assert classify_input(torch.tensor([0.0, -0.5, 1.0]), cfg)[:2] == (False, 0)  # negative: analog
    assert classify_input(torch.tensor([0.3, 0.45, 1.0]), cfg)[:2] == (False, 0)  # 1.5 and 3.33 units
    assert classify_input(torch.tensor([1e-9, 1.0]), cfg)[:2] == (False, 0)  # too many planes
    m = SpikingReLU(15, init_step=0.37)
    m.initialized.fill_(True)
    y = m(torch.linspace(-1, 10, 200)).detach()
    assert classify_input(y, cfg)[:2] == (False, 4)  # levels 0..15: 4 bit planes
    assert popcount(torch.tensor([0, 1, 3, 5, 15]), 4).tolist() == [0, 1, 2, 2, 4]


def test_multilevel_layer_is_dense_but_plane_sops_are_counted() -> None:
    net = Net(OrderedDict([("fc", L.Linear(4, 3))]))
    u = 0.2
    x = torch.tensor([[[3.0, 0.0, 5.0, 1.0]]]) * u  # [1, 1, 4]: levels 3, 0, 5, 1
    rep = count_ops(net, x)
    lay = rep.layers[0]
    assert not lay.binary and not lay.spikes and lay.planes == 3  # s·q is not a spike count
    assert lay.plane_sops == pytest.approx((2 + 0 + 2 + 1) * 3)  # popcount × fan-out
    assert lay.sops == pytest.approx(3 * 3)  # non-zero inputs × fan-out
    e = EnergyModel()
    assert rep.sops == 0 and rep.macs == 12  # module-level convention: dense MACs
    assert rep.energy_pj == pytest.approx(12 * e.e_mac_pj)
    assert rep.event_sops == pytest.approx(15) and rep.event_macs == 0
    assert rep.event_energy_pj == pytest.approx(15 * e.e_ac_pj)


def test_energy_arithmetic_and_ann_numbers() -> None:
    torch.manual_seed(0)
    net = Net(OrderedDict([
        ("conv", L.Conv2d(2, 3, 3, padding=1)), ("sn", IFNode(threshold=0.5)),
        ("flatten", L.Flatten()), ("fc", L.Linear(3 * 4 * 4, 5)),
    ]))
    x = torch.randn(4, 3, 2, 4, 4)  # analog input: the encoding layer is dense
    e = EnergyModel(e_ac_pj=1.5, e_mac_pj=7.0)
    rep = count_ops(net, x, energy=e)
    conv, fc = rep.layers
    assert not conv.binary and conv.planes == 0 and fc.binary
    assert conv.macs == 3 * 16 * 2 * 9 and fc.macs == 48 * 5
    assert rep.macs == conv.macs * 4 and rep.sops == fc.sops
    assert rep.energy_pj == pytest.approx(fc.sops * 1.5 + conv.macs * 4 * 7.0)
    assert conv.energy_pj + fc.energy_pj == pytest.approx(rep.energy_pj)
    assert rep.ann_macs == conv.macs + fc.macs and rep.ann_energy_pj == pytest.approx(rep.ann_macs * 7.0)
    with torch.no_grad():
        spikes = net.sn(net.conv(x))
    assert fc.sops == pytest.approx(float(spikes.sum()) * 5 / 3)
    assert rep.site_rates["sn"] == pytest.approx(float(spikes.mean()))
    assert fc.rate == pytest.approx(float(spikes.mean()))


def test_report_serialisation_and_table() -> None:
    net = Net(OrderedDict([("fc1", L.Linear(6, 4)), ("sn", IFNode()), ("fc2", L.Linear(4, 2))]))
    rep = count_ops(net, (torch.rand(2, 3, 6) < 0.5).float())
    d = json.loads(json.dumps(rep.to_dict()))
    assert [lay["name"] for lay in d["layers"]] == ["fc1", "fc2"]
    assert set(d["totals"]) >= {"sops", "macs", "energy_pj", "ann_macs", "ann_energy_pj"}
    assert d["energy_model"] == {"e_ac_pj": 0.9, "e_mac_pj": 4.6} and "sn" in d["site_rates"]
    table = rep.table()
    assert "| fc1 | linear | binary |" in table and "| sn |" in table


def test_counter_accumulates_batches_and_checks_input() -> None:
    net = Net(OrderedDict([("fc", L.Linear(2, 1))]))
    with OpsCounter(net) as c:
        net(torch.ones(1, 1, 2))
        net(torch.zeros(1, 3, 2))
    assert c.report().layers[0].sops == pytest.approx(2 / 4)
    with pytest.raises(ValueError, match="no forward"):
        OpsCounter(net).report()


def test_hybrid_site_makes_the_next_layer_multilevel() -> None:
    from spikeforge.hybrid.policy import apply_hybrid
    from spikeforge.models import ModelConfig, build_model

    torch.manual_seed(0)
    neuron = NeuronConfig(kind="if", threshold=0.05, backend="reference")  # fires on random weights
    model = build_model(ModelConfig(name="sdsnn_convnet", width=0.25, neuron=neuron)).eval()
    x = (torch.rand(3, 2, 1, 28, 28) < 0.5).float()
    pure = {lay.name: lay for lay in count_ops(model, x).layers}
    assert pure["conv1"].binary and pure["fc2"].binary
    assert pure["conv2"].planes <= 3  # average-pooled spikes: multiples of 1/4, at most 4
    assert pure["conv2"].spikes and pure["fc1"].spikes and not pure["conv2"].binary
    rep = count_ops(model, x)
    assert rep.macs == 0  # every layer of the pure SNN is event-driven
    assert rep.event_sops == pytest.approx(rep.sops)  # and its plane view is the same count
    apply_hybrid(model, ["sn3"], levels=15)
    model.sn3.step.data.fill_(0.05)
    model.sn3.initialized.fill_(True)
    hybrid = {lay.name: lay for lay in count_ops(model, x).layers}
    fc2 = hybrid["fc2"]
    assert not fc2.binary and not fc2.spikes and 1 <= fc2.planes <= 4 and fc2.rate > 0
    assert fc2.plane_sops >= fc2.sops  # at least one plane per non-zero input


def test_pooled_and_summed_spikes_are_spike_counts() -> None:
    # 4x4 spikes -> 2x2 average pool (window counts 2, 0, 1, 4) -> flatten -> fc(4 -> 3)
    net = Net(OrderedDict([("pool", L.AvgPool2d(2)), ("flatten", L.Flatten()), ("fc", L.Linear(4, 3))]))
    x = torch.zeros(1, 1, 1, 4, 4)
    x[0, 0, 0, 0, :2] = 1  # window (0,0): 2 spikes
    x[0, 0, 0, 2, 0] = 1  # window (1,0): 1 spike
    x[0, 0, 0, 2:, 2:] = 1  # window (1,1): 4 spikes
    rep = count_ops(net, x)
    fc = rep.layers[0]
    assert fc.spikes and not fc.binary
    assert fc.sops == pytest.approx((2 + 0 + 1 + 4) * 3)  # every pre-pool spike reaches 3 targets
    assert fc.planes == 1 and fc.plane_sops == pytest.approx(fc.sops)  # planes of the pre-pool spikes
    assert rep.sops == fc.sops and rep.macs == 0
    assert rep.energy_pj == pytest.approx(21 * EnergyModel().e_ac_pj)
    # a global average pool is a spike count too; pooled analog values are not
    gap = Net(OrderedDict([("pool", L.AdaptiveAvgPool2d(1)), ("flatten", L.Flatten()),
                           ("fc", L.Linear(1, 2))]))
    assert count_ops(gap, x).layers[0].sops == pytest.approx(7 * 2)
    assert not count_ops(gap, x * 0.3).layers[0].spikes
    # sums of spikes (SEW residual, event-count frames): n events per element
    lin = Net(OrderedDict([("fc", L.Linear(3, 2))]))
    summed = count_ops(lin, torch.tensor([[[2.0, 0.0, 1.0]]])).layers[0]
    assert summed.spikes and not summed.binary and summed.sops == pytest.approx(3 * 2)


def test_planes_are_taken_before_an_average_pool() -> None:
    # SpikingReLU levels q = 3, 1, 0, 2 (step 0.5) in one 2x2 window: popcounts 2 + 1 + 0 + 1 = 4 plane
    # events reach the pooled position (the pooled sum 6 = 110b would have given 2)
    net = Net(OrderedDict([("pool", L.AvgPool2d(2)), ("flatten", L.Flatten()), ("fc", L.Linear(1, 5))]))
    x = torch.tensor([[3.0, 1.0], [0.0, 2.0]]).view(1, 1, 1, 2, 2) * 0.5
    fc = count_ops(net, x).layers[0]
    assert not fc.spikes and fc.planes == 2
    assert fc.plane_sops == pytest.approx(4 * 5)
    assert fc.sops == pytest.approx(1 * 5)  # one non-zero (analog-valued) pooled event
