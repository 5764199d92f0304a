"""Time-distributed layers equal the per-time-step application of the plain layer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeforge import layers as L


def _per_step(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.stack([module(xt) for xt in x])


def test_conv_pool_linear_match_per_step() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 2, 4, 8, 8)
    conv = L.Conv2d(4, 5, 3, padding=1)
    plain = nn.Conv2d(4, 5, 3, padding=1)
    plain.load_state_dict(conv.state_dict())
    assert torch.allclose(conv(x), _per_step(plain, x), atol=1e-6)
    assert torch.equal(L.AvgPool2d(2)(x), _per_step(nn.AvgPool2d(2), x))
    assert torch.equal(L.MaxPool2d(2)(x), _per_step(nn.MaxPool2d(2), x))
    assert torch.equal(L.AdaptiveAvgPool2d(1)(x), _per_step(nn.AdaptiveAvgPool2d(1), x))
    flat = L.Flatten()(x)
    assert flat.shape == (3, 2, 4 * 8 * 8)
    lin = L.Linear(256, 7)
    assert lin(flat).shape == (3, 2, 7)


def test_batchnorm_statistics_shared_over_time() -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 3, 2, 5, 5) * 3 + 1
    bn = L.BatchNorm2d(2)
    y = bn(x)
    # training-mode statistics are taken over T*B*H*W jointly
    assert torch.allclose(y.mean(dim=(0, 1, 3, 4)), torch.zeros(2), atol=1e-5)
    ref = nn.BatchNorm2d(2)
    assert torch.allclose(ref(x.flatten(0, 1)).unflatten(0, (4, 3)), y, atol=1e-6)


def test_dropout_mask_shared_across_time() -> None:
    torch.manual_seed(0)
    drop = L.Dropout(0.5)
    x = torch.ones(6, 4, 10)
    y = drop(x)
    assert torch.equal(y[0], y[5])
    assert set(y.unique().tolist()) <= {0.0, 2.0}
    drop.eval()
    assert torch.equal(drop(x), x)


def _is_channels_last(y: torch.Tensor) -> bool:
    return y.flatten(0, 1).is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()


def test_channels_last_training_layout_and_eval_layout() -> None:
    """Training keeps NHWC activations through conv → BN → neuron → pool → conv without reorders;
    eval mode computes contiguous activations; the numbers agree with the contiguous model."""
    from spikeforge.models import ModelConfig, build_model

    torch.manual_seed(0)
    cfg = dict(name="cifar_convnet", in_channels=3, input_size=8, width=0.0625)
    cl = build_model(ModelConfig(**cfg, memory_format="channels_last"))
    plain = build_model(ModelConfig(**cfg, memory_format="contiguous"))
    plain.load_state_dict(cl.state_dict())
    x = torch.randn(2, 3, 3, 8, 8)
    seen: dict[str, torch.Tensor] = {}
    for name in ("conv1", "bn1", "sn1", "pool1", "conv3"):
        cl.get_submodule(name).register_forward_hook(lambda _m, _i, out, n=name: seen.__setitem__(n, out))
    out_cl = cl.train()(x)
    assert all(_is_channels_last(seen[n]) for n in seen), {n: t.stride() for n, t in seen.items()}
    out_plain = plain.train()(x)
    torch.testing.assert_close(out_cl, out_plain, rtol=1e-4, atol=1e-4)
    cl.eval()(x)
    assert all(seen[n].is_contiguous() for n in seen)
    with pytest.raises(ValueError, match="model.memory_format"):
        build_model(ModelConfig(**cfg, memory_format="nhwc"))


def test_one_channel_input_still_gives_channels_last_output() -> None:
    conv = L.Conv2d(1, 4, 3, padding=1)
    L.set_memory_format(conv, "channels_last")
    assert _is_channels_last(conv(torch.randn(2, 3, 1, 6, 6)))


def test_expanded_input_is_convolved_once_with_the_same_result() -> None:
    torch.manual_seed(1)
    conv = L.Conv2d(2, 3, 3, padding=1)
    image = torch.randn(4, 2, 6, 6)
    expanded = image.unsqueeze(0).expand(5, *image.shape).requires_grad_()
    copied = expanded.detach().contiguous().requires_grad_()
    calls: list[tuple[int, ...]] = []
    conv.register_forward_pre_hook(lambda _m, inp: calls.append(tuple(inp[0].shape)))
    y_exp, y_cop = conv(expanded), conv(copied)
    assert y_exp.stride(0) == 0 and y_exp.shape == y_cop.shape == (5, 4, 3, 6, 6)
    torch.testing.assert_close(y_exp, y_cop, rtol=0, atol=0)
    g = torch.randn_like(y_cop)
    (gw_exp,) = torch.autograd.grad((y_exp * g).sum(), (conv.weight,))
    (gw_cop,) = torch.autograd.grad((y_cop * g).sum(), (conv.weight,))
    torch.testing.assert_close(gw_exp, gw_cop, rtol=1e-5, atol=1e-5)  # ΣT before vs after the conv


@pytest.mark.parametrize("size,fmt", [((2, 3, 5, 6, 6), torch.channels_last),
                                      ((2, 3, 5, 7, 9), torch.contiguous_format),
                                      ((3, 2, 4, 8, 8), torch.channels_last)])
def test_block_average_pool_matches_avg_pool2d(size: tuple[int, ...], fmt: torch.memory_format) -> None:
    t, b, c, h, w = size
    x = torch.randn(t * b, c, h, w).contiguous(memory_format=fmt).unflatten(0, (t, b)).requires_grad_()
    ref = x.detach().clone().requires_grad_()
    y = L.AvgPool2d(2)(x)
    y_ref = torch.nn.functional.avg_pool2d(ref.flatten(0, 1), 2).unflatten(0, (t, b))
    assert torch.equal(y, y_ref)
    for g in (torch.randn_like(y), torch.randn(y.shape)):  # gradient in the output's layout, or contiguous
        (gx,) = torch.autograd.grad((y * g).sum(), (x,), retain_graph=True)
        (gr,) = torch.autograd.grad((y_ref * g).sum(), (ref,), retain_graph=True)
        torch.testing.assert_close(gx, gr, rtol=0, atol=1e-7)
        assert gx.stride() == x.stride()
