"""export/prune.py: removing dead filters/rows leaves the function of the masked network unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_mcepl.export.graph import trace_ops
from edge_mcepl.export.prune import prune_network
from edge_mcepl.export.run import masked_model
from edge_mcepl.export.torch_model import PrunedTorchNetwork
from edge_mcepl.nn.weights import generate_fixed_weights
from edge_mcepl.nn.zoo import build_model

torch.set_num_threads(1)


def random_masks(template, density=0.5, seed=0):
    rng = np.random.default_rng(seed)
    return {name: (rng.random(tuple(layer.weight.shape)) < density).astype(np.float32)
            for name, layer in template.masked_layers()}


def prune_and_compare(model_name, masks, elu_logits=True, n=16):
    """(pruned network, max |pruned − masked dense|, max |masked dense|) on n random inputs."""
    template = build_model(model_name)
    fixed = generate_fixed_weights(template, model_name, 3)
    weights = {k: v.numpy() for k, v in fixed.tensors.items()}
    net = prune_network(trace_ops(template), weights, masks, input_shape=template.input_shape, num_classes=10,
                        elu_logits=elu_logits)
    reference = masked_model(model_name, 10, fixed, [masks[name] for name, _ in template.masked_layers()], elu_logits)
    x = torch.randn(n, *template.input_shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = reference.logits(x)
    got = PrunedTorchNetwork(net)(x)
    return net, float((got - want).abs().max()), float(want.abs().max())


def kept(net):
    return {r.name: r.filters_kept for r in net.layers}


def test_nothing_dead_keeps_every_filter_and_the_output():
    masks = {k: np.ones_like(v) for k, v in random_masks(build_model("small-cnn")).items()}
    net, diff, scale = prune_and_compare("small-cnn", masks)
    assert net.filters_removed == 0 and net.params == net.dense_params and net.macs == net.dense_macs
    assert diff <= 1e-5 * max(scale, 1.0)


@pytest.mark.parametrize("elu_logits", [True, False])
def test_one_dead_filter_in_each_layer_type(elu_logits):
    masks = random_masks(build_model("small-cnn"), seed=2)
    masks["conv1"][3] = 0  # a dead conv filter: its channel goes from conv2's input too
    masks["conv2"][5] = 0
    masks["fc1"][7] = 0  # a dead linear row outputs its bias: folded into fc2's bias
    masks["fc2"][1] = 0  # a dead logit row is kept: it is an output (bias only)
    net, diff, scale = prune_and_compare("small-cnn", masks, elu_logits)
    assert kept(net) == {"conv1": 31, "conv2": 63, "fc1": 127, "fc2": 10}
    by_name = {r.name: r for r in net.layers}
    assert by_name["conv2"].inputs_kept == 31 and by_name["fc1"].inputs_kept == 63 * 25  # conv→flatten→linear
    assert by_name["fc2"].inputs_kept == 127
    assert net.params < net.dense_params and net.macs < net.dense_macs
    assert diff <= 1e-5 * max(scale, 1.0)


@pytest.mark.parametrize("layer", ["conv1", "conv2", "fc1"])
def test_all_but_one_dead(layer):
    masks = random_masks(build_model("small-cnn"), seed=4)
    masks[layer][1:] = 0
    masks[layer][0] = 1  # the survivor reads every input, so it cannot die by cascade
    net, diff, scale = prune_and_compare("small-cnn", masks)
    assert kept(net)[layer] == 1
    assert diff <= 1e-5 * max(scale, 1.0)


def test_filter_reading_only_dead_channels_dies_by_cascade():
    masks = random_masks(build_model("small-cnn"), seed=5)
    masks["conv1"][:16] = 0  # channels 0..15 dead
    masks["conv2"][9] = 0
    masks["conv2"][9, :16] = 1  # filter 9 of conv2 only reads dead channels: outputs 0 everywhere
    net, diff, scale = prune_and_compare("small-cnn", masks)
    assert kept(net)["conv1"] == 16 and kept(net)["conv2"] == 63
    assert 9 in net.layers[1].removed_filters
    assert diff <= 1e-5 * max(scale, 1.0)


def test_alexnet_with_lrn_and_padded_pooling():
    masks = random_masks(build_model("alexnet-cifar"), density=0.3, seed=6)
    rng = np.random.default_rng(7)
    for name in ("conv1", "conv2", "conv3", "fc1"):
        dead = rng.random(masks[name].shape[0]) < 0.4
        masks[name][dead] = 0
    net, diff, scale = prune_and_compare("alexnet-cifar", masks, n=8)
    assert all(r.filters_kept < r.filters for r in net.layers[:4])
    assert net.layers[3].inputs_kept == net.layers[2].filters_kept * 4  # 2×2 after the padded pooling
    assert diff <= 1e-5 * max(scale, 1.0)


def test_alignment_keeps_a_layer_whole_unless_a_block_of_filters_goes():
    template = build_model("small-cnn")
    fixed = generate_fixed_weights(template, "small-cnn", 3)
    weights = {k: v.numpy() for k, v in fixed.tensors.items()}
    masks = random_masks(template, seed=8)
    masks["conv1"][[0, 1, 2]] = 0  # 29 of 32 live: rounded up to blocks of 8 that is still 32
    masks["conv2"][:40] = 0  # 24 of 64 live: three blocks instead of eight
    kwargs = dict(input_shape=template.input_shape, num_classes=10, elu_logits=True)
    exact = prune_network(trace_ops(template), weights, masks, **kwargs)
    aligned = prune_network(trace_ops(template), weights, masks, align=8, **kwargs)
    assert kept(exact)["conv1"] == 29 and kept(exact)["conv2"] == 24
    assert kept(aligned)["conv1"] == 32 and kept(aligned)["conv2"] == 24
    x = torch.randn(4, *template.input_shape, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(PrunedTorchNetwork(aligned)(x), PrunedTorchNetwork(exact)(x), rtol=0, atol=1e-5)
