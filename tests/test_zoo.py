"""Spec §7: the model zoo — AlexNet-for-CIFAR's exact shapes and counts, small-cnn, bad names."""

from __future__ import annotations

import pytest
import torch

from edge_mcepl.errors import UserError
from edge_mcepl.nn.layers import MaskedConv2d, MaskedLinear
from edge_mcepl.nn.weights import generate_fixed_weights, load_fixed_weights, seeded_scores
from edge_mcepl.nn.zoo import AlexNetCifar, SmallCNN, build_model


def test_alexnet_shapes_and_counts():
    model = AlexNetCifar()
    layers = model.masked_layers()
    assert [name for name, _ in layers] == ["conv1", "conv2", "conv3", "fc1", "fc2"]
    assert model.layer_shapes() == [(64, 3, 5, 5), (128, 64, 5, 5), (256, 128, 5, 5), (192, 1024), (10, 192)]
    conv = sum(l.weight.numel() for _, l in layers if isinstance(l, MaskedConv2d))
    fc = sum(l.weight.numel() for _, l in layers if isinstance(l, MaskedLinear))
    assert (conv, fc, conv + fc) == (1_028_800, 198_528, 1_227_328)
    biases = sum(l.bias.numel() for _, l in layers if isinstance(l, MaskedLinear))
    assert biases == 202
    assert not any(hasattr(l, "bias") for _, l in layers if isinstance(l, MaskedConv2d))
    assert sum(p.numel() for p in model.parameters()) == 1_227_328  # only the scores are parameters


def load(model, name):
    load_fixed_weights(model, generate_fixed_weights(model, name, 1))
    seeded_scores(model, 1)
    for _, layer in model.masked_layers():
        layer.retention_ratio = 0.5
    return model


def test_alexnet_maps_cifar_images_to_ten_logits():
    model = load(build_model("alexnet-cifar"), "alexnet-cifar")
    assert isinstance(model, AlexNetCifar) and model.input_shape == (3, 32, 32)
    out = model.logits(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and bool(torch.isfinite(out).all())
    assert not torch.allclose(out[0], out[1]), "different inputs give different logits"


def test_small_cnn_maps_28x28_images_to_logits():
    model = load(build_model("small-cnn", num_classes=7), "small-cnn")
    assert isinstance(model, SmallCNN) and model.input_shape == (1, 28, 28)
    out = model.logits(torch.randn(3, 1, 28, 28))
    assert out.shape == (3, 7) and bool(torch.isfinite(out).all())
    assert model.layer_shapes()[-1] == (7, 128)


def test_unknown_model_is_a_user_error_naming_the_choices():
    with pytest.raises(UserError) as err:
        build_model("resnet-9000")
    assert "resnet-9000" in str(err.value) and "alexnet-cifar" in str(err.value) and "small-cnn" in str(err.value)
