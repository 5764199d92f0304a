"""Event-driven training convolutions (spikeforge.spike_conv): equal to the dense convolution and its
gradients up to float32 rounding, on every geometry the kernels take; dense where they must not run."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from spikeforge import layers, spike_conv
from spikeforge.models import ModelConfig, build_model
from spikeforge.spike_conv import SpikeConvConfig, backward_op, spike_conv2d, spike_conv2d_op

pytestmark = pytest.mark.skipif(not spike_conv.available(), reason="no C compiler for the spike-conv kernels")

CL = torch.channels_last
ALL = SpikeConvConfig(forward_max_rate=1.0, weight_grad_max_rate=1.0)  # event path whatever the rate


def spikes(*shape: int, rate: float = 0.1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) < rate).float().contiguous(memory_format=CL)


def dense_and_events(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None, stride: tuple[int, int],
                     padding: tuple[int, int], cfg: SpikeConvConfig = ALL) -> list[list[torch.Tensor | None]]:
    """[output, input grad, weight grad, bias grad] of F.conv2d and of the event path, for one random output
    grad."""
    out: list[list[torch.Tensor | None]] = []
    for run in (lambda a, b, c: F.conv2d(a, b, c, stride, padding),
                lambda a, b, c: spike_conv2d(a, b, c, stride, padding, cfg)):
        a, b = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
        c = None if bias is None else bias.detach().clone().requires_grad_()
        y = run(a, b, c)
        g = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
        (y * g).sum().backward()
        out.append([y.detach(), a.grad, b.grad, None if c is None else c.grad])
    return out


GEOMETRIES = [  # (n, ci, co, h, w, kernel, stride, padding)
    (3, 32, 32, 12, 12, (3, 3), (1, 1), (1, 1)),  # a ResNet stage conv
    (2, 32, 64, 11, 11, (3, 3), (2, 2), (1, 1)),  # downsampling, odd size
    (2, 5, 20, 9, 7, (3, 3), (1, 2), (0, 1)),  # < 16 channels in, rectangular, per-axis stride/padding
    (2, 17, 130, 6, 6, (1, 1), (1, 1), (0, 0)),  # a 1×1 shortcut, 130 outputs (two passes, padded tail)
    (2, 8, 16, 10, 10, (5, 5), (2, 2), (2, 2)),
    (1, 40, 24, 5, 9, (3, 1), (1, 1), (1, 0)),  # non-square kernel
    (2, 16, 300, 4, 4, (3, 3), (1, 1), (2, 2)),  # padding wider than needed: border outputs see no input
]


@pytest.mark.parametrize("geom", GEOMETRIES)
@pytest.mark.parametrize("rate", [0.0, 0.05, 0.3, 1.0])
@pytest.mark.parametrize("with_bias", [False, True])
def test_equals_dense_conv_and_gradients(geom: tuple, rate: float, with_bias: bool) -> None:
    n, ci, co, h, w, k, s, p = geom
    x = spikes(n, ci, h, w, rate=rate)
    weight = torch.randn(co, ci, *k, generator=torch.Generator().manual_seed(2)) * 0.2
    bias = torch.randn(co) if with_bias else None
    dense, events = dense_and_events(x, weight, bias, s, p)
    assert events[0].shape == dense[0].shape and events[0].is_contiguous(memory_format=CL)
    for name, a, b, atol in zip(("output", "input grad", "weight grad", "bias grad"), events, dense,
                                (1e-5, 1e-5, 1e-4, 1e-4), strict=True):
        if b is None:
            assert a is None, name
        else:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=atol, msg=lambda m, name=name: f"{name}: {m}")


def test_applies_only_where_the_kernels_can_run() -> None:
    x, w = spikes(2, 16, 8, 8), torch.randn(8, 16, 3, 3)
    args = ((1, 1), (1, 1), (1, 1), 1, "zeros")
    assert spike_conv.applies(x, w, *args)
    assert not spike_conv.applies(x.contiguous(), w, *args)  # NCHW
    assert not spike_conv.applies(x.double(), w.double(), *args)
    assert not spike_conv.applies(x, w, (1, 1), (1, 1), (2, 2), 1, "zeros")  # dilation
    assert not spike_conv.applies(x, w, (1, 1), (1, 1), (1, 1), 1, "reflect")
    assert not spike_conv.applies(x, w, (1, 1), "same", (1, 1), 1, "zeros")
    assert not spike_conv.applies(x, w[..., :1, :1], (1, 1), (0, 0), (1, 1), 1, "zeros")  # 1×1: dense
    assert not spike_conv.applies(x[..., :2, :2].contiguous(memory_format=CL), w, (1, 1), (0, 0), (1, 1), 1,
                                  "zeros")  # no output: F.conv2d raises its own error
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not spike_conv.applies(x, w, *args)
    assert not spike_conv.applies(x, torch.randn(8, 32, 3, 3), *args)  # channels: F.conv2d's own error
    assert not spike_conv.applies(x, w, (1, 1), (-1, 1), (1, 1), 1, "zeros")
    assert not spike_conv.applies(x, w, (11, 1), (1, 1), (1, 1), 1, "zeros")  # stride past the padded input


def test_a_wrong_channel_count_gets_torchs_error() -> None:
    conv = conv_layer()  # 16 input channels
    with pytest.raises(RuntimeError, match="16 channels"):
        conv(spikes(4, 32, 6, 6).reshape(2, 2, 32, 6, 6))


def test_event_path_runs_and_counts_events() -> None:
    x = spikes(2, 16, 8, 8, rate=0.1)
    y, events = spike_conv2d_op(x, torch.randn(8, 16, 3, 3), None, [1, 1], [1, 1], 1.0, 1.0)
    assert int(events) == int(x.count_nonzero())


def test_forward_does_not_depend_on_thread_count() -> None:
    x, w = spikes(6, 32, 10, 10, rate=0.2), torch.randn(48, 32, 3, 3)
    before = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            outs.append(spike_conv2d(x, w, None, (1, 1), (1, 1), ALL))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])


def test_weight_grad_is_deterministic() -> None:
    x, w = spikes(5, 16, 8, 8, rate=0.1), torch.randn(24, 16, 3, 3)
    g = torch.randn(5, 24, 8, 8).contiguous(memory_format=CL)
    events = torch.tensor(int(x.count_nonzero()))
    a = backward_op(g, x, w, events, [1, 1], [1, 1], 1.0, [False, True, False])
    b = backward_op(g, x, w, events, [1, 1], [1, 1], 1.0, [False, True, False])
    assert a[0].numel() == 0 and a[2].numel() == 0 and torch.equal(a[1], b[1])


@pytest.mark.parametrize("where", [0, 5000, -1])  # first look, parallel count, last entry
@pytest.mark.parametrize("value", [0.5, 2.0, -1.0, -0.0, float("nan")])
def test_non_binary_input_runs_dense(where: int, value: float) -> None:
    x = spikes(2, 16, 20, 20, rate=0.05)
    x.permute(0, 2, 3, 1).view(-1)[where] = value  # the channels-last storage, in order
    w = torch.randn(8, 16, 3, 3)
    b = torch.randn(8)
    y, events = spike_conv2d_op(x, w, b, [1, 1], [1, 1], 1.0, 1.0)
    assert int(events) == -1
    torch.testing.assert_close(y, F.conv2d(x, w, b, 1, 1), rtol=0, atol=0, equal_nan=True)


def test_rate_limits_choose_the_path() -> None:
    x, w = spikes(2, 16, 8, 8, rate=0.3), torch.randn(8, 16, 3, 3)
    _, events = spike_conv2d_op(x, w, None, [1, 1], [1, 1], 0.2, 1.0)
    assert int(events) == -1  # above forward_max_rate: dense
    _, events = spike_conv2d_op(x, w, None, [1, 1], [1, 1], 0.4, 1.0)
    assert int(events) > 0
    g = torch.randn(2, 8, 8, 8).contiguous(memory_format=CL)
    mask = [True, True, True]
    dense = torch.ops.aten.convolution_backward(g, x, w, [8], [1, 1], [1, 1], [1, 1], False, [0, 0], 1, mask)
    above = backward_op(g, x, w, events, [1, 1], [1, 1], 0.2, mask)  # above the weight-grad limit: one dense call
    assert all(torch.equal(a, b) for a, b in zip(above, dense, strict=True))
    below = backward_op(g, x, w, events, [1, 1], [1, 1], 0.4, mask)
    assert torch.equal(below[0], dense[0])  # the input gradient is oneDNN's either way
    torch.testing.assert_close(below[1], dense[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(below[2], dense[2], rtol=1e-5, atol=1e-5)


def test_custom_ops_pass_opcheck() -> None:
    x, w = spikes(2, 16, 6, 6, rate=0.2).requires_grad_(), torch.randn(24, 16, 3, 3, requires_grad=True)
    b = torch.randn(24, requires_grad=True)
    events = torch.tensor(int(x.count_nonzero()))
    g = torch.randn(2, 24, 6, 6).contiguous(memory_format=CL)
    for op, args in ((spike_conv2d_op, (x, w, b, [1, 1], [1, 1], 1.0, 1.0)),
                     (spike_conv2d_op, (x, w, None, [2, 2], [0, 0], 1.0, 1.0)),
                     (backward_op, (g, x.detach(), w.detach(), events, [1, 1], [1, 1], 1.0, [True, True, True])),
                     (backward_op, (g, x.detach(), w.detach(), events, [1, 1], [1, 1], 1.0, [False, True, False])),
                     (backward_op, (g, x.detach(), w.detach(), torch.tensor(-1), [1, 1], [1, 1], 1.0,
                                    [True, False, True]))):
        result = torch.library.opcheck(op, args)
        assert set(result.values()) == {"SUCCESS"}, result


def conv_layer(cfg: SpikeConvConfig | str = "auto") -> layers.Conv2d:
    conv = layers.Conv2d(16, 8, 3, padding=1, bias=True)
    conv.memory_format = CL
    layers.set_spike_convs(conv, cfg)
    return conv


def count_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = spike_conv.spike_conv2d

    def spy(*args: object, **kwargs: object) -> torch.Tensor:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(spike_conv, "spike_conv2d", spy)
    return calls


def test_conv2d_layer_uses_events_in_training_only(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_calls(monkeypatch)
    conv = conv_layer()
    x = spikes(8, 16, 6, 6, rate=0.1).reshape(2, 4, 16, 6, 6)  # [T, B, C, H, W]
    y = conv(x)
    assert len(calls) == 1
    torch.testing.assert_close(y, F.conv2d(x.flatten(0, 1), conv.weight, conv.bias, 1, 1).reshape(2, 4, 8, 6, 6),
                               rtol=1e-5, atol=1e-5)
    conv.eval()
    conv(x)
    assert len(calls) == 1  # eval: contiguous dense, as the analysis tools expect
    conv.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        conv(x)
    assert len(calls) == 1  # autocast: dense bf16
    layers.set_spike_convs(conv, "dense")
    conv(x)
    assert len(calls) == 1


def test_model_config_sets_and_checks_spike_convs() -> None:
    def convs(mode: str) -> list[SpikeConvConfig | None]:
        net = build_model(ModelConfig(name="sdsnn_convnet", spike_convs=mode))
        return [m.spike_convs for m in net.modules() if isinstance(m, layers.Conv2d)]

    assert all(c == SpikeConvConfig() for c in convs("auto"))
    assert SpikeConvConfig().forward_max_rate == 0.15 and SpikeConvConfig().weight_grad_max_rate == 0.08
    assert all(c is None for c in convs("dense"))
    with pytest.raises(ValueError, match="model.spike_convs"):
        build_model(ModelConfig(spike_convs="sparse"))
    with pytest.raises(ValueError, match="forward_max_rate"):
        SpikeConvConfig(forward_max_rate=1.5)


def test_resnet_training_step_matches_dense() -> None:
    cfg = dict(name="resnet19", num_classes=10, in_channels=3, input_size=16, width=0.125)
    nets = [build_model(ModelConfig(**cfg, spike_convs=mode)).train() for mode in ("dense", "auto")]
    nets[1].load_state_dict(nets[0].state_dict())
    for net in nets:  # every spiking conv takes the event path, whatever it fires
        layers.set_spike_convs(net, ALL)
    layers.set_spike_convs(nets[0], "dense")
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(3)).unsqueeze(0).expand(2, 4, 3, 16, 16)
    grads = []
    for net in nets:
        net.zero_grad()
        net(x).sum().backward()
        grads.append({k: p.grad for k, p in net.named_parameters()})
    for k, g in grads[0].items():
        torch.testing.assert_close(grads[1][k], g, rtol=1e-3, atol=1e-4, msg=lambda m, k=k: f"{k}: {m}")


def test_whole_model_compiles_without_graph_breaks() -> None:
    net = build_model(ModelConfig(name="sdsnn_convnet", input_size=12)).train()
    layers.set_spike_convs(net, ALL)
    compiled = torch.compile(net, fullgraph=True, dynamic=False)
    x = spikes(4, 1, 12, 12, rate=0.5).reshape(2, 2, 1, 12, 12)
    out = compiled(x)
    out.sum().backward()
    reference = net(x)
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-5)


def test_without_kernels_runs_dense_and_warns_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from spikeforge.runtime.native import NativeUnavailable

    def fail() -> None:
        raise NativeUnavailable("no C compiler: 'nope' is not on PATH (set CC to one)")

    monkeypatch.setattr(spike_conv, "_kernels", None)
    monkeypatch.setattr(spike_conv, "_failure", None)
    monkeypatch.setattr(spike_conv, "_load", fail)
    x, w = spikes(2, 16, 6, 6, rate=0.1), torch.randn(8, 16, 3, 3)
    with pytest.warns(RuntimeWarning, match="running them dense: no C compiler"):
        y, events = spike_conv2d_op(x, w, None, [1, 1], [1, 1], 1.0, 1.0)
    assert int(events) == -1 and torch.equal(y, F.conv2d(x, w, None, 1, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spike_conv2d_op(x, w, None, [1, 1], [1, 1], 1.0, 1.0)  # warned once only


def test_training_on_the_event_path_resumes_bit_identical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Which path a call takes depends on its input alone, and both are deterministic: a run stopped after
    epoch 1 and resumed ends with the weights of an uninterrupted run."""
    from develop_helpers import TINY_SIZE
    from reliability_helpers import weights

    from spikeforge.data.base import ArrayDataset, DatasetInfo, DataSplits
    from spikeforge.train.engine import train
    from spikeforge.train.recipe import recipe_from_dict

    gen = torch.Generator().manual_seed(0)
    dim = ArrayDataset(torch.randint(0, 30, (64, 1, TINY_SIZE, TINY_SIZE), generator=gen).to(torch.uint8),
                       torch.arange(64) % 2)  # rate-coded at ≈ 6 %: every spiking conv input is sparse
    splits = DataSplits(dim, dim, DatasetInfo("synthetic", 2, 1, TINY_SIZE))
    doc = {
        "name": "tiny-spike-convs",
        "model": {"name": "cifar_convnet", "width": 0.0625, "in_channels": 1, "input_size": TINY_SIZE,
                  "num_classes": 2, "pool": "max", "neuron": {"kind": "lif"}},
        "data": {"name": "mnist", "time_steps": 2, "encoding": "rate"},
        "train": {"epochs": 2, "batch_size": 16, "precision": "fp32", "device": "cpu",
                  "optimizer": {"name": "sgd", "lr": 0.05}, "schedule": {"name": "constant"}},
    }
    recipe = recipe_from_dict(copy.deepcopy(doc))
    doc["train"]["epochs"] = 1  # type: ignore[index]
    events: list[int] = []
    op = spike_conv.spike_conv2d_op

    def counting(*args: object) -> tuple[torch.Tensor, torch.Tensor]:
        y, n = op(*args)  # type: ignore[arg-type]
        events.append(int(n))
        return y, n

    monkeypatch.setattr(spike_conv, "spike_conv2d_op", counting)
    quiet = {"quiet": True, "splits": splits}
    train(recipe, tmp_path / "whole", **quiet)  # type: ignore[arg-type]
    assert sum(n >= 0 for n in events) >= len(events) // 2, f"the event path should run for most calls: {events}"
    train(recipe_from_dict(doc), tmp_path / "split", **quiet)  # type: ignore[arg-type]
    train(recipe, tmp_path / "split", resume=True, **quiet)  # type: ignore[arg-type]
    a, b = weights(tmp_path / "whole"), weights(tmp_path / "split")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_double_backward_matches_dense() -> None:
    x, w = spikes(2, 16, 6, 6, rate=0.1), torch.randn(8, 16, 3, 3)
    outs = []
    for run in (lambda a, b: F.conv2d(a, b, None, 1, 1), lambda a, b: spike_conv2d(a, b, None, (1, 1), (1, 1), ALL)):
        a, b = x.clone().requires_grad_(), w.clone().requires_grad_()
        (gw,) = torch.autograd.grad((run(a, b) ** 2).sum(), b, create_graph=True)
        (ggx,) = torch.autograd.grad(gw.square().sum(), a)
        outs.append((gw.detach(), ggx))
    torch.testing.assert_close(outs[1][0], outs[0][0], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(outs[1][1], outs[0][1], rtol=1e-5, atol=1e-3)


def test_input_changed_behind_autograds_back_runs_dense() -> None:
    """A saved input edited through ``.data`` after the forward (autograd cannot see it): the weight gradient
    kernel finds the non-binary value and the backward runs dense on what it finds, as F.conv2d's would."""
    x, w = spikes(2, 16, 6, 6, rate=0.1).requires_grad_(), torch.randn(8, 16, 3, 3, requires_grad=True)
    y = spike_conv2d(x, w, None, (1, 1), (1, 1), ALL)
    x.data[0, 0, 0, 0] = 0.5
    y.sum().backward()
    edited = x.detach()
    dense = torch.ops.aten.convolution_backward(torch.ones_like(y), edited, w.detach(), None, [1, 1], [1, 1], [1, 1],
                                                False, [0, 0], 1, [False, True, False])[1]
    assert w.grad is not None and torch.equal(w.grad, dense.contiguous())


def test_masked_convolutions_use_their_masked_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """SD-SNN's pruning masks a conv's weights in ``_conv_forward``: the event path must sum ``W ⊙ M``, and
    train exactly like the dense masked layer."""
    from spikeforge.develop.masking import attach_mask

    convs = [conv_layer("dense"), conv_layer(ALL)]
    convs[1].load_state_dict(convs[0].state_dict())
    for conv in convs:
        attach_mask(conv)
        conv.weight_mask[:, :8] = 0  # prune half the input channels
    calls = count_calls(monkeypatch)
    x = spikes(8, 16, 6, 6, rate=0.1).reshape(2, 4, 16, 6, 6)
    outs = []
    for conv in convs:
        y = conv(x)
        y.square().sum().backward()
        outs.append((y.detach(), conv.weight.grad))
    assert len(calls) == 1  # the event path ran for the second layer only
    torch.testing.assert_close(outs[1][0], outs[0][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(outs[1][1], outs[0][1], rtol=1e-5, atol=1e-4)
    unmasked = F.conv2d(x.flatten(0, 1), convs[0].weight.detach(), convs[0].bias.detach(), 1, 1)
    assert not torch.allclose(outs[0][0].flatten(0, 1), unmasked, atol=1e-3)  # the mask matters here
