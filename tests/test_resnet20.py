"""resnet20-cifar: ResNet-20's exact masked layers and counts, and a forward pass that is per image.

docs/algorithm.md#resnet20-cifar
"""

from __future__ import annotations

import math

import pytest
import torch

from edge_mcepl.algorithms.mcepl import MCEPL, MCEPLParams
from edge_mcepl.algorithms.params import Retention
from edge_mcepl.nn.layers import MaskedConv2d, MaskedLinear
from edge_mcepl.nn.norm import InstanceNorm
from edge_mcepl.nn.weights import generate_fixed_weights, load_fixed_weights
from edge_mcepl.nn.zoo import ResNet20Cifar, build_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model():
    model = build_model("resnet20-cifar")
    load_fixed_weights(model, generate_fixed_weights(model, "resnet20-cifar", 3))
    MCEPL(model, MCEPLParams(), Retention(0.3, 0.9), seed=3)  # binds each layer's scored mask
    return model.eval()


def test_nineteen_convs_and_one_linear_with_resnet20s_shapes():
    model = ResNet20Cifar()
    layers = model.masked_layers()
    assert len(layers) == 20 and model.input_shape == (3, 32, 32)
    assert [name for name, _ in layers][:3] == ["conv1", "stage1.0.conv1", "stage1.0.conv2"]
    assert [name for name, _ in layers][-1] == "fc"
    convs = [layer for _, layer in layers if isinstance(layer, MaskedConv2d)]
    assert len(convs) == 19 and isinstance(layers[-1][1], MaskedLinear)
    want = [(16, 3, 3, 3)] + [(16, 16, 3, 3)] * 6
    for channels in (32, 64):
        want += [(channels, channels // 2, 3, 3)] + [(channels, channels, 3, 3)] * 5
    assert model.layer_shapes() == want + [(10, 64)]
    strides = [conv.stride for conv in convs]
    assert strides == [1] * 7 + [2] + [1] * 5 + [2] + [1] * 5 and all(conv.padding == 1 for conv in convs)
    conv = sum(layer.weight.numel() for layer in convs)
    assert (conv, layers[-1][1].weight.numel(), conv + 640) == (267_696, 640, 268_336)
    assert layers[-1][1].bias.numel() == 10
    # No state but the fixed weights: no parameters, no running statistics, 19 parameter-free norms.
    assert sum(p.numel() for p in model.parameters()) == 0
    assert {name.rsplit(".", 1)[-1] for name, _ in model.named_buffers()} == {"weight", "bias"}
    assert sum(isinstance(m, InstanceNorm) for m in model.modules()) == 19


def test_forty_million_multiply_adds_per_image():
    model = ResNet20Cifar()
    macs = []
    for _, layer in model.masked_layers():
        layer.register_forward_hook(lambda layer, _, out: macs.append(
            layer.weight.numel() * (out.shape[2] * out.shape[3] if out.dim() == 4 else 1)))
    with torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    assert sum(macs[1:7]) == 14_155_776 and sum(macs[7:13]) == sum(macs[13:19]) == 12_976_128
    assert (macs[0], macs[-1], sum(macs)) == (442_368, 640, 40_551_040)  # docs/algorithm.md#resnet20-cifar


def test_fixed_weights_are_pytorchs_default_uniform_per_layer():
    model = build_model("resnet20-cifar")
    fixed = generate_fixed_weights(model, "resnet20-cifar", 3)
    assert len(fixed.tensors) == 21  # 20 weights + the linear bias
    for name, layer in model.masked_layers():
        w, bound = fixed.tensors[f"{name}.weight"], 1 / math.sqrt(layer.fan_in)
        assert float(w.abs().max()) <= bound and float(w.abs().max()) > 0.9 * bound, name
    assert generate_fixed_weights(build_model("resnet20-cifar"), "resnet20-cifar", 3).fingerprint == fixed.fingerprint


def test_a_batch_maps_to_finite_logits_of_the_same_scale_as_its_inputs(model):
    with torch.no_grad():
        out = model.logits(torch.randn(6, 3, 32, 32))
    assert out.shape == (6, 10) and bool(torch.isfinite(out).all())
    assert not torch.allclose(out[0], out[1]), "different inputs give different logits"
    assert 1e-3 < float(out.std()) < 10, "the normalisation keeps a 20-layer random net from vanishing or exploding"


def test_batch_one_equals_the_images_row_in_a_batch(model):
    images = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        batch = model.logits(images)
        alone = torch.cat([model.logits(images[i:i + 1]) for i in range(5)])
        shuffled = model.logits(images.flip(0)).flip(0)
    torch.testing.assert_close(alone, batch, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(shuffled, batch, rtol=1e-5, atol=1e-6)


def test_a_zero_channel_stays_zero_and_leaves_the_others_unchanged():
    norm = InstanceNorm()
    x = torch.randn(2, 4, 8, 8)
    x[:, 1] = 0
    x.requires_grad_(True)
    out = norm(x)
    assert torch.count_nonzero(out[:, 1]) == 0
    torch.testing.assert_close(out[:, [0, 2, 3]], norm(x[:, [0, 2, 3]]))
    out.square().sum().backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())
