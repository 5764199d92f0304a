"""Masked layers: pruned synapses contribute nothing, gradients reach the shadow weights, keys stay plain."""

from __future__ import annotations

import torch
from develop_helpers import tiny_model
from safetensors.torch import load_file, save_file

from spikeforge import layers as L
from spikeforge.develop.masking import (
    MASK_BUFFERS,
    MaskedBatchNorm2d,
    attach_channel_gate,
    attach_mask,
    bake_masks,
    following_batchnorms,
    strip_masks,
    sync_gates,
)


def test_masked_forward_ignores_pruned_weights() -> None:
    torch.manual_seed(0)
    layer = attach_mask(L.Linear(5, 3))
    layer.weight_mask[1, 2] = 0
    layer.weight_mask[2] = 0
    x = torch.randn(4, 2, 5)
    y = layer(x)
    with torch.no_grad():
        layer.weight[1, 2] = 1e6  # a pruned synapse's shadow weight changes nothing
        layer.weight[2] = -1e6
    assert torch.equal(layer(x), y)
    w_eff = layer.weight.detach() * layer.weight_mask
    bias_eff = layer.bias.detach() * torch.tensor([1.0, 1.0, 0.0])  # neuron 2 is dead: no bias
    assert torch.allclose(y, torch.nn.functional.linear(x, w_eff, bias_eff))


def test_gradient_reaches_the_shadow_weight_straight_through() -> None:
    torch.manual_seed(0)
    conv = attach_mask(L.Conv2d(2, 3, 3, padding=1))
    conv.weight_mask[0, 1] = 0
    x = torch.randn(2, 2, 2, 5, 5)
    conv(x).square().sum().backward()
    grad = conv.weight.grad
    assert grad is not None and float(grad[0, 1].abs().sum()) > 0  # the masked kernel still learns
    # the shadow gradient equals the gradient with respect to the effective weight
    w_eff = (conv.weight.detach() * conv.weight_mask).requires_grad_(True)
    out = torch.nn.functional.conv2d(x.flatten(0, 1), w_eff, conv.bias.detach(), padding=1)
    out.square().sum().backward()
    assert torch.allclose(grad, w_eff.grad, atol=1e-5)
    assert isinstance(conv, torch.nn.Conv2d)


def test_state_dict_keys_stay_plain_and_save_as_safetensors(tmp_path) -> None:  # noqa: ANN001
    model = tiny_model()
    attach_mask(model.fc1)
    model.fc1.weight_mask[0] = 0
    keys = list(model.state_dict())
    assert "fc1.weight" in keys and "fc1.weight_mask" in keys and "fc1.bias" in keys
    assert not any("parametrizations" in k or "orig" in k for k in keys)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "m.safetensors")
    other = tiny_model(seed=1)
    attach_mask(other.fc1)
    other.load_state_dict(load_file(tmp_path / "m.safetensors"))
    assert torch.equal(other.fc1.weight_mask, model.fc1.weight_mask)


def test_baking_folds_the_mask_into_the_weights_and_strip_restores_plain_layers() -> None:
    model = tiny_model()
    attach_mask(model.fc1).weight_mask[0] = 0
    state = model.state_dict()
    other = tiny_model(seed=1)
    attach_mask(other.fc1)
    other.load_state_dict(state)
    x = torch.rand(2, 3, 1, 8, 8)
    before = other(x)
    bake_masks(other)
    assert torch.equal(other.fc1.weight[0].detach(), torch.zeros_like(other.fc1.weight[0]))
    assert torch.equal(other.fc1.weight[1].detach(), model.fc1.weight[1].detach())
    assert torch.equal(other.fc1.bias[0].detach(), torch.zeros(()))  # a dead neuron's bias is gated too
    strip_masks(other, MASK_BUFFERS)
    assert type(other.fc1) is L.Linear and "fc1.weight_mask" not in other.state_dict()
    torch.testing.assert_close(other(x), before)  # the baked plain model computes what the masked one did


def test_dead_conv_channel_is_silenced_through_its_batch_norm() -> None:
    model = tiny_model("cifar_convnet")
    bn_of = following_batchnorms(model, ["conv1", "conv2"])
    assert bn_of == {"conv1": "bn1", "conv2": "bn2"}
    for conv, bn in bn_of.items():
        attach_mask(model.get_submodule(conv))
        attach_channel_gate(model.get_submodule(bn))
    model.conv1.weight_mask[1] = 0
    sync_gates(model, bn_of)
    assert isinstance(model.bn1, MaskedBatchNorm2d)
    assert model.bn1.channel_mask.tolist() == [1.0, 0.0, 1.0, 1.0]
    with torch.no_grad():
        model.bn1.bias.fill_(3.0)  # would make a dead channel fire without the gate
    x = torch.rand(2, 2, 3, 8, 8)
    h = model.bn1(model.conv1(x))
    assert torch.equal(h[:, :, 1], torch.zeros_like(h[:, :, 1]))
    model.eval()
    assert torch.equal(model.bn1(model.conv1(x))[:, :, 1], torch.zeros_like(h[:, :, 1]))


def test_a_pruned_neuron_learns_only_with_a_surrogate_nonzero_at_rest() -> None:
    """docs/develop.md "Regeneration, measured": the rectangle surrogate freezes a pruned neuron's shadows."""
    from spikeforge.neurons.modules import LIFNode
    from spikeforge.neurons.surrogate import Atan, Rectangle

    grads = {}
    for surrogate in (Rectangle(1.0), Atan()):
        torch.manual_seed(0)
        fc, readout = attach_mask(L.Linear(6, 4)), L.Linear(4, 2)
        fc.weight_mask[1] = 0  # neuron 1 pruned: membrane stays at rest (0)
        sn = LIFNode(beta=0.2, threshold=0.5, v_reset=0.0, surrogate=surrogate, backend="reference")
        readout(sn(fc(torch.rand(5, 3, 6)))).square().sum().backward()
        grads[surrogate.name] = float(fc.weight.grad[1].abs().sum())
    assert grads["rectangle"] == 0.0  # |0 − θ| = 0.5 is outside the open window |u − θ| < 0.5
    assert grads["atan"] > 0.0
