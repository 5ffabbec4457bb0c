"""The model zoo — AlexNet-for-CIFAR's exact shapes and counts, small-cnn, bad names.

docs/algorithm.md#alexnet-cifar
"""

from __future__ import annotations

import pytest
import torch

from edge_mcepl.algorithms.mcepl import MCEPL, MCEPLParams
from edge_mcepl.algorithms.params import Retention
from edge_mcepl.errors import UserError
from edge_mcepl.nn.layers import MaskedConv2d, MaskedLinear
from edge_mcepl.nn.weights import generate_fixed_weights, load_fixed_weights
from edge_mcepl.nn.zoo import AlexNetCifar, SmallCNN, build_model


def test_alexnet_shapes_and_counts():
    model = AlexNetCifar()
    layers = model.masked_layers()
    assert [name for name, _ in layers] == ["conv1", "conv2", "conv3", "fc1", "fc2"]
    assert model.layer_shapes() == [(64, 3, 5, 5), (128, 64, 5, 5), (256, 128, 5, 5), (192, 1024), (10, 192)]
    conv = sum(layer.weight.numel() for _, layer in layers if isinstance(layer, MaskedConv2d))
    fc = sum(layer.weight.numel() for _, layer in layers if isinstance(layer, MaskedLinear))
    assert (conv, fc, conv + fc) == (1_028_800, 198_528, 1_227_328)
    biases = sum(layer.bias.numel() for _, layer in layers if isinstance(layer, MaskedLinear))
    assert biases == 202
    assert not any(hasattr(layer, "bias") for _, layer in layers if isinstance(layer, MaskedConv2d))
    # The network holds no learning state: weights are fixed buffers, scores belong to the rule.
    assert sum(p.numel() for p in model.parameters()) == 0
    rule = MCEPL(model, MCEPLParams(), Retention(), seed=1)
    assert sum(state.scores.numel() for state in rule.layers) == 1_227_328


def load(model, name):
    load_fixed_weights(model, generate_fixed_weights(model, name, 1))
    MCEPL(model, MCEPLParams(), Retention(0.5, 0.5), seed=1)  # binds each layer's scored mask
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
